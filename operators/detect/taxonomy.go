package detect

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// The Sigma taxonomy (specification/sigma-appendix-taxonomy.md) names
// events by logsource (category, product, service) and fields by their
// Sysmon or Windows Security names. Here each supported logsource is a
// normalized table, optionally narrowed to some ActionTypes, and each field
// a column of it or a value derived from columns (User is
// AccountDomain\AccountName; TargetObject is RegistryKey\RegistryValueName
// with Sysmon's short hive names). A field that is not here has no column:
// a rule naming it is unsupported, never evaluated as if it matched or did
// not.

// fieldSpec says how a Sigma field reads from a table row.
type fieldSpec struct {
	// col is the column read as it is (derive nil).
	col string
	// cols and derive compute the value from several columns; ok false
	// means the field is absent from the row.
	cols   []string
	derive func(v []string) (string, bool)
}

// source is one supported logsource.
type source struct {
	table string
	// actions narrows the table to rows of these ActionTypes (empty: all).
	actions []string
	fields  map[string]fieldSpec
	// eventIDs, when set, are the only EventID values the table expresses
	// (Security events): a rule asking for another is unsupported.
	eventIDs []string
	// generic sources read the WindowsEvent rows of DeviceEvents: any
	// field from AdditionalFields, narrowed by where (taxonomy_generic.go).
	generic bool
	where   []where
}

func col(c string) fieldSpec { return fieldSpec{col: c} }

func derived(f func(v []string) (string, bool), cols ...string) fieldSpec {
	return fieldSpec{cols: cols, derive: f}
}

