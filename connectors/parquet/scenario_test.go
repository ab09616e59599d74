package parquet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

// A scenario is a sequence of writer operations and the state a reader must
// then see; each file under testdata/scenarios is one case.
type scenario struct {
	Description string `json:"description"`
	Options     struct {
		RowGroupRows int   `json:"row_group_rows"`
		RollBytes    int64 `json:"roll_bytes"`
	} `json:"options"`
	Steps []step `json:"steps"`
}

type step struct {
	Op        string   `json:"op"` // open, write, commit, crash, crash_after_manifest, close, expect
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	Table     string   `json:"table"`
	Tenant    string   `json:"tenant"`
	Extra     []string `json:"extra_columns"`
	Times     []string `json:"times"`
	// expect
	Resume map[string]int64 `json:"resume"` // "topic/partition" -> next
	Rows   map[string]int   `json:"rows"`   // "Table/tenant" -> visible rows
	Files  *int             `json:"files"`
	Staged *int             `json:"staged"`
}

func TestScenarios(t *testing.T) {
	paths, _ := filepath.Glob("testdata/scenarios/*.json")
	if len(paths) == 0 {
		t.Fatal("no scenarios")
	}
	for _, p := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(p), ".json"), func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var sc scenario
			if err := json.Unmarshal(data, &sc); err != nil {
				t.Fatal(err)
			}
			runScenario(t, sc)
		})
	}
}

func runScenario(t *testing.T, sc scenario) {
	dir := t.TempDir()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	opts := []Option{Allocator(mem)}
	if sc.Options.RowGroupRows > 0 {
		opts = append(opts, RowGroupRows(sc.Options.RowGroupRows))
	}
	if sc.Options.RollBytes > 0 {
		opts = append(opts, RollBytes(sc.Options.RollBytes))
	}
	var w *Writer
	defer func() {
		if w != nil && !w.closed {
			w.Close()
		}
	}()
	for i, s := range sc.Steps {
		where := fmt.Sprintf("step %d (%s)", i, s.Op)
		switch s.Op {
		case "open":
			var err error
			if w, err = Open(dir, opts...); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		case "write":
			rows := make([]parquettest.Row, len(s.Times))
			for j, ts := range s.Times {
				tm, err := time.Parse(time.RFC3339Nano, ts)
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				rows[j] = parquettest.Row{Time: tm, ID: s.Offset*1000 + int64(j)}
			}
			b := parquettest.Batch(mem, parquettest.Schema(s.Table, s.Extra...), s.Tenant, rows)
			err := w.Write(Source{Topic: s.Topic, Partition: s.Partition, Offset: s.Offset}, b)
			b.Release()
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		case "commit":
			if err := w.Commit(); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		case "crash":
			crash(w)
		case "crash_after_manifest":
			w.crashAfterManifest = true
			if err := w.Commit(); err != errCrash {
				t.Fatalf("%s: commit = %v, want the simulated crash", where, err)
			}
			crash(w)
		case "close":
			if err := w.Close(); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
		case "expect":
			checkExpect(t, where, dir, w, s)
		default:
			t.Fatalf("%s: unknown op", where)
		}
	}
}

func checkExpect(t *testing.T, where, dir string, w *Writer, s step) {
	t.Helper()
	if s.Resume != nil {
		got := map[string]int64{}
		for tp, n := range w.Resume() {
			got[fmt.Sprintf("%s/%d", tp.Topic, tp.Partition)] = n
		}
		if fmt.Sprint(got) != fmt.Sprint(s.Resume) {
			t.Errorf("%s: Resume = %v, want %v", where, got, s.Resume)
		}
	}
	rows := readBack(t, dir)
	seen := map[int64]string{}
	files := map[string]bool{}
	count := map[string]int{}
	for _, r := range rows {
		if f, dup := seen[r.ID]; dup {
			t.Errorf("%s: row %d is visible twice (%s and %s)", where, r.ID, f, r.File)
		}
		seen[r.ID] = r.File
		files[r.File] = true
		count[r.Table+"/"+r.Tenant]++
	}
	if s.Rows != nil && fmt.Sprint(count) != fmt.Sprint(s.Rows) {
		t.Errorf("%s: visible rows %v, want %v", where, count, s.Rows)
	}
	if s.Files != nil && len(files) != *s.Files {
		t.Errorf("%s: %d visible files, want %d: %v", where, len(files), *s.Files, files)
	}
	if s.Staged != nil {
		if n := countStaged(t, dir); n != *s.Staged {
			t.Errorf("%s: %d staged files, want %d", where, n, *s.Staged)
		}
	}
}
