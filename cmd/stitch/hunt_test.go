package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/simulator"
)

// TestHuntCommand builds the stitch binary, replays a simulator stream with
// "stitch replay" and queries the hunting partitions with "stitch hunt" in
// KQL and SQL, JSON and CSV, checking the answers against the input.
func TestHuntCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and replays the pipeline")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "stitch")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	in := filepath.Join(tmp, "input.jsonl")
	if err := simulator.WriteFile(in, 800, simulator.Seed(7), simulator.EventsPerSecond(50)); err != nil {
		t.Fatal(err)
	}
	stitch := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}
	out := filepath.Join(tmp, "out")
	if _, stderr, code := stitch("replay", "--in", in, "--out", out); code != 0 {
		t.Fatalf("stitch replay: exit %d\n%s", code, stderr)
	}
	hunt := filepath.Join(out, "hunting")

	// The answers, from the input decoded here.
	procs, nets := map[string]int64{}, map[string]int64{}
	var first time.Time
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var r struct {
			TenantID   string `json:"tenantId"`
			Category   string `json:"category"`
			Properties struct {
				Timestamp time.Time
			} `json:"properties"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		switch r.Category {
		case "AdvancedHunting-DeviceProcessEvents":
			procs[r.TenantID]++
			if ts := r.Properties.Timestamp.Truncate(time.Microsecond); first.IsZero() || ts.Before(first) {
				first = ts
			}
		case "AdvancedHunting-DeviceNetworkEvents":
			nets[r.TenantID]++
		}
	}
	tenants := slices.Sorted(func(yield func(string) bool) {
		for k := range procs {
			if !yield(k) {
				return
			}
		}
	})

	t.Run("KQL as JSON", func(t *testing.T) {
		stdout, stderr, code := stitch("hunt", "--dir", hunt, "--kql", "--format", "json",
			"DeviceProcessEvents | summarize n = count(), first = min(Timestamp) by tenant | order by tenant asc")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var res struct {
			Columns   []string         `json:"columns"`
			Types     []string         `json:"types"`
			Rows      []map[string]any `json:"rows"`
			Truncated bool             `json:"truncated"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, stdout)
		}
		if fmt.Sprint(res.Columns, res.Types) != "[tenant n first] [VARCHAR BIGINT TIMESTAMPTZ]" || res.Truncated {
			t.Errorf("columns %v types %v truncated %v", res.Columns, res.Types, res.Truncated)
		}
		var got, want []string
		for _, r := range res.Rows {
			got = append(got, fmt.Sprint(r["tenant"], " ", r["n"]))
		}
		for _, tn := range tenants {
			want = append(want, fmt.Sprint(tn, " ", procs[tn]))
		}
		if !slices.Equal(got, want) {
			t.Errorf("rows %v, want %v", got, want)
		}
		var earliest time.Time
		for _, r := range res.Rows {
			ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r["first"]))
			if err != nil {
				t.Fatalf("first %v: %v", r["first"], err)
			}
			if earliest.IsZero() || ts.Before(earliest) {
				earliest = ts
			}
		}
		if !earliest.Equal(first) {
			t.Errorf("earliest Timestamp %v, want %v", earliest, first)
		}
	})

	t.Run("SQL as CSV", func(t *testing.T) {
		stdout, stderr, code := stitch("hunt", "--dir", hunt, "--format", "csv",
			"SELECT tenant, count(*) AS n FROM DeviceNetworkEvents GROUP BY tenant ORDER BY tenant")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		recs, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
		if err != nil {
			t.Fatalf("output is not CSV: %v\n%s", err, stdout)
		}
		want := [][]string{{"tenant", "n"}}
		for _, tn := range tenants {
			want = append(want, []string{tn, fmt.Sprint(nets[tn])})
		}
		if fmt.Sprint(recs) != fmt.Sprint(want) {
			t.Errorf("CSV %v, want %v", recs, want)
		}
	})

	t.Run("KQL from stdin with tenant and limit", func(t *testing.T) {
		cmd := exec.Command(bin, "hunt", "--dir", hunt, "--kql", "--format", "csv", "--tenant", tenants[0], "--limit", "3", "-")
		cmd.Stdin = strings.NewReader("DeviceProcessEvents\n| where FileName has \"exe\"\n| project tenant, ReportId\n")
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %s", err, e.String())
		}
		recs, err := csv.NewReader(&o).ReadAll()
		if err != nil || len(recs) != 4 {
			t.Fatalf("want a header and 3 rows, got %v (%v)", recs, err)
		}
		for _, r := range recs[1:] {
			if r[0] != tenants[0] {
				t.Errorf("row of tenant %s with --tenant %s", r[0], tenants[0])
			}
		}
		if !strings.Contains(e.String(), "truncated at 3 rows") {
			t.Errorf("stderr should say the rows were truncated: %q", e.String())
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, stderr, code := stitch("hunt", "--dir", hunt, "--kql", "DeviceProcessEvents\n| evaluate autocluster()")
		if code != 1 || !strings.Contains(stderr, "unsupported evaluate autocluster() at 2:12") {
			t.Errorf("unsupported KQL: exit %d, stderr %q", code, stderr)
		}
		if _, _, code := stitch("hunt", "--dir", hunt, "--format", "xml", "SELECT 1"); code != 2 {
			t.Errorf("unknown format: exit %d, want 2", code)
		}
		_, stderr, code = stitch("hunt", "--dir", hunt, "--kql", "DeviceProcessEvent | take 1")
		if code != 1 || !strings.Contains(stderr, "unknown table DeviceProcessEvent") || strings.Contains(stderr, "pg_") {
			t.Errorf("unknown table: exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("tables, flags after the query, jsonl, since 7d", func(t *testing.T) {
		stdout, stderr, code := stitch("hunt", "--dir", hunt, "--tables")
		if code != 0 || !strings.Contains(stdout, "DeviceProcessEvents\n") || !strings.Contains(stdout, "  ProcessCommandLine") {
			t.Errorf("--tables: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		stdout, stderr, code = stitch("hunt", "DeviceProcessEvents | take 3", "--dir", hunt, "--kql", "--format", "jsonl", "--since", "36500d")
		if code != 0 || strings.Count(stdout, "\n") != 3 || !strings.Contains(stderr, "3 rows") {
			t.Errorf("jsonl after the query: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil || m["ProcessCommandLine"] == nil {
				t.Errorf("jsonl line %q: %v", line, err)
			}
		}
	})
}

// TestHuntFlagsAfterQuery: flags may follow the query, a flag's value is
// not taken for the query, and "-" (standard input) stays the query.
func TestHuntFlagsAfterQuery(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string // --format --kql --since --limit, then the query
	}{
		{[]string{"T | take 1", "--format", "csv", "--kql"}, "csv true  0 [T | take 1]"},
		{[]string{"--kql", "T", "--since=7d"}, " true 7d 0 [T]"},
		{[]string{"-", "--limit", "5"}, " false  5 [-]"},
		{[]string{"--", "--not-a-flag"}, " false  0 [--not-a-flag]"},
	} {
		fs := newFlagSet("hunt")
		kql := fs.Bool("kql", false, "")
		format := fs.String("format", "", "")
		since := fs.String("since", "", "")
		limit := fs.Int("limit", 0, "")
		if err := parseFlags(fs, c.in); err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if got := fmt.Sprintf("%s %v %s %d %v", *format, *kql, *since, *limit, fs.Args()); got != c.want {
			t.Errorf("%q: %q, want %q", c.in, got, c.want)
		}
	}
}
