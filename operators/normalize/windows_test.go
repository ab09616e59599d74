package normalize

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// windowsRows runs raw through AddLog and returns the row's columns
// (strings and numbers as text) and table, or the dead letter.
func windowsRows(t *testing.T, raw []byte) (table string, row map[string]string, dl *DeadLetter) {
	t.Helper()
	n := New(WithDefaultTenant("t1"))
	defer n.Close()
	var got []Batch
	emit := func(b Batch) { got = append(got, b) }
	deadFn := func(d DeadLetter) { dl = &d }
	if !n.AddLog(Input{Value: raw}, emit, deadFn) {
		t.Fatalf("not taken for a Windows event: %s", raw)
	}
	n.Flush(emit)
	if dl != nil {
		return "", nil, dl
	}
	if len(got) != 1 || got[0].Record.NumRows() != 1 {
		t.Fatalf("%d batches, want one row", len(got))
	}
	b := got[0]
	defer b.Release()
	if b.Tenant != "t1" {
		t.Errorf("tenant %q, want the default tenant", b.Tenant)
	}
	row = map[string]string{}
	for i, f := range b.Record.Schema().Fields() {
		c := b.Record.Column(i)
		if c.IsNull(0) {
			continue
		}
		switch a := c.(type) {
		case *array.String:
			row[f.Name] = a.Value(0)
		case *array.Timestamp:
			row[f.Name] = a.Value(0).ToTime(a.DataType().(*arrow.TimestampType).Unit).UTC().Format(time.RFC3339Nano)
		default:
			row[f.Name] = c.ValueStr(0)
		}
	}
	return b.Table, row, nil
}

