package normalize

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// Windows events arrive in three shapes, recognised per record:
//
//   - nested: the event XML rendered as JSON ({"Event": {"System": {...},
//     "EventData": {...}}}), as in the Sigma regression events;
//   - flat: the OTRF recordings (Hostname, Channel, EventID and the event
//     data at the top level, SourceName the provider; times as UtcTime,
//     TimeCreated, @timestamp or EventTime, in ISO 8601 or "2006-01-02
//     15:04:05.000"; host names short or fully qualified);
//   - Sentinel: Log Analytics' SecurityEvent and Event exports (Computer,
//     EventID, TimeGenerated, Channel or EventLog, EventSourceName or
//     Source, the data at the top level, with export-tool type suffixes
//     such as ProcessId_string, and AD FS data in EventData_dynamic).
//
// Each is parsed once, with the normalizer's parser, and the row is built
// as a value the normalizer takes directly: no re-encoding, no second
// parse. An event of no dedicated table is a generic DeviceEvents row
// (windows_generic.go); a malformed one is a dead letter saying so
// (bad_event, bad_timestamp), its original bytes kept.

// The Windows event shapes.
const (
	ShapeNested   = "nested"
	ShapeFlat     = "flat"
	ShapeSentinel = "sentinel"
)

// winEvent is one Windows event, whatever its shape.
type winEvent struct {
	shape                       string
	id, channel, provider, host string
	time                        string
	data                        map[string]string
}

var (
	eventIDKey   = []byte(`"EventID"`)
	operationKey = []byte(`"Operation`) // Operation (OfficeActivity), OperationName (AuditLogs)
	categoryKey  = []byte(`"category"`)
)

// AddLog normalizes in when it is a Windows event in one of the shapes
// above, or a row of Sentinel's AuditLogs or OfficeActivity export
// (windows_sentinel.go): a row of its table for the normalizer's default
// tenant, or a dead letter with the reason. It reports false, having done
// nothing, for any other record: give that to Add.
func (n *Normalizer) AddLog(in Input, emit func(Batch), dead func(DeadLetter)) bool {
	v := in.Value
	// Every shape names EventID, Operation or OperationName as a key and
	// none has a category; a streaming record always has one, and this
	// costs it a scan or two instead of a parse.
	if bytes.Contains(v, categoryKey) || !bytes.Contains(v, eventIDKey) && !bytes.Contains(v, operationKey) ||
		len(v) > n.cfg.maxRecord || !utf8.Valid(v) {
		return false
	}
	root, err := n.parser.ParseBytes(v)
	if err != nil {
		return false // Add says why
	}
	var (
		table string
		props map[string]any
		ts    string
	)
	if ev, ok := readWindows(root); ok {
		table, props, err = windowsRow(ev)
		ts = ev.time
		if err == nil && ts == "" {
			err = fmt.Errorf("%w: Windows event (%s form) has no time", errNoTime, ev.shape)
		}
	} else if kind := sentinelKind(root); kind != "" {
		table, props, ts, err = sentinelRow(kind, root)
	} else if typ := otherSentinelLog(root); typ != "" {
		n.records++
		n.bytes += int64(len(v))
		n.deadLetter(in, -1, v, ReasonUnknownTable, fmt.Sprintf("a row of Sentinel's %s log: no table takes it (read are SecurityEvent, Event, AuditLogs, OfficeActivity, and the advanced-hunting tables)", typ), dead)
		return true
	} else {
		return false
	}
	n.bytes += int64(len(v))
	if err != nil {
		n.records++
		reason := ReasonBadEvent
		switch {
		case errors.Is(err, ErrNoTable):
			reason = ReasonNoTable
		case errors.Is(err, errNoTime):
			reason = ReasonBadTimestamp
		}
		n.deadLetter(in, -1, v, reason, err.Error(), dead)
		return true
	}
	props["Timestamp"] = ts
	a := arenas.Get()
	defer arenas.Put(a)
	p := a.NewObject()
	for k, val := range props {
		switch x := val.(type) {
		case string:
			if x != "" {
				p.Set(k, a.NewString(x))
			}
		case int64:
			p.Set(k, a.NewNumberString(strconv.FormatInt(x, 10)))
		case *fastjson.Value:
			p.Set(k, x)
		}
	}
	po, _ := p.Object()
	// The row goes straight to its table, in import mode too (where Add
	// would infer the table of an export row).
	n.records++
	fail := func(r Reason, msg string) { n.deadLetter(in, -1, v, r, msg, dead) }
	n.addRow(n.state(tableIndex[table]), []byte(n.cfg.tenant), po, []byte(ts), int64(len(v)), emit, fail)
	return true
}

var errNoTime = errors.New("no time")

var arenas fastjson.ArenaPool

