package pipeline

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// TestReplayIncidentsDoNotDependOnBatching replays one simulated stream with
// commit intervals, poll sizes and Arrow batch sizes far apart and wants the
// same incidents from each, compared as sets of alert-id groups: correlation
// is a function of the stream, not of where transactions, polls and batches
// happen to end (issue 17; the correlator's own order tests cover arrival
// orders in depth).
func TestReplayIncidentsDoNotDependOnBatching(t *testing.T) {
	if testing.Short() {
		t.Skip("replays the pipeline four times")
	}
	dir := t.TempDir()
	inputs := writeSim(t, dir, 2000, "a.jsonl", "b.jsonl", "c.jsonl")
	var want []string
	for i, v := range []struct {
		commit          time.Duration
		poll, batchRows int
	}{
		{time.Second, 10_000, 8192}, // the defaults
		{50 * time.Millisecond, 10, 64},
		{10 * time.Second, 100_000, 8192},
		{time.Second, 1000, 512},
	} {
		name := fmt.Sprintf("commit %s, poll %d, batch %d rows", v.commit, v.poll, v.batchRows)
		cfg := Default()
		cfg.Hunting.Enabled = false
		cfg.Topics.Partitions = 2
		cfg.Kafka.CommitInterval = Duration(v.commit)
		cfg.Kafka.MaxPollRecords = v.poll
		cfg.Normalize.BatchRows = v.batchRows
		cfg.State.Dir = filepath.Join(dir, fmt.Sprint("state", i))
		_, out, _ := replay(t, cfg, inputs...)
		got := groupings(t, latestIncidents(t, filepath.Join(out, "incidents.jsonl")))
		checkCorrelateInvariants(t, name, cfg)
		merged := slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, ",") })
		if i == 0 {
			if len(got) < 2 || !merged {
				t.Fatalf("%s: %d incidents (merged: %v): not a useful stream", name, len(got), merged)
			}
			want = got
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: incidents differ from the defaults':\n got %v\nwant %v", name, got, want)
		}
	}
}

// checkCorrelateInvariants opens the correlate store a run left (read-only)
// and checks the correlator's invariants on it.
func checkCorrelateInvariants(t *testing.T, name string, cfg Config) {
	t.Helper()
	st, err := state.Open(filepath.Join(cfg.State.Dir, "correlate"), state.WithReadOnly())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer st.Close()
	if err := correlate.CheckInvariants(st, cfg.Correlate.Window.D()); err != nil {
		t.Errorf("%s: invariants: %v", name, err)
	}
}