func TestWindowsShapes(t *testing.T) {
	nested := func(channel string, id int, data map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"Event": map[string]any{
			"System": map[string]any{
				"EventID": id, "Channel": channel, "Computer": "ws1.corp.local",
				"TimeCreated": map[string]any{"#attributes": map[string]any{"SystemTime": "2025-10-27T00:09:41.570583Z"}},
			},
			"EventData": data,
		}})
		return b
	}
	cases := []struct {
		name  string
		raw   []byte
		table string
		want  map[string]string
	}{
		{"nested sysmon 1", nested("Microsoft-Windows-Sysmon/Operational", 1, map[string]any{
			"Image": `C:\Windows\System32\cmd.exe`, "CommandLine": "cmd /c x", "User": `CORP\bob`, "LogonId": "0x3e7",
			"Hashes": "SHA1=AA,MD5=BB,SHA256=CC,IMPHASH=DD", "ParentImage": `C:\Windows\explorer.exe`, "ProcessId": 42,
		}), "DeviceProcessEvents", map[string]string{
			"FolderPath": `C:\Windows\System32\cmd.exe`, "FileName": "cmd.exe", "AccountDomain": "CORP", "AccountName": "bob",
			"LogonId": "999", "SHA1": "aa", "MD5": "bb", "SHA256": "cc", "InitiatingProcessFileName": "explorer.exe", "ProcessId": "42",
			"DeviceName": "ws1.corp.local", "Timestamp": "2025-10-27T00:09:41.570583Z",
		}},
		{"nested sysmon 13", nested("Microsoft-Windows-Sysmon/Operational", 13, map[string]any{
			"EventType": "SetValue", "TargetObject": `HKLM\System\Services\X\Start`, "Details": "DWORD (0x00000004)",
		}), "DeviceRegistryEvents", map[string]string{
			"ActionType": "RegistryValueSet", "RegistryKey": `HKEY_LOCAL_MACHINE\System\Services\X`, "RegistryValueName": "Start",
			"RegistryValueType": "Dword", "RegistryValueData": "4",
		}},
		{"nested security 4624", nested("Security", 4624, map[string]any{"TargetUserName": "bob", "TargetDomainName": "CORP", "LogonType": "10", "IpAddress": "10.0.0.5"}),
			"DeviceLogonEvents", map[string]string{"ActionType": "LogonSuccess", "LogonType": "RemoteInteractive", "RemoteIP": "10.0.0.5", "AccountName": "bob"}},
		// OTRF: the collector's TimeCreated is local time; UtcTime wins.
		{"flat sysmon 1", []byte(`{"SourceName":"Microsoft-Windows-Sysmon","TimeCreated":"2020-10-18 10:56:14.283","Hostname":"WORKSTATION5",
			"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":1,"UtcTime":"2020-10-19 02:56:14.283","Image":"C:\\Users\\wardog\\Desktop\\Outflank-Dumpert.exe",
			"CommandLine":"Outflank-Dumpert.exe","ParentImage":"C:\\Windows\\System32\\cmd.exe","User":"WORKSTATION5\\wardog","ProcessId":"6708","Keywords":-9223372036854775808}`),
			"DeviceProcessEvents", map[string]string{"DeviceName": "WORKSTATION5", "FileName": "Outflank-Dumpert.exe", "ProcessCommandLine": "Outflank-Dumpert.exe",
				"AccountName": "wardog", "ProcessId": "6708", "Timestamp": "2020-10-19T02:56:14.283Z"}},
		{"flat lower-case security channel", []byte(`{"EventID":4624,"Channel":"security","Hostname":"MORDORDC.theshire.local","@timestamp":"2020-09-22T18:10:21.900Z",
			"TargetUserName":"pgustavo","TargetDomainName":"THESHIRE","LogonType":"3","IpAddress":"172.18.39.5","host":"wec.internal.cloudapp.net"}`),
			"DeviceLogonEvents", map[string]string{"DeviceName": "MORDORDC.theshire.local", "LogonType": "Network", "RemoteIP": "172.18.39.5",
				"Timestamp": "2020-09-22T18:10:21.9Z"}},
		{"sentinel SecurityEvent 4624", []byte(`{"TenantId":"00000000-0000-0000-0000-000000000000","TimeGenerated":"2021-08-02T13:08:45.653Z","Computer":"DC01.simulandlabs.com",
			"EventID":4624,"Type":"SecurityEvent","Channel":"Security","EventSourceName":"Microsoft-Windows-Security-Auditing","TargetUserName":"pgustavo",
			"TargetDomainName":"SIMULANDLABS","LogonType":3,"IpAddress":"10.0.0.7","ProcessId_string":"0x0","TargetLogonId":"0x8f0f2cd7"}`),
			"DeviceLogonEvents", map[string]string{"DeviceName": "DC01.simulandlabs.com", "AccountName": "pgustavo", "LogonType": "Network",
				"LogonId": "2400136407", "Timestamp": "2021-08-02T13:08:45.653Z"}},
		{"sentinel Event sysmon 3", []byte(`{"TimeGenerated":"2021-08-02T13:05:33Z","Source":"Microsoft-Windows-Sysmon","EventLog":"Microsoft-Windows-Sysmon/Operational",
			"Computer":"ADFS01.simulandlabs.com","EventID":3,"Type":"Event","UserName":"SIMULANDLABS\\pgustavo","Image":"C:\\x\\a.exe","DestinationIp":"1.2.3.4",
			"DestinationPort_string":"443","UtcTime":"2021-08-02T13:05:32.7650000Z"}`),
			"DeviceNetworkEvents", map[string]string{"DeviceName": "ADFS01.simulandlabs.com", "RemoteIP": "1.2.3.4", "RemotePort": "443",
				"InitiatingProcessAccountName": "pgustavo", "Timestamp": "2021-08-02T13:05:32.765Z"}},
	}
	for _, c := range cases {
		table, row, dl := windowsRows(t, c.raw)
		if dl != nil {
			t.Errorf("%s: dead letter %s: %s", c.name, dl.Reason, dl.Error)
			continue
		}
		if table != c.table {
			t.Errorf("%s: table %s, want %s", c.name, table, c.table)
		}
		for k, v := range c.want {
			if row[k] != v {
				t.Errorf("%s: %s = %q, want %q", c.name, k, row[k], v)
			}
		}
	}
}

