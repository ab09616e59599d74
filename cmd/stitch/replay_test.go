package main

import (
	"testing"

	"github.com/stitch-xdr/stitch/pipeline"
)

// A replay of telemetry without alerts (the Golden SAML recording) says why
// it built no incident and where its rows are; one with alerts, or with
// incidents, says nothing more.
func TestReplaySaysWhyNoIncident(t *testing.T) {
	for _, c := range []struct {
		sum  pipeline.Summary
		want string
	}{
		{pipeline.Summary{RecordsRead: 9, Normalized: map[string]int64{"CloudAppEvents": 9}},
			"no incident: the input holds no product alert (AlertInfo, AlertEvidence) and no detection raised one; its telemetry is in the hunting partitions ('stitch hunt --dir out/hunting --tables')"},
		{pipeline.Summary{RecordsRead: 9, Normalized: map[string]int64{"AlertInfo": 1}}, ""},
		{pipeline.Summary{RecordsRead: 9, Incidents: 1}, ""},
		{pipeline.Summary{}, ""},
	} {
		if got := noIncidentReason(c.sum, "out/hunting"); got != c.want {
			t.Errorf("%+v: %q, want %q", c.sum, got, c.want)
		}
	}
}
