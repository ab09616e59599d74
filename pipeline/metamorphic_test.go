package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// TestReplayIncidentsDoNotDependOnBatching replays one simulated stream with
// commit intervals (50 ms, 1 s, 10 s), poll sizes (10 to 100,000 records),
// Arrow batch sizes (64 to 8,192 rows) and the alerts' evidence before,
// with and after them, and wants the same incidents from each, compared as
// sets of alert-id groups, and the correlator's invariants on each run's
// store: correlation is a function of the stream, not of where
// transactions, polls and batches happen to end (issue 17). The correlator's
// own order tests cover arrival orders in depth; e2e's TestScaleOut compares
// three processes with one.
func TestReplayIncidentsDoNotDependOnBatching(t *testing.T) {
	if testing.Short() {
		t.Skip("replays the pipeline seven times")
	}
	dir := t.TempDir()
	inputs := map[string][]string{"": writeSim(t, dir, 2000, "a.jsonl", "b.jsonl", "c.jsonl")}
	for _, where := range []string{"before", "with", "after"} {
		inputs[where] = moveEvidence(t, inputs[""], where)
	}
	var want []string
	for i, v := range []struct {
		evidence        string // "": as the simulator wrote it
		commit, urgent  time.Duration
		poll, batchRows int
	}{
		{"", time.Second, 100 * time.Millisecond, 10_000, 8192}, // the defaults
		{"", 50 * time.Millisecond, 100 * time.Millisecond, 10, 64},
		// No urgent commits: each stage takes the whole input in one
		// transaction.
		{"", 10 * time.Second, 0, 100_000, 8192},
		{"", time.Second, 100 * time.Millisecond, 1000, 512},
		// Small polls and transactions, so that an alert and its evidence
		// land in different ones.
		{"before", 50 * time.Millisecond, 100 * time.Millisecond, 100, 64},
		{"with", time.Second, 100 * time.Millisecond, 10_000, 8192},
		{"after", 50 * time.Millisecond, 100 * time.Millisecond, 100, 64},
	} {
		name := fmt.Sprintf("commit %s (urgent %s), poll %d, batch %d rows", v.commit, v.urgent, v.poll, v.batchRows)
		if v.evidence != "" {
			name = "evidence " + v.evidence + " its alert, " + name
		}
		cfg := Default()
		cfg.Hunting.Enabled = false
		cfg.Topics.Partitions = 2
		cfg.Kafka.CommitInterval = Duration(v.commit)
		cfg.Kafka.UrgentCommit = Duration(v.urgent)
		cfg.Kafka.MaxPollRecords = v.poll
		cfg.Normalize.BatchRows = v.batchRows
		cfg.State.Dir = filepath.Join(dir, fmt.Sprint("state", i))
		start := time.Now()
		out := replayKeepingInterval(t, cfg, inputs[v.evidence]...)
		got := groupings(t, latestIncidents(t, filepath.Join(out, "incidents.jsonl")))
		t.Logf("%s: %d incidents in %s", name, len(got), time.Since(start).Round(time.Millisecond))
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

// replayKeepingInterval is Replay with the configured commit interval: Replay
// caps it at 500 ms (a replay should finish soon after its input), which
// would make 1 s and 10 s the same run. It returns the output directory.
func replayKeepingInterval(t *testing.T, cfg Config, inputs ...string) string {
	t.Helper()
	out := t.TempDir()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	interval := cfg.Kafka.CommitInterval
	keep := func(p *Pipeline) { p.cfg.Kafka.CommitInterval = interval }
	if _, err := Replay(ctx, cfg, ReplayOptions{Inputs: inputs, OutDir: out}, WithAllocator(mem), keep); err != nil {
		t.Fatalf("replay: %v", err)
	}
	mem.AssertSize(t, 0)
	return out
}

// moveEvidence writes copies of the input files in which every
// AlertEvidence record of an alert whose AlertInfo record is in the same
// file comes 300 records before the alert ("before"; about 12 s of stream
// time, well within the allowed lateness), right after it ("with") or 300
// records after it ("after"). The simulator writes some evidence shortly
// before its alert and some shortly after.
func moveEvidence(t *testing.T, inputs []string, where string) []string {
	t.Helper()
	const gap = 300
	var out []string
	moved := 0
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
		type rec struct {
			Category   string `json:"category"`
			Properties struct {
				AlertID string `json:"AlertId"`
			} `json:"properties"`
		}
		recs := make([]rec, len(lines))
		alertAt := map[string]int{}
		for i, l := range lines {
			if err := json.Unmarshal([]byte(l), &recs[i]); err != nil {
				t.Fatal(err)
			}
			if recs[i].Category == "AdvancedHunting-AlertInfo" {
				alertAt[recs[i].Properties.AlertID] = i
			}
		}
		// Each line gets a place; evidence takes its alert's, shifted, and
		// keeps its order among the alert's evidence.
		place := make([]float64, len(lines))
		for i, r := range recs {
			place[i] = float64(i)
			at, ok := alertAt[r.Properties.AlertID]
			if r.Category != "AdvancedHunting-AlertEvidence" || !ok {
				continue
			}
			moved++
			shift := map[string]float64{"before": -gap - 0.5, "with": 0.5, "after": gap + 0.5}[where]
			place[i] = float64(at) + shift + float64(i)/float64(10*len(lines))
		}
		order := make([]int, len(lines))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(place[a], place[b]) })
		var sb strings.Builder
		for _, i := range order {
			sb.WriteString(strings.TrimSuffix(lines[i], "\n") + "\n")
		}
		path := strings.TrimSuffix(in, ".jsonl") + "-evidence-" + where + ".jsonl"
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, path)
	}
	if moved < 10 {
		t.Fatalf("only %d evidence records to move", moved)
	}
	return out
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
