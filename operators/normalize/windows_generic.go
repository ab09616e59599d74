package normalize

import (
	"encoding/json"
	"errors"
	"net"
)

// A Windows event that no dedicated table expresses (Sysmon 10 process
// access, Security 4688, 4662, 5145, WFP 5156, AD FS 1200, ...) still
// reaches hunting, correlation and detection, as Defender keeps its
// miscellaneous endpoint events: a DeviceEvents row of ActionType
// WindowsEvent, its channel, provider, event id and every data field kept
// as JSON in AdditionalFields ({"Channel", "Provider", "EventID",
// "EventData": {...}}), the subject or acting process in the Initiating*
// columns where the event names them. Query it as
//
//	DeviceEvents | where ActionType == "WindowsEvent" and AdditionalFields has "5145"

// ActionWindowsEvent is the ActionType of the generic rows. Their
// AdditionalFields start with {"Channel": (encoding/json writes map keys in
// order), which detection uses to skip other DeviceEvents rows cheaply.
const ActionWindowsEvent = "WindowsEvent"

// genericRow fills p with the generic DeviceEvents row of ev.
func genericRow(ev winEvent, p map[string]any) (string, error) {
	p["ActionType"] = ActionWindowsEvent
	d := ev.data
	if img := first(d, "Image", "SourceImage", "NewProcessName", "ProcessName", "Application"); img != "" && img != "-" {
		setPath(p, "InitiatingProcessFolderPath", "InitiatingProcessFileName", img)
	}
	setNum(p, "InitiatingProcessId", first(d, "ProcessId", "SourceProcessId", "ProcessID"))
	if u := d["User"]; u != "" {
		setAccount(p, "InitiatingProcessAccountDomain", "InitiatingProcessAccountName", u)
	} else if name := d["SubjectUserName"]; name != "" && name != "-" {
		p["InitiatingProcessAccountDomain"], p["InitiatingProcessAccountName"] = d["SubjectDomainName"], name
		p["InitiatingProcessAccountSid"] = d["SubjectUserSid"]
	}
	if ip := d["IpAddress"]; net.ParseIP(ip) != nil {
		p["RemoteIP"] = ip // the client of a Security event (logon, share access)
	}
	af, err := json.Marshal(map[string]any{"Channel": ev.channel, "Provider": ev.provider, "EventID": ev.id, "EventData": d})
	if err != nil {
		return "", errors.Join(ErrNoTable, err)
	}
	p["AdditionalFields"] = string(af)
	return "DeviceEvents", nil
}
