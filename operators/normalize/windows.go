package normalize

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// Windows Security and Sysmon events (in any of the shapes windows_input.go
// reads) become rows of the advanced-hunting tables, so that detection, correlation and
// hunting treat them like Defender's own: Sysmon 1 → DeviceProcessEvents,
// 3 → DeviceNetworkEvents, 7 → DeviceImageLoadEvents, 11 (23, 26) →
// DeviceFileEvents, 12/13/14 → DeviceRegistryEvents, 22 → DeviceEvents
// (DnsQueryResponse), Security 4624/4625 → DeviceLogonEvents, any other →
// DeviceEvents of ActionType WindowsEvent (windows_generic.go). Fields are
// renamed the way Defender names them (Image → FolderPath of the process,
// User DOMAIN\name → AccountDomain and AccountName, Hashes → SHA1, MD5,
// SHA256, TargetObject → RegistryKey and RegistryValueName with the long
// hive names).

// ErrNoTable is returned for a Windows event no table expresses.
var ErrNoTable = errors.New("normalize: no table for this Windows event")

// RegistryActions maps Sysmon's registry EventType to Defender's ActionType.
var RegistryActions = map[string]string{
	"CreateKey": "RegistryKeyCreated", "DeleteKey": "RegistryKeyDeleted",
	"SetValue": "RegistryValueSet", "DeleteValue": "RegistryValueDeleted",
	"RenameKey": "RegistryKeyRenamed",
}

// LogonTypes maps Windows logon type numbers to Defender's LogonType.
var LogonTypes = map[string]string{
	"2": "Interactive", "3": "Network", "4": "Batch", "5": "Service",
	"7": "Unlock", "8": "NetworkCleartext", "9": "NewCredentials",
	"10": "RemoteInteractive", "11": "CachedInteractive",
}

// ImageLoadExtras are the Sysmon 7 fields of the loaded file that
// DeviceImageLoadEvents has no column for.
var ImageLoadExtras = []string{"Signed", "Signature", "SignatureStatus", "Description", "Product", "Company", "OriginalFileName", "FileVersion"}

// LogonEvents maps the Security event ids DeviceLogonEvents expresses to
// its ActionType.
var LogonEvents = map[string]string{"4624": "LogonSuccess", "4625": "LogonFailed"}

// Registry hives: Defender writes the long names, Sysmon the short ones.
var hives = [][2]string{
	{`HKEY_LOCAL_MACHINE`, `HKLM`},
	{`HKEY_USERS`, `HKU`},
	{`HKEY_CURRENT_USER`, `HKCU`},
	{`HKEY_CLASSES_ROOT`, `HKCR`},
	{`HKEY_CURRENT_CONFIG`, `HKCC`},
}

func swapHive(key string, from, to int) string {
	for _, h := range hives {
		f := h[from]
		if len(key) >= len(f) && strings.EqualFold(key[:len(f)], f) && (len(key) == len(f) || key[len(f)] == '\\') {
			return h[to] + key[len(f):]
		}
	}
	return key
}

// ShortHive turns a key under a long hive name into Sysmon's form (HKLM\...).
func ShortHive(key string) string { return swapHive(key, 0, 1) }

// LongHive turns a key under a short hive name into Defender's form.
func LongHive(key string) string { return swapHive(key, 1, 0) }

// winNumber returns s as a JSON number for an integer column (hex as Windows
// writes logon ids), or nothing.
func winNumber(s string) any {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		if n, err := strconv.ParseUint(h, 16, 63); err == nil {
			return int64(n)
		}
	}
	return nil
}

func setNum(p map[string]any, col, s string) {
	if n := winNumber(s); n != nil {
		p[col] = n
	}
}