// account joins a domain and a name as Windows writes them (DOMAIN\name).
func account(domain, name string) fieldSpec {
	return derived(func(v []string) (string, bool) {
		switch {
		case v[1] == "":
			return "", false
		case v[0] == "":
			return v[1], true
		}
		return v[0] + `\` + v[1], true
	}, domain, name)
}

// hashes renders the hash columns as Sysmon's Hashes field
// (SHA1=...,MD5=...,SHA256=...), upper case.
func hashes(sha1, md5, sha256 string) fieldSpec {
	names := [3]string{"SHA1=", "MD5=", "SHA256="}
	return derived(func(v []string) (string, bool) {
		n := 0
		for i := range names {
			if v[i] != "" {
				n += len(names[i]) + len(v[i]) + 1
			}
		}
		if n == 0 {
			return "", false
		}
		b := make([]byte, 0, n)
		for i, name := range names {
			if v[i] == "" {
				continue
			}
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, name...)
			for k := 0; k < len(v[i]); k++ {
				c := v[i][k]
				if 'a' <= c && c <= 'z' {
					c -= 'a' - 'A'
				}
				b = append(b, c)
			}
		}
		return string(b), true
	}, sha1, md5, sha256)
}

var targetObject = derived(func(v []string) (string, bool) {
	if v[0] == "" {
		return "", false
	}
	k := normalize.ShortHive(v[0])
	if v[1] != "" {
		k += `\` + v[1]
	}
	return k, true
}, "RegistryKey", "RegistryValueName")

// registryDetails renders a value as Sysmon's Details: DWORD values as
// "DWORD (0x0000002a)", others as they are.
var registryDetails = derived(func(v []string) (string, bool) {
	if strings.EqualFold(v[0], "Dword") {
		if n, err := strconv.ParseUint(v[1], 10, 32); err == nil {
			return fmt.Sprintf("DWORD (0x%08x)", n), true
		}
	}
	return v[1], v[1] != "" || v[0] != ""
}, "RegistryValueType", "RegistryValueData")

// registryEventType renders ActionType as Sysmon's EventType.
var registryEventType = derived(func(v []string) (string, bool) {
	for sysmon, action := range normalize.RegistryActions {
		if action == v[0] {
			return sysmon, true
		}
	}
	return v[0], v[0] != ""
}, "ActionType")

var logonType = derived(func(v []string) (string, bool) {
	for n, name := range normalize.LogonTypes {
		if strings.EqualFold(name, v[0]) {
			return n, true
		}
	}
	return v[0], v[0] != ""
}, "LogonType")

var logonEventID = derived(func(v []string) (string, bool) {
	for id, action := range normalize.LogonEvents {
		if action == v[0] {
			return id, true
		}
	}
	return "", false
}, "ActionType")

var dnsQueryName = derived(func(v []string) (string, bool) {
	if v[0] == "" {
		return "", false
	}
	var p fastjson.Parser
	o, err := p.Parse(v[0])
	if err != nil {
		return "", false
	}
	q := o.GetStringBytes("DnsQueryString")
	return string(q), q != nil
}, "AdditionalFields")

// initiating are the fields of the process behind an event (Sysmon's Image
// and User of file, registry, network and image-load events).
func initiating(extra map[string]fieldSpec) map[string]fieldSpec {
	m := map[string]fieldSpec{
		"Image":       col("InitiatingProcessFolderPath"),
		"ProcessId":   col("InitiatingProcessId"),
		"User":        account("InitiatingProcessAccountDomain", "InitiatingProcessAccountName"),
		"CommandLine": col("InitiatingProcessCommandLine"),
		"Computer":    col("DeviceName"),
		"UtcTime":     col("Timestamp"),
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

var registryFields = initiating(map[string]fieldSpec{
	"TargetObject": targetObject,
	"Details":      registryDetails,
	"EventType":    registryEventType,
})

// imageLoadFields adds the loaded file's Sysmon fields that Windows input
// keeps as promoted columns (normalize.ImageLoadExtras).
func imageLoadFields(m map[string]fieldSpec) map[string]fieldSpec {
	for _, k := range normalize.ImageLoadExtras {
		m[k] = col(k)
	}
	return m
}

// sources are the supported logsources by category (or service).
var sources = map[string]source{
	"process_creation": {table: "DeviceProcessEvents", fields: map[string]fieldSpec{
		"Image":             col("FolderPath"),
		"OriginalFileName":  col("ProcessVersionInfoOriginalFileName"),
		"CommandLine":       col("ProcessCommandLine"),
		"ParentImage":       col("InitiatingProcessFolderPath"),
		"ParentCommandLine": col("InitiatingProcessCommandLine"),
		"User":              account("AccountDomain", "AccountName"),
		"ParentUser":        account("InitiatingProcessAccountDomain", "InitiatingProcessAccountName"),
		"IntegrityLevel":    col("ProcessIntegrityLevel"),
		"Company":           col("ProcessVersionInfoCompanyName"),
		"Product":           col("ProcessVersionInfoProductName"),
		"Description":       col("ProcessVersionInfoFileDescription"),
		"ProcessId":         col("ProcessId"),
		"ParentProcessId":   col("InitiatingProcessId"),
		"LogonId":           col("LogonId"),
		"Hashes":            hashes("SHA1", "MD5", "SHA256"),
		"sha1":              col("SHA1"), "md5": col("MD5"), "sha256": col("SHA256"),
		"Computer": col("DeviceName"),
		"UtcTime":  col("Timestamp"),
	}},
	"file_event":  {table: "DeviceFileEvents", actions: []string{"FileCreated", "FileModified"}, fields: initiating(map[string]fieldSpec{"TargetFilename": col("FolderPath")})},
	"file_change": {table: "DeviceFileEvents", actions: []string{"FileModified"}, fields: initiating(map[string]fieldSpec{"TargetFilename": col("FolderPath")})},
	"file_delete": {table: "DeviceFileEvents", actions: []string{"FileDeleted"}, fields: initiating(map[string]fieldSpec{"TargetFilename": col("FolderPath")})},
	"file_rename": {table: "DeviceFileEvents", actions: []string{"FileRenamed"}, fields: initiating(map[string]fieldSpec{
		"TargetFilename": col("FolderPath"), "SourceFilename": col("PreviousFileName")})},
	"registry_event":  {table: "DeviceRegistryEvents", fields: registryFields},
	"registry_add":    {table: "DeviceRegistryEvents", actions: []string{"RegistryKeyCreated"}, fields: registryFields},
	"registry_delete": {table: "DeviceRegistryEvents", actions: []string{"RegistryKeyDeleted", "RegistryValueDeleted"}, fields: registryFields},
	"registry_set":    {table: "DeviceRegistryEvents", actions: []string{"RegistryValueSet"}, fields: registryFields},
	"registry_rename": {table: "DeviceRegistryEvents", actions: []string{"RegistryKeyRenamed"}, fields: registryFields},
	"network_connection": {table: "DeviceNetworkEvents", fields: initiating(map[string]fieldSpec{
		"DestinationIp":       col("RemoteIP"),
		"DestinationPort":     col("RemotePort"),
		"DestinationHostname": col("RemoteUrl"),
		"SourceIp":            col("LocalIP"),
		"SourcePort":          col("LocalPort"),
		"Protocol":            col("Protocol"),
		"Initiated": derived(func(v []string) (string, bool) {
			return strconv.FormatBool(v[0] != "InboundConnectionAccepted"), v[0] != ""
		}, "ActionType"),
	})},
	"image_load": {table: "DeviceImageLoadEvents", fields: initiating(imageLoadFields(map[string]fieldSpec{
		"ImageLoaded": col("FolderPath"),
		"Hashes":      hashes("SHA1", "MD5", "SHA256"),
	}))},
	"dns_query": {table: "DeviceEvents", actions: []string{"DnsQueryResponse"}, fields: initiating(map[string]fieldSpec{
		"QueryName": dnsQueryName,
	})},
	// service: security, the logon events Defender keeps.
	"security": {table: "DeviceLogonEvents", eventIDs: []string{"4624", "4625"}, fields: map[string]fieldSpec{
		"EventID":          logonEventID,
		"TargetUserName":   col("AccountName"),
		"TargetDomainName": col("AccountDomain"),
		"TargetUserSid":    col("AccountSid"),
		"TargetLogonId":    col("LogonId"),
		"LogonType":        logonType,
		"IpAddress":        col("RemoteIP"),
		"IpPort":           col("RemotePort"),
		"WorkstationName":  col("RemoteDeviceName"),
		"ProcessName":      col("InitiatingProcessFolderPath"),
		"Computer":         col("DeviceName"),
		"TimeCreated":      col("Timestamp"),
	}},
}

// products a logsource may name: Defender's device tables hold Windows,
// Linux and macOS hosts alike.
var products = map[string]bool{"": true, "windows": true, "linux": true, "macos": true}

// DefenderProduct is the logsource product of rules written against the
// advanced-hunting tables themselves: the service names the table
// (IdentityDirectoryEvents, CloudAppEvents, DeviceEvents, ...), and every
// column of it is a field by its own name, as in Defender's custom
// detections. It reaches the tables no Sigma category names.
const DefenderProduct = "m365defender"

// tableSource is the logsource of one table by its own columns.
func tableSource(table string) (source, error) {
	sch := normalize.Schema(table)
	if sch == nil {
		return source{}, fmt.Errorf("logsource product %s: service %q is not an advanced-hunting table (tables: %s)",
			DefenderProduct, table, strings.Join(normalize.Tables(), ", "))
	}
	s := source{table: table, fields: map[string]fieldSpec{}}
	for _, f := range sch.Fields() {
		s.fields[f.Name] = col(f.Name)
	}
	// The values of keys the table does not define, as one JSON object.
	s.fields[normalize.ExtraFieldsColumn] = col(normalize.ExtraFieldsColumn)
	return s, nil
}

// lookupSource resolves a rule's logsource.
func lookupSource(category, product, service string) (source, error) {
	if strings.EqualFold(product, DefenderProduct) {
		if category != "" {
			return source{}, fmt.Errorf("logsource product %s takes a service (the table), not category %q", DefenderProduct, category)
		}
		return tableSource(service)
	}
	if !products[product] {
		return source{}, fmt.Errorf("logsource product %q maps to no table", product)
	}
	key := category
	if key == "" {
		key = service
	} else if service != "" && service != "sysmon" {
		return source{}, fmt.Errorf("logsource category %q with service %q maps to no table", category, service)
	}
	s, ok := sources[key]
	if !ok {
		if g, gok := genericSource(key); gok {
			return g, nil
		}
	}
	if !ok || (category == "" && service != "security") {
		what := "category"
		if category == "" {
			what = "service"
		}
		return source{}, fmt.Errorf("logsource %s %q maps to no table (supported: %s)", what, key, strings.Join(SupportedLogsources(), ", "))
	}
	return s, nil
}

// SupportedLogsources lists the categories and services rules may use.
func SupportedLogsources() []string {
	var out []string
	for k := range sources {
		out = append(out, k)
	}
	for k := range genericSources {
		if _, dup := sources[k]; !dup {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Fields lists the Sigma fields a logsource category (or service) maps,
// with the column or columns each reads.
func Fields(logsource string) map[string][]string {
	s, ok := sources[logsource]
	if !ok {
		return nil
	}
	out := map[string][]string{}
	for name, f := range s.fields {
		if f.derive == nil {
			out[name] = []string{f.col}
		} else {
			out[name] = f.cols
		}
	}
	return out
}
