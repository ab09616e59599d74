package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/cockroachdb/datadriven"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/stitch-xdr/stitch/internal/shareddata"
)

// replay runs Replay with a checked allocator and asserts that every Arrow
// buffer was released by the time it returns.
func replay(t *testing.T, cfg Config, inputs ...string) (Summary, string, *Pipeline) {
	t.Helper()
	out := t.TempDir()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	var p *Pipeline
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := Replay(ctx, cfg, ReplayOptions{Inputs: inputs, OutDir: out, Built: func(x *Pipeline) { p = x }}, WithAllocator(mem))
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	mem.AssertSize(t, 0)
	return sum, out, p
}

func readDeadLetters(t *testing.T, out string) []map[string]any {
	t.Helper()
	f, err := os.Open(filepath.Join(out, "deadletter.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var dls []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var d map[string]any
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("deadletter.jsonl line is not JSON: %v", err)
		}
		dls = append(dls, d)
	}
	return dls
}

// TestReplayCases replays the files of testdata/replay as the datadriven
// cases of testdata/replay/expect say (go test -rewrite rewrites the counts):
//
//	replay [too-large]
//	<input file names under testdata/replay, one a line>
//	----
//	the summary's records read, normalized per table, dead-lettered per reason
//
// too-large adds a generated record over the 1 MiB default limit (not stored:
// it would bloat the repository). Every case also checks that each dead
// letter in deadletter.jsonl carries its error, source and bytes, that
// summary.json says what Replay returned, that the hunting partitions hold
// every normalized row, that the metrics pass promlint and that the
// correlator's invariants hold on the store the replay left.
func TestReplayCases(t *testing.T) {
	root := shareddata.Root(t)
	datadriven.RunTest(t, filepath.Join(root, "testdata/replay/expect"), func(t *testing.T, td *datadriven.TestData) string {
		if td.Cmd != "replay" {
			t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
		}
		var inputs []string
		for _, name := range strings.Fields(td.Input) {
			inputs = append(inputs, filepath.Join(root, "testdata/replay", name))
		}
		if td.HasArg("too-large") {
			// 1.2 MB of a valid record, over the 1 MiB default limit.
			big := filepath.Join(t.TempDir(), "big.jsonl")
			pad := strings.Repeat("A", 1_200_000)
			os.WriteFile(big, []byte(`{"time":"2024-06-03T08:00:00Z","tenantId":"t-big","category":"AdvancedHunting-DeviceEvents","properties":{"Timestamp":"2024-06-03T08:00:00Z","AdditionalFields":"`+pad+`"}}`+"\n"), 0o644)
			inputs = append(inputs, big)
		}
		cfg := Default()
		cfg.State.Dir = filepath.Join(t.TempDir(), "state") // kept for the invariants
		sum, out, p := replay(t, cfg, inputs...)
		checkDeadLetters(t, out, sum.DeadLettered)
		checkReplayOutput(t, out, p, sum)
		checkCorrelateInvariants(t, td.Pos, cfg)
		return fmt.Sprintf("records read: %d\nnormalized:%s\ndead-lettered:%s",
			sum.RecordsRead, counts(sum.Normalized), counts(sum.DeadLettered))
	})
}

// counts prints a count map as " key=n" pairs in key order.
func counts(m map[string]int64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, " %s=%d", k, m[k])
	}
	return b.String()
}

// checkDeadLetters reads deadletter.jsonl: every dead letter is there once,
// with its reason, error, source position and original bytes.
func checkDeadLetters(t *testing.T, out string, want map[string]int64) {
	t.Helper()
	if len(want) == 0 {
		return
	}
	dls := readDeadLetters(t, out)
	reasons := map[string]int64{}
	for _, d := range dls {
		reason, _ := d["reason"].(string)
		reasons[reason]++
		if d["error"] == "" || d["topic"] != "signals" || d["offset"] == nil || d["sha256"] == "" {
			t.Errorf("dead letter lacks its error or source: %v", d)
		}
		if d["value"] == nil && d["value_base64"] == nil {
			t.Errorf("dead letter lacks the original bytes: %v", d)
		}
		switch reason {
		case "too_large":
			if d["truncated"] != true || d["size"].(float64) < 1_200_000 || len(d["value"].(string)) > 64<<10 {
				t.Errorf("too_large dead letter should be truncated with its full size: truncated=%v size=%v len=%d", d["truncated"], d["size"], len(d["value"].(string)))
			}
		case "invalid_utf8":
			if d["value_base64"] == nil {
				t.Errorf("invalid UTF-8 should be kept as base64: %v", d)
			}
		}
	}
	if !maps.Equal(reasons, want) {
		t.Errorf("deadletter.jsonl reasons = %v\nwant %v", reasons, want)
	}
}

