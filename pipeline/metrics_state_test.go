package pipeline

import (
	"testing"

	"github.com/stitch-xdr/stitch/state"
)

// A state store's size is on /metrics while it is open (stitch_state_bytes,
// disk and live), and its series go when it closes.
func TestStateBytesFollowsAnOpenStore(t *testing.T) {
	m := newMetrics(func() float64 { return 0 })
	st, err := state.Open(t.TempDir(), state.WithCacheSize(1<<20), state.WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	series := func() map[string]float64 {
		t.Helper()
		fams, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			if f.GetName() != "stitch_state_bytes" {
				continue
			}
			for _, mt := range f.GetMetric() {
				var store, kind string
				for _, l := range mt.GetLabel() {
					switch l.GetName() {
					case "store":
						store = l.GetValue()
					case "kind":
						kind = l.GetValue()
					}
				}
				out[store+"/"+kind] = mt.GetGauge().GetValue()
			}
		}
		return out
	}
	stop := m.watchStore("correlate", st)
	if got := series(); got["correlate/disk"] <= 0 || len(got) != 2 {
		t.Errorf("series of an open store: %v, want correlate/disk > 0 and correlate/live", got)
	}
	stop()
	if got := series(); len(got) != 0 {
		t.Errorf("series after the store stopped being watched: %v", got)
	}
}