// TestWindowsGenericRows: an event no dedicated table expresses is a
// DeviceEvents row of ActionType WindowsEvent, its fields in
// AdditionalFields, rather than a dead letter.
func TestWindowsGenericRows(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want map[string]string
	}{
		{`{"Event":{"System":{"EventID":7045,"Channel":"System","Computer":"h","TimeCreated":{"#attributes":{"SystemTime":"2025-01-01T00:00:00Z"}}},"EventData":{"ServiceName":"PSEXESVC"}}}`,
			map[string]string{"DeviceName": "h", "AdditionalFields": `{"Channel":"System","EventData":{"ServiceName":"PSEXESVC"},"EventID":"7045","Provider":""}`}},
		{`{"EventID":10,"Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"h","UtcTime":"2020-10-19 02:56:14.283","SourceImage":"C:\x\dumpert.exe","TargetImage":"C:\Windows\system32\lsass.exe","GrantedAccess":"0x1fffff"}`,
			map[string]string{"InitiatingProcessFileName": "dumpert.exe", "Timestamp": "2020-10-19T02:56:14.283Z"}},
		{`{"EventID":5145,"Channel":"Security","Hostname":"WORKSTATION6","TimeCreated":"2020-08-06T05:20:46.754Z","SubjectUserName":"pgustavo","SubjectDomainName":"THESHIRE","RelativeTargetName":"svcctl"}`,
			map[string]string{"InitiatingProcessAccountName": "pgustavo", "InitiatingProcessAccountDomain": "THESHIRE"}},
	} {
		table, row, dl := windowsRows(t, []byte(c.raw))
		if dl != nil {
			t.Errorf("%s: dead letter %s: %s", c.raw, dl.Reason, dl.Error)
			continue
		}
		if table != "DeviceEvents" || row["ActionType"] != ActionWindowsEvent {
			t.Errorf("%s: %s %s, want a DeviceEvents %s row", c.raw, table, row["ActionType"], ActionWindowsEvent)
		}
		for k, v := range c.want {
			if row[k] != v {
				t.Errorf("%s: %s = %q, want %q", c.raw, k, row[k], v)
			}
		}
	}
}

// TestWindowsDeadLetters: a malformed Windows event is a dead letter with
// the reason and its own bytes, not a missing_category.
func TestWindowsDeadLetters(t *testing.T) {
	cases := []struct {
		raw    string
		reason Reason
		msg    string
	}{
		{`{"EventID":"x1","Channel":"Security","Hostname":"h","TimeCreated":"2020-10-19 02:56:14.283"}`, ReasonBadEvent, `EventID "x1"`},
		{`{"EventID":4624,"Channel":"Security","TimeGenerated":"2021-08-02T13:08:45Z","Type":"SecurityEvent"}`, ReasonBadEvent, "names no host"},
		{`{"EventID":4624,"Channel":"Security","Hostname":"h"}`, ReasonBadTimestamp, "has no time"},
		{`{"EventID":4624,"Channel":"Security","Hostname":"h","TimeCreated":"yesterday"}`, ReasonBadTimestamp, "yesterday"},
		{`{"TimeGenerated":"2021-08-02T13:08:45Z","Type":"SigninLogs","OperationName":"Sign-in activity","UserPrincipalName":"a@b"}`, ReasonUnknownTable, "Sentinel's SigninLogs log"},
	}
	for _, c := range cases {
		_, _, dl := windowsRows(t, []byte(c.raw))
		if dl == nil {
			t.Errorf("%s: no dead letter", c.raw)
			continue
		}
		if dl.Reason != c.reason || !strings.Contains(dl.Error, c.msg) || dl.Value != c.raw {
			t.Errorf("%s: dead letter %s %q (value %q), want %s with %q and the record's bytes", c.raw, dl.Reason, dl.Error, dl.Value, c.reason, c.msg)
		}
	}
	// In import mode (export rows, whose table is inferred) a Windows
	// event still goes to its own table.
	imp := New(WithImport(""), WithDefaultTenant("t1"))
	defer imp.Close()
	var tables []string
	collect := func(b Batch) { tables = append(tables, b.Table); b.Release() }
	ok := imp.AddLog(Input{Value: []byte(`{"EventID":4624,"Channel":"Security","Computer":"dc1","TimeGenerated":"2021-08-02T13:08:45Z","TargetUserName":"bob"}`)},
		collect, func(d DeadLetter) { t.Errorf("import mode: dead letter %s %s", d.Reason, d.Error) })
	imp.Flush(collect)
	if !ok || len(tables) != 1 || tables[0] != "DeviceLogonEvents" {
		t.Errorf("import mode: taken %v, tables %v; want DeviceLogonEvents", ok, tables)
	}
	// Not Windows events: left to Add, untouched.
	n := New()
	defer n.Close()
	for _, raw := range []string{
		`{"category":"AdvancedHunting-DeviceEvents","tenantId":"t","properties":{"EventID":1}}`,
		`{"records":[{"EventID":1}]}`,
		`{"EventID":1}`,
		`not json "EventID"`,
		`{"Type":"DeviceProcessEvents","TimeGenerated":"2021-08-02T13:08:45Z","ActionType":"ProcessCreated","OperationName":"x"}`,
	} {
		if n.AddLog(Input{Value: []byte(raw)}, func(Batch) {}, func(DeadLetter) {}) {
			t.Errorf("%s taken for a Windows event", raw)
		}
	}
	if s := n.Stats(); s.Records != 0 {
		t.Errorf("stats %+v after records AddLog left alone", s)
	}
}