// readWindows recognises the shape of a parsed record; ok is false when it
// is none of the Windows shapes.
func readWindows(root *fastjson.Value) (ev winEvent, ok bool) {
	o, err := root.Object()
	if err != nil || o.Get("category") != nil || o.Get("properties") != nil {
		return ev, false
	}
	if sys := root.Get("Event", "System"); sys != nil && sys.Type() == fastjson.TypeObject {
		ev.shape = ShapeNested
		ev.id = eventID(sys.Get("EventID"))
		ev.channel = str(sys.Get("Channel"))
		ev.provider = str(sys.Get("Provider", "#attributes", "Name"))
		ev.host = str(sys.Get("Computer"))
		ev.data = map[string]string{}
		if d := root.Get("Event", "EventData"); d != nil {
			if do, err := d.Object(); err == nil {
				do.Visit(func(k []byte, v *fastjson.Value) { putData(ev.data, string(k), v) })
			}
		}
		ev.time = str(sys.Get("TimeCreated", "#attributes", "SystemTime"))
		if ev.time == "" {
			ev.time = ev.data["UtcTime"]
		}
		return ev, true
	}
	id := o.Get("EventID")
	if id == nil {
		return ev, false
	}
	ev.id = eventID(id)
	ev.data = make(map[string]string, o.Len())
	o.Visit(func(k []byte, v *fastjson.Value) { putData(ev.data, string(k), v) })
	// Export-tool suffixes (ProcessId_string, EventData_dynamic): the name
	// without them, where the record does not also hold that name.
	for k, v := range ev.data {
		if base := stripSuffix([]byte(k)); base != nil {
			if _, dup := ev.data[string(base)]; !dup {
				ev.data[string(base)] = v
			}
		}
	}
	d := ev.data
	switch {
	case d["TimeGenerated"] != "" || d["Type"] == "SecurityEvent" || d["Type"] == "Event":
		ev.shape = ShapeSentinel
		ev.host = d["Computer"]
		ev.channel = first(d, "Channel", "EventLog")
		ev.provider = first(d, "EventSourceName", "Source")
		if d["User"] == "" && d["UserName"] != "" && strings.Contains(strings.ToLower(ev.provider+ev.channel), "sysmon") {
			d["User"] = d["UserName"]
		}
		ev.time = first(d, "UtcTime", "TimeGenerated", "TimeCreated")
	case d["Hostname"] != "" || d["Channel"] != "":
		ev.shape = ShapeFlat
		ev.host = first(d, "Hostname", "Computer")
		ev.channel = d["Channel"]
		ev.provider = first(d, "SourceName", "ProviderName")
		// Sysmon's UtcTime is the event's own UTC time; TimeCreated and
		// @timestamp are what the collector wrote, in some recordings
		// local time marked as UTC.
		ev.time = first(d, "UtcTime", "TimeCreated", "@timestamp", "EventTime", "EventReceivedTime")
	default:
		return ev, false
	}
	return ev, true
}

func first(d map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := d[k]; v != "" {
			return v
		}
	}
	return ""
}

// str is a string value's text, or "".
func str(v *fastjson.Value) string {
	if v == nil || v.Type() != fastjson.TypeString {
		return ""
	}
	b, _ := v.StringBytes()
	return string(b)
}

// eventID reads an EventID written as a number, a string, or the XML
// rendering's {"#text": 4624, "#attributes": {...}}.
func eventID(v *fastjson.Value) string {
	if v == nil {
		return ""
	}
	switch v.Type() {
	case fastjson.TypeObject:
		return eventID(v.Get("#text"))
	case fastjson.TypeString:
		return strings.TrimSpace(str(v))
	case fastjson.TypeNumber:
		return string(v.MarshalTo(nil))
	}
	return ""
}

// putData keeps an event data value as text: strings as they are, numbers
// as written, booleans as true/false, objects and arrays as JSON.
func putData(d map[string]string, k string, v *fastjson.Value) {
	switch v.Type() {
	case fastjson.TypeNull:
	case fastjson.TypeString:
		d[k] = str(v)
	case fastjson.TypeTrue:
		d[k] = "true"
	case fastjson.TypeFalse:
		d[k] = "false"
	default:
		d[k] = string(v.MarshalTo(nil))
	}
}

// windowsRow maps an event to its table and properties (without the
// Timestamp), or says why it cannot.
func windowsRow(ev winEvent) (string, map[string]any, error) {
	if ev.id == "" {
		return "", nil, fmt.Errorf("Windows event (%s form) has no EventID", ev.shape)
	}
	if _, err := strconv.ParseUint(ev.id, 10, 16); err != nil {
		return "", nil, fmt.Errorf("Windows event (%s form): EventID %q is not an event number", ev.shape, ev.id)
	}
	if ev.host == "" {
		return "", nil, fmt.Errorf("Windows event %s (%s form) names no host (Computer, Hostname)", ev.id, ev.shape)
	}
	lc, lp := strings.ToLower(ev.channel), strings.ToLower(ev.provider)
	p := map[string]any{"DeviceName": ev.host}
	var table string
	var err error
	switch {
	case strings.Contains(lc, "sysmon") || strings.Contains(lp, "sysmon"):
		table, err = sysmonRow(ev.id, ev.data, p)
	case lc == "security":
		table, err = securityRow(ev.id, ev.data, p)
	default:
		ch := ev.channel
		if ch == "" {
			ch = "no channel"
		}
		err = fmt.Errorf("%w (%s event %s)", ErrNoTable, ch, ev.id)
	}
	if errors.Is(err, ErrNoTable) {
		clear(p)
		p["DeviceName"] = ev.host
		table, err = genericRow(ev, p)
	}
	if err != nil {
		return "", nil, err
	}
	return table, p, nil
}
