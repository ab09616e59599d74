package normalize

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestWindowsRecord(t *testing.T) {
	ev := func(channel string, id int, data map[string]any) []byte {
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
		raw   []byte
		table string
		want  map[string]any
	}{
		{ev("Microsoft-Windows-Sysmon/Operational", 1, map[string]any{
			"Image": `C:\Windows\System32\cmd.exe`, "CommandLine": "cmd /c x", "User": `CORP\bob`, "LogonId": "0x3e7",
			"Hashes": "SHA1=AA,MD5=BB,SHA256=CC,IMPHASH=DD", "ParentImage": `C:\Windows\explorer.exe`, "ProcessId": 42,
		}), "DeviceProcessEvents", map[string]any{
			"FolderPath": `C:\Windows\System32\cmd.exe`, "FileName": "cmd.exe", "AccountDomain": "CORP", "AccountName": "bob",
			"LogonId": 999.0, "SHA1": "aa", "MD5": "bb", "SHA256": "cc", "InitiatingProcessFileName": "explorer.exe", "ProcessId": 42.0,
			"DeviceName": "ws1.corp.local", "Timestamp": "2025-10-27T00:09:41.570583Z",
		}},
		{ev("Microsoft-Windows-Sysmon/Operational", 13, map[string]any{
			"EventType": "SetValue", "TargetObject": `HKLM\System\Services\X\Start`, "Details": "DWORD (0x00000004)",
		}), "DeviceRegistryEvents", map[string]any{
			"ActionType": "RegistryValueSet", "RegistryKey": `HKEY_LOCAL_MACHINE\System\Services\X`, "RegistryValueName": "Start",
			"RegistryValueType": "Dword", "RegistryValueData": "4",
		}},
		{ev("Security", 4624, map[string]any{"TargetUserName": "bob", "TargetDomainName": "CORP", "LogonType": "10", "IpAddress": "10.0.0.5"}),
			"DeviceLogonEvents", map[string]any{"ActionType": "LogonSuccess", "LogonType": "RemoteInteractive", "RemoteIP": "10.0.0.5", "AccountName": "bob"}},
	}
	for _, c := range cases {
		if !IsWindowsEvent(c.raw) {
			t.Fatalf("not a Windows event: %s", c.raw)
		}
		rec, table, err := WindowsRecord(c.raw, "t1")
		if err != nil || table != c.table {
			t.Fatalf("table %q, %v; want %s", table, err, c.table)
		}
		var got struct {
			Category   string         `json:"category"`
			Properties map[string]any `json:"properties"`
		}
		if err := json.Unmarshal(rec, &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range c.want {
			if got.Properties[k] != v {
				t.Errorf("%s: %s = %v, want %v", table, k, got.Properties[k], v)
			}
		}
		// and the normalizer takes it
		n := New()
		rows := 0
		n.Add(Input{Value: rec}, func(b Batch) { rows += int(b.Record.NumRows()); b.Release() }, func(d DeadLetter) { t.Errorf("dead letter: %s %s", d.Reason, d.Error) })
		n.Flush(func(b Batch) { rows += int(b.Record.NumRows()); b.Release() })
		n.Close()
		if rows != 1 {
			t.Errorf("%s: %d rows", table, rows)
		}
	}
	if _, _, err := WindowsRecord(ev("System", 7045, nil), "t1"); !errors.Is(err, ErrNoTable) {
		t.Errorf("service install: %v, want ErrNoTable", err)
	}
	if IsWindowsEvent([]byte(`{"category":"AdvancedHunting-DeviceEvents"}`)) {
		t.Error("a streaming record taken for a Windows event")
	}
}