// checkReplayOutput checks what a replay leaves beside the summary it returns.
func checkReplayOutput(t *testing.T, out string, p *Pipeline, sum Summary) {
	t.Helper()
	// The good records around the bad ones reach the hunting partitions too.
	if !maps.Equal(sum.HuntingRows, sum.Normalized) {
		t.Errorf("hunting rows = %v\nnormalized %v", sum.HuntingRows, sum.Normalized)
	}
	// summary.json on disk says the same as the returned summary.
	var disk Summary
	b, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if err := json.Unmarshal(b, &disk); err != nil || disk.RecordsRead != sum.RecordsRead {
		t.Errorf("summary.json unreadable or different: %v %+v", err, disk)
	}
	// The hunting layout: <Table>/tenant=<id>/date=YYYY-MM-DD/hour=HH/part-*.parquet.
	files, _ := filepath.Glob(filepath.Join(out, "hunting", "*", "tenant=*", "date=*", "hour=*", "part-*.parquet"))
	if len(files) < len(sum.Normalized) {
		t.Errorf("only %d parquet files in the hunting layout: %v", len(files), files)
	}
	// Metrics follow the Prometheus conventions.
	problems, err := promlint.NewWithMetricFamilies(gather(t, p)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
}

func gather(t *testing.T, p *Pipeline) []*dto.MetricFamily {
	t.Helper()
	mfs, err := p.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// The Golden SAML recording is an advanced-hunting export: rows of three
// tables with no envelope, no table name and export-tool suffixes. Import
// mode infers each row's table and normalizes all nine.
func TestReplayGoldenSAMLExport(t *testing.T) {
	in := shareddata.Path(t, "otrf/datasets/compound/GoldenSAMLADFSMailAccess/unzipped/Microsoft365DefenderEvents.json")
	cfg := Default()
	cfg.Normalize.Import = true
	cfg.Normalize.DefaultTenant = "simulandlabs"
	sum, out, _ := replay(t, cfg, in)
	want := map[string]int64{"DeviceEvents": 5, "IdentityDirectoryEvents": 2, "CloudAppEvents": 2}
	if sum.RecordsRead != 9 || !maps.Equal(sum.Normalized, want) || len(sum.DeadLettered) != 0 {
		t.Fatalf("got read=%d normalized=%v dead=%v; want 9 rows %v", sum.RecordsRead, sum.Normalized, sum.DeadLettered, want)
	}
	if sum.Import == nil || !sum.Import.Inferred {
		t.Errorf("summary should say the tables were inferred: %+v", sum.Import)
	}
	if dirs, _ := filepath.Glob(filepath.Join(out, "hunting", "DeviceEvents", "tenant=simulandlabs", "date=2021-08-02", "hour=13")); len(dirs) != 1 {
		t.Errorf("DeviceEvents rows not partitioned by their tenant and event hour")
	}
}

// A file that cannot be read is an error that names it; nothing runs.
func TestReplayMissingInput(t *testing.T) {
	_, err := Replay(context.Background(), Default(), ReplayOptions{Inputs: []string{"/nonexistent/x.jsonl"}, OutDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/x.jsonl") {
		t.Fatalf("err = %v", err)
	}
}

// A replay into the directory of an earlier one removes what the declared
// stages write there, read from their declarations: a stage declared in a
// test (count.jsonl), a stage this config turns off (its file would be
// stale beside the new ones) and a stage's directory inside it (hunting/).
// Anything else stays. The list knew only the built-in stages, enabled.
func TestClearReplayOutputsFollowsTheTopology(t *testing.T) {
	dir := t.TempDir()
	cfg := Default()
	cfg.State.Dir = t.TempDir()
	cfg.Hunting.Dir = filepath.Join(dir, "hunting")
	cfg.Respond.Enabled = false
	p, err := New(cfg, WithBrokers([]string{"127.0.0.1:1"}), WithInstance("clear"), WithStage(countStage()))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := p.Topology().stage("respond"); ok {
		t.Fatal("respond runs with respond.enabled false: the test shows nothing")
	}
	for _, f := range []string{"summary.json", "count.jsonl", "actions.jsonl", "incidents.jsonl", "notes.txt", "hunting/DeviceEvents/x.parquet"} {
		path := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := clearReplayOutputs(p, dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{"actions.jsonl", "count.jsonl", "hunting/", "incidents.jsonl", "summary.json"}
	if !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "notes.txt" {
		t.Errorf("left %v, want only notes.txt", left)
	}
}
