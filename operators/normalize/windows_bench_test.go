package normalize

import (
	"strings"
	"testing"
)

// BenchmarkAddLogPassThrough: what AddLog costs a streaming record it
// leaves to Add (the pipeline asks it first for every record), beside a
// flat OTRF Sysmon event it normalizes.
//
//	go test ./operators/normalize -run XXX -bench AddLog
func BenchmarkAddLogPassThrough(b *testing.B) {
	streaming := []byte(`{"time":"2026-01-02T03:04:05Z","tenantId":"t1","operationName":"Publish","category":"AdvancedHunting-DeviceProcessEvents","properties":{"Timestamp":"2026-01-02T03:04:05Z","DeviceId":"d1","DeviceName":"host1","ActionType":"ProcessCreated","FolderPath":"C:\\Windows\\System32\\cmd.exe","ProcessCommandLine":"` + strings.Repeat("x", 800) + `"}}`)
	flat := []byte(`{"SourceName":"Microsoft-Windows-Sysmon","TimeCreated":"2020-10-18 10:56:14.283","Hostname":"WORKSTATION5","Channel":"Microsoft-Windows-Sysmon/Operational","EventID":1,"UtcTime":"2020-10-19 02:56:14.283","Image":"C:\\Users\\wardog\\Desktop\\Outflank-Dumpert.exe","CommandLine":"Outflank-Dumpert.exe","ParentImage":"C:\\Windows\\System32\\cmd.exe","User":"WORKSTATION5\\wardog","ProcessId":"6708"}`)
	for _, c := range []struct {
		name string
		raw  []byte
	}{{"streaming-left-to-Add", streaming}, {"flat-sysmon-normalized", flat}} {
		b.Run(c.name, func(b *testing.B) {
			n := New()
			defer n.Close()
			emit := func(bt Batch) { bt.Release() }
			b.SetBytes(int64(len(c.raw)))
			b.ReportAllocs()
			for b.Loop() {
				n.AddLog(Input{Value: c.raw}, emit, nil)
			}
			n.Flush(emit)
		})
	}
}
