package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stitch-xdr/stitch/operators/respond"
)

// collectActions reads the actions topic: action id → type, target, status
// and sorted alerts of its latest version, and the (id, version) pairs
// published more than once. How many versions an action took depends on
// the order incidents and telemetry met in the respond stage, which
// crashes and rebalances change; its final state does not.
func collectActions(t *testing.T, addr, dir string) (map[string]string, []string) {
	t.Helper()
	latest := map[string]respond.Action{}
	seen := map[string]bool{}
	var dups []string
	for _, r := range drain(t, addr, "actions", dir) {
		var a respond.Action
		if err := json.Unmarshal(r.Value, &a); err != nil {
			t.Fatalf("action at %d/%d: %v", r.Partition, r.Offset, err)
		}
		k := fmt.Sprintf("%s v%d", a.ID, a.Version)
		if seen[k] {
			dups = append(dups, k)
		}
		seen[k] = true
		if a.Version > latest[a.ID].Version {
			latest[a.ID] = a
		}
	}
	out := map[string]string{}
	for id, a := range latest {
		target, _ := a.Target.Key(a.Type)
		alerts := slices.Sorted(slices.Values(a.Alerts))
		out[id] = fmt.Sprintf("%s %s %s incident=%s alerts=%s", a.Type, target, a.Status, a.IncidentID, strings.Join(alerts, ","))
	}
	return out, dups
}

// compareActions checks that every action of the uninterrupted run is
// there exactly once, in the same final state, and no other.
func compareActions(t *testing.T, want, got map[string]string, dups []string) {
	t.Helper()
	if len(dups) > 0 {
		t.Errorf("%d action versions published twice, e.g. %v", len(dups), dups[:min(5, len(dups))])
	}
	for id, w := range want {
		if g, ok := got[id]; !ok {
			t.Errorf("action %s missing (want %s)", id, w)
		} else if g != w {
			t.Errorf("action %s:\n got %s\nwant %s", id, g, w)
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("extra action %s: %s", id, g)
		}
	}
}
