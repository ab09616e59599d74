package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/stitch-xdr/stitch/internal/shareddata"
)

// expectFile is the shape of testdata/replay/*.expect.json.
type expectFile struct {
	RecordsRead  int64            `json:"records_read"`
	Normalized   map[string]int64 `json:"normalized"`
	DeadLettered map[string]int64 `json:"dead_lettered"`
}

func readExpect(t *testing.T, path string) expectFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var e expectFile
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if e.Normalized == nil {
		e.Normalized = map[string]int64{}
	}
	if e.DeadLettered == nil {
		e.DeadLettered = map[string]int64{}
	}
	return e
}

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

// The foundation's acceptance case: a file mixing good records with one of
// each kind of bad input, plus a record over the size limit. Every good record
// is normalized and lands in the hunting partitions; every bad one is
// dead-lettered once, with its reason, its source position and its bytes.
func TestReplayMixedBadInput(t *testing.T) {
	root := shareddata.Root(t)
	exp := readExpect(t, filepath.Join(root, "testdata/replay/mixed-bad.expect.json"))

	// The too-large case is made here rather than stored: 1.2 MB of a valid
	// record, over the 1 MiB default limit.
	big := filepath.Join(t.TempDir(), "big.jsonl")
	pad := strings.Repeat("A", 1_200_000)
	os.WriteFile(big, []byte(`{"time":"2024-06-03T08:00:00Z","tenantId":"t-big","category":"AdvancedHunting-DeviceEvents","properties":{"Timestamp":"2024-06-03T08:00:00Z","AdditionalFields":"`+pad+`"}}`+"\n"), 0o644)
	exp.RecordsRead++
	exp.DeadLettered["too_large"]++

	sum, out, p := replay(t, Default(), filepath.Join(root, "testdata/replay/mixed-bad.jsonl"), big)

	if sum.RecordsRead != exp.RecordsRead {
		t.Errorf("records_read = %d, want %d", sum.RecordsRead, exp.RecordsRead)
	}
	if !maps.Equal(sum.Normalized, exp.Normalized) {
		t.Errorf("normalized = %v\nwant %v", sum.Normalized, exp.Normalized)
	}
	if !maps.Equal(sum.DeadLettered, exp.DeadLettered) {
		t.Errorf("dead_lettered = %v\nwant %v", sum.DeadLettered, exp.DeadLettered)
	}
	// The good records around the bad ones reach the hunting partitions too.
	if !maps.Equal(sum.HuntingRows, exp.Normalized) {
		t.Errorf("hunting rows = %v\nwant %v", sum.HuntingRows, exp.Normalized)
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
	if !maps.Equal(reasons, exp.DeadLettered) {
		t.Errorf("deadletter.jsonl reasons = %v\nwant %v", reasons, exp.DeadLettered)
	}

	// summary.json on disk says the same as the returned summary.
	var disk Summary
	b, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if err := json.Unmarshal(b, &disk); err != nil || disk.RecordsRead != sum.RecordsRead {
		t.Errorf("summary.json unreadable or different: %v %+v", err, disk)
	}

	// The hunting layout: <Table>/tenant=<id>/date=YYYY-MM-DD/hour=HH/part-*.parquet.
	files, _ := filepath.Glob(filepath.Join(out, "hunting", "*", "tenant=*", "date=*", "hour=*", "part-*.parquet"))
	if len(files) < len(exp.Normalized) {
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

// Files holding one JSON array, or one Event Hubs envelope, are inputs too.
func TestReplayArrayAndEnvelopeFiles(t *testing.T) {
	root := shareddata.Root(t)
	for _, name := range []string{"array.json", "envelope.json"} {
		t.Run(name, func(t *testing.T) {
			exp := readExpect(t, filepath.Join(root, "testdata/replay", strings.TrimSuffix(name, ".json")+".expect.json"))
			sum, _, _ := replay(t, Default(), filepath.Join(root, "testdata/replay", name))
			if sum.RecordsRead != exp.RecordsRead || !maps.Equal(sum.Normalized, exp.Normalized) || len(sum.DeadLettered) != 0 {
				t.Errorf("got read=%d normalized=%v dead=%v; want read=%d normalized=%v", sum.RecordsRead, sum.Normalized, sum.DeadLettered, exp.RecordsRead, exp.Normalized)
			}
		})
	}
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
