package detect

import (
	"fmt"
	"strings"

	"github.com/bradleyjkemp/sigma-go"
	"github.com/valyala/fastjson"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Windows events of no dedicated table are DeviceEvents rows of ActionType
// WindowsEvent, every field of the event kept in AdditionalFields
// (normalize/windows_generic.go). The logsources of those events (Sysmon's
// process access, pipes, remote threads, drivers; the Security events other
// than logons; the System, PowerShell, Task Scheduler and Defender
// channels) read them there: EventID, Channel and Provider from the top of
// the JSON, every other field from its EventData, by the event's own field
// names, so a rule's fields need no mapping and none is unsupported.

// where is an implicit selection a generic source adds to every rule.
type where struct {
	field  string
	mods   []string
	values []any
}

const sysmonChannel = "sysmon"

func sysmonEvents(ids ...any) []where {
	return []where{{"Channel", []string{"contains"}, []any{sysmonChannel}}, {"EventID", nil, ids}}
}

func channelEvents(channel string, ids ...any) []where {
	w := []where{{"Channel", nil, []any{channel}}}
	if len(ids) > 0 {
		w = append(w, where{"EventID", nil, ids})
	}
	return w
}

// genericSources are the logsources of generic rows, by category or
// service.
var genericSources = map[string][]where{
	"process_access":       sysmonEvents(10),
	"pipe_created":         sysmonEvents(17, 18),
	"create_remote_thread": sysmonEvents(8),
	"raw_access_thread":    sysmonEvents(9),
	"driver_load":          sysmonEvents(6),
	"create_stream_hash":   sysmonEvents(15),
	"wmi_event":            sysmonEvents(19, 20, 21),
	"process_tampering":    sysmonEvents(25),
	"ps_script":            channelEvents("Microsoft-Windows-PowerShell/Operational", 4104),
	"ps_module":            channelEvents("Microsoft-Windows-PowerShell/Operational", 4103),
	"ps_classic_start":     channelEvents("Windows PowerShell", 400),
	// services: a channel
	"security":      channelEvents("Security"),
	"system":        channelEvents("System"),
	"application":   channelEvents("Application"),
	"taskscheduler": channelEvents("Microsoft-Windows-TaskScheduler/Operational"),
	"windefend":     channelEvents("Microsoft-Windows-Windows Defender/Operational"),
	"bits-client":   channelEvents("Microsoft-Windows-Bits-Client/Operational"),
	"wmi":           channelEvents("Microsoft-Windows-WMI-Activity/Operational"),
	"powershell":    channelEvents("Microsoft-Windows-PowerShell/Operational"),
}

// genericSource is the source of the generic rows of a logsource.
func genericSource(key string) (source, bool) {
	w, ok := genericSources[key]
	if !ok {
		return source{}, false
	}
	return source{table: "DeviceEvents", actions: []string{normalize.ActionWindowsEvent}, generic: true, where: w,
		fields: map[string]fieldSpec{"Computer": col("DeviceName")}}, true
}

// genericField reads a field of a generic row from AdditionalFields.
func genericField(name string) fieldSpec {
	top := name == "EventID" || name == "Channel" || name == "Provider"
	return derived(func(v []string) (string, bool) {
		// Generic rows' JSON starts with its Channel (keys in order); the
		// AdditionalFields of other DeviceEvents rows are not parsed.
		if !strings.HasPrefix(v[0], `{"Channel":`) {
			return "", false
		}
		p := parsers.Get()
		defer parsers.Put(p)
		o, err := p.Parse(v[0])
		if err != nil {
			return "", false
		}
		x := o.Get(name)
		if !top {
			x = o.Get("EventData", name)
			if x == nil {
				// field names differ in case between renderings
				if ed := o.Get("EventData"); ed == nil {
					return "", false
				} else if d, err := ed.Object(); err == nil {
					d.Visit(func(k []byte, val *fastjson.Value) {
						if x == nil && strings.EqualFold(string(k), name) {
							x = val
						}
					})
				}
			}
		}
		if x == nil {
			return "", false
		}
		if x.Type() == fastjson.TypeString {
			b, _ := x.StringBytes()
			return string(b), true
		}
		return string(x.MarshalTo(nil)), true
	}, "AdditionalFields")
}

var parsers fastjson.ParserPool

// eventIDs are the EventID values a rule's searches name.
func eventIDs(sr sigma.Rule) []string {
	var out []string
	for _, s := range sr.Detection.Searches {
		for _, em := range s.EventMatchers {
			for _, fm := range em {
				if fm.Field == "EventID" {
					for _, v := range fm.Values {
						out = append(out, fmt.Sprint(v))
					}
				}
			}
		}
	}
	return out
}

// securitySource picks the table of a service: security rule: the logon
// table when every EventID it names is a logon event Defender keeps there,
// the generic rows when none is; a rule naming both is unsupported (it
// would read two tables).
func securitySource(logon source, sr sigma.Rule) (source, error) {
	ids := eventIDs(sr)
	in := 0
	for _, id := range ids {
		if contains(logon.eventIDs, id) {
			in++
		}
	}
	switch {
	case len(ids) == 0 || in == len(ids):
		return logon, nil
	case in == 0:
		s, _ := genericSource("security")
		return s, nil
	}
	return source{}, unsupportedError{fmt.Sprintf("EventIDs %s mix logons (%s, in DeviceLogonEvents) with other events (generic DeviceEvents rows): split the rule",
		strings.Join(ids, ", "), strings.Join(logon.eventIDs, ", "))}
}