// TestSentinelCloudRows: rows of Sentinel's AuditLogs and OfficeActivity
// exports (the Golden SAML recording's) become CloudAppEvents rows with the
// actor, client address and OAuth application as columns.
func TestSentinelCloudRows(t *testing.T) {
	dir := sharedData(t, "otrf/datasets/compound/GoldenSAMLADFSMailAccess/unzipped")
	for _, c := range []struct {
		file string
		want map[string]string
	}{
		{"OfficeActivityEvents.json", map[string]string{"ActionType": "MailItemsAccessed", "Application": "Microsoft Exchange Online",
			"AccountId": "pgustavo@simulandlabs.com", "IPAddress": "1.2.3.4", "OAuthAppId": "5a95e683-08ad-424e-a441-1d1aec52c02c",
			"Timestamp": "2021-08-02T13:32:07Z"}},
		{"AADAuditEvents.json", map[string]string{"Application": "Microsoft Entra ID", "AccountId": "pgustavo@simulandlabs.com",
			"AccountObjectId": "aead923d-498b-4f64-a66c-2af91447a8b6", "ObjectName": "SimuLandApp"}},
	} {
		b, err := os.ReadFile(filepath.Join(dir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		table, row, dl := windowsRows(t, []byte(line))
		if dl != nil {
			t.Fatalf("%s: dead letter %s: %s", c.file, dl.Reason, dl.Error)
		}
		if table != "CloudAppEvents" || !strings.Contains(row["RawEventData"], `"TenantId"`) {
			t.Errorf("%s: table %s, RawEventData %.80s", c.file, table, row["RawEventData"])
		}
		for k, v := range c.want {
			if row[k] != v {
				t.Errorf("%s: %s = %q, want %q", c.file, k, row[k], v)
			}
		}
	}
	if _, _, dl := windowsRows(t, []byte(`{"Type":"OfficeActivity","Operation":"MailItemsAccessed","UserId":"a@b"}`)); dl == nil || dl.Reason != ReasonBadTimestamp {
		t.Errorf("OfficeActivity row without a time: %+v, want bad_timestamp", dl)
	}
}

// FuzzAddLog: whatever the bytes, AddLog never panics, and it either leaves
// a record to Add untouched or makes it exactly one row or dead letter.
func FuzzAddLog(f *testing.F) {
	for _, s := range []string{
		`{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"h","UtcTime":"2020-10-19 02:56:14.283","Image":"C:\\a.exe"}`,
		`{"Event":{"System":{"EventID":{"#text":4624},"Channel":"Security","Computer":"h","TimeCreated":{"#attributes":{"SystemTime":"2025-01-01T00:00:00Z"}}},"EventData":{"LogonType":3}}}`,
		`{"EventID":4624,"Type":"SecurityEvent","Computer":"dc","TimeGenerated":"2021-08-02T13:08:45Z","ProcessId_string":"0x1"}`,
		`{"Type":"OfficeActivity","Operation":"MailItemsAccessed","UserId":"a@b","TimeGenerated":"2021-08-02T13:32:07Z","Client_IPAddress":"1.2.3.4:5"}`,
		`{"OperationName":"x","LoggedByService":"y","InitiatedBy":"{\"user\":{\"id\":1}}","TargetResources":"[1]","TimeGenerated":"2021-08-02T13:32:07Z"}`,
		`{"EventID":[],"Channel":{},"Hostname":7}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		n := New(WithDefaultTenant("t1"))
		defer n.Close()
		rows, dead := 0, 0
		emit := func(b Batch) { rows += int(b.Record.NumRows()); b.Release() }
		took := n.AddLog(Input{Value: raw}, emit, func(DeadLetter) { dead++ })
		n.Flush(emit)
		switch {
		case !took && (rows != 0 || dead != 0 || n.Stats().Records != 0):
			t.Fatalf("left to Add, yet %d rows, %d dead letters, stats %+v", rows, dead, n.Stats())
		case took && rows+dead != 1:
			t.Fatalf("taken: %d rows and %d dead letters, want one of them", rows, dead)
		}
	})
}