// winPath is the base name of a Windows path.
func winPath(s string) string { return path.Base(strings.ReplaceAll(s, `\`, `/`)) }

// setPath sets a path column and the file name column beside it.
func setPath(p map[string]any, pathCol, nameCol, path string) {
	if path != "" {
		p[pathCol], p[nameCol] = path, winPath(path)
	}
}

// setAccount splits DOMAIN\name into the two columns.
func setAccount(p map[string]any, domainCol, nameCol, user string) {
	if user == "" || user == "-" {
		return
	}
	if dom, name, ok := strings.Cut(user, `\`); ok {
		p[domainCol], p[nameCol] = dom, name
		return
	}
	p[nameCol] = user
}

// setHashes splits Sysmon's Hashes (SHA1=..,MD5=..,SHA256=..,IMPHASH=..).
func setHashes(p map[string]any, prefix, hashes string) {
	for _, h := range strings.Split(hashes, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(h), "=")
		if !ok {
			continue
		}
		switch strings.ToUpper(k) {
		case "SHA1", "MD5", "SHA256":
			p[prefix+strings.ToUpper(k)] = strings.ToLower(v)
		}
	}
}

// setInitiating fills the columns of the process behind an event.
func setInitiating(p map[string]any, d map[string]string) {
	setPath(p, "InitiatingProcessFolderPath", "InitiatingProcessFileName", d["Image"])
	setNum(p, "InitiatingProcessId", d["ProcessId"])
	setAccount(p, "InitiatingProcessAccountDomain", "InitiatingProcessAccountName", d["User"])
}

func sysmonRow(id string, d map[string]string, p map[string]any) (string, error) {
	switch id {
	case "1":
		p["ActionType"] = "ProcessCreated"
		setPath(p, "FolderPath", "FileName", d["Image"])
		p["ProcessCommandLine"] = d["CommandLine"]
		p["ProcessVersionInfoOriginalFileName"] = d["OriginalFileName"]
		p["ProcessVersionInfoCompanyName"] = d["Company"]
		p["ProcessVersionInfoProductName"] = d["Product"]
		p["ProcessVersionInfoFileDescription"] = d["Description"]
		p["ProcessIntegrityLevel"] = d["IntegrityLevel"]
		setNum(p, "ProcessId", d["ProcessId"])
		setNum(p, "LogonId", d["LogonId"])
		setAccount(p, "AccountDomain", "AccountName", d["User"])
		setHashes(p, "", d["Hashes"])
		setPath(p, "InitiatingProcessFolderPath", "InitiatingProcessFileName", d["ParentImage"])
		p["InitiatingProcessCommandLine"] = d["ParentCommandLine"]
		setNum(p, "InitiatingProcessId", d["ParentProcessId"])
		setAccount(p, "InitiatingProcessAccountDomain", "InitiatingProcessAccountName", d["ParentUser"])
		return "DeviceProcessEvents", nil
	case "3":
		setInitiating(p, d)
		p["ActionType"] = "ConnectionSuccess"
		if strings.EqualFold(d["Initiated"], "false") {
			p["ActionType"] = "InboundConnectionAccepted"
		}
		p["Protocol"] = d["Protocol"]
		p["LocalIP"], p["RemoteIP"], p["RemoteUrl"] = d["SourceIp"], d["DestinationIp"], d["DestinationHostname"]
		setNum(p, "LocalPort", d["SourcePort"])
		setNum(p, "RemotePort", d["DestinationPort"])
		return "DeviceNetworkEvents", nil
	case "7":
		setInitiating(p, d)
		p["ActionType"] = "ImageLoaded"
		setPath(p, "FolderPath", "FileName", d["ImageLoaded"])
		setHashes(p, "", d["Hashes"])
		// The loaded file's signature and version information have no
		// Defender column: kept under Sysmon's names (promoted columns of
		// the tenant's DeviceImageLoadEvents).
		for _, k := range ImageLoadExtras {
			p[k] = d[k]
		}
		return "DeviceImageLoadEvents", nil
	case "11", "23", "26":
		setInitiating(p, d)
		p["ActionType"] = "FileCreated"
		if id != "11" {
			p["ActionType"] = "FileDeleted"
		}
		setPath(p, "FolderPath", "FileName", d["TargetFilename"])
		setHashes(p, "", d["Hashes"])
		return "DeviceFileEvents", nil
	case "12", "13", "14":
		setInitiating(p, d)
		et := d["EventType"]
		action, ok := RegistryActions[et]
		if !ok {
			action = map[string]string{"12": "RegistryKeyCreated", "13": "RegistryValueSet", "14": "RegistryKeyRenamed"}[id]
		}
		p["ActionType"] = action
		key := LongHive(d["TargetObject"])
		if et == "SetValue" || et == "DeleteValue" || (et == "" && id == "13") {
			if i := strings.LastIndexByte(key, '\\'); i >= 0 {
				key, p["RegistryValueName"] = key[:i], key[i+1:]
			}
		}
		p["RegistryKey"] = key
		if det := d["Details"]; det != "" {
			if hex, ok := strings.CutPrefix(det, "DWORD (0x"); ok && strings.HasSuffix(hex, ")") {
				if n, err := strconv.ParseUint(strings.TrimSuffix(hex, ")"), 16, 32); err == nil {
					p["RegistryValueType"], p["RegistryValueData"] = "Dword", strconv.FormatUint(n, 10)
				}
			}
			if p["RegistryValueData"] == nil {
				p["RegistryValueData"] = det
			}
		}
		return "DeviceRegistryEvents", nil
	case "22":
		setInitiating(p, d)
		p["ActionType"] = "DnsQueryResponse"
		af, _ := json.Marshal(map[string]string{"DnsQueryString": d["QueryName"], "DnsQueryResult": d["QueryResults"]})
		p["AdditionalFields"] = string(af)
		return "DeviceEvents", nil
	}
	return "", fmt.Errorf("%w (Sysmon event %s)", ErrNoTable, id)
}

func securityRow(id string, d map[string]string, p map[string]any) (string, error) {
	action, ok := LogonEvents[id]
	if !ok {
		return "", fmt.Errorf("%w (Security event %s)", ErrNoTable, id)
	}
	p["ActionType"] = action
	p["AccountName"], p["AccountDomain"], p["AccountSid"] = d["TargetUserName"], d["TargetDomainName"], d["TargetUserSid"]
	if lt, ok := LogonTypes[d["LogonType"]]; ok {
		p["LogonType"] = lt
	}
	if ip := d["IpAddress"]; ip != "-" {
		p["RemoteIP"] = ip
	}
	setNum(p, "RemotePort", d["IpPort"])
	if ws := d["WorkstationName"]; ws != "-" {
		p["RemoteDeviceName"] = ws
	}
	if pn := d["ProcessName"]; pn != "-" {
		setPath(p, "InitiatingProcessFolderPath", "InitiatingProcessFileName", pn)
	}
	setNum(p, "LogonId", d["TargetLogonId"])
	if id == "4625" {
		p["FailureReason"] = d["FailureReason"]
	}
	return "DeviceLogonEvents", nil
}
