package parquet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/cockroachdb/datadriven"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

// TestScenarios runs the datadriven files under testdata/scenarios (go test
// -rewrite rewrites their expectations): each is a sequence of writer
// operations with what a reader sees after them.
//
//	open [row-group-rows=N] [roll-bytes=N]
//	write topic=T partition=N offset=N table=Table tenant=ID [extra=(Col, ...)]
//	<one row Timestamp a line, RFC 3339>
//	commit | crash | crash-after-manifest | close
//	show: Resume, the visible rows per Table/tenant, the visible and staged files
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/scenarios", func(t *testing.T, path string) {
		dir := t.TempDir()
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		t.Cleanup(func() { mem.AssertSize(t, 0) })
		var w *Writer
		t.Cleanup(func() {
			if w != nil && !w.closed {
				w.Close()
			}
		})
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			switch td.Cmd {
			case "open":
				opts := []Option{Allocator(mem)}
				var n int
				if td.MaybeScanArgs(t, "row-group-rows", &n) {
					opts = append(opts, RowGroupRows(n))
				}
				if td.MaybeScanArgs(t, "roll-bytes", &n) {
					opts = append(opts, RollBytes(int64(n)))
				}
				var err error
				if w, err = Open(dir, opts...); err != nil {
					return "error: " + err.Error()
				}
			case "write":
				var src Source
				var table, tenant string
				var extra []string
				td.ScanArgs(t, "topic", &src.Topic)
				var partition int
				td.ScanArgs(t, "partition", &partition)
				src.Partition = int32(partition)
				td.ScanArgs(t, "offset", &src.Offset)
				td.ScanArgs(t, "table", &table)
				td.ScanArgs(t, "tenant", &tenant)
				if arg, ok := td.Arg("extra"); ok {
					extra = arg.Vals
				}
				var rows []parquettest.Row
				for j, ts := range strings.Fields(td.Input) {
					tm, err := time.Parse(time.RFC3339Nano, ts)
					if err != nil {
						t.Fatalf("%s: %v", td.Pos, err)
					}
					rows = append(rows, parquettest.Row{Time: tm, ID: src.Offset*1000 + int64(j)})
				}
				b := parquettest.Batch(mem, parquettest.Schema(table, extra...), tenant, rows)
				err := w.Write(src, b)
				b.Release()
				if err != nil {
					return "error: " + err.Error()
				}
			case "commit":
				if err := w.Commit(); err != nil {
					return "error: " + err.Error()
				}
			case "crash":
				crash(w)
			case "crash-after-manifest":
				w.crashAfterManifest = true
				if err := w.Commit(); err != errCrash {
					t.Fatalf("%s: commit = %v, want the simulated crash", td.Pos, err)
				}
				crash(w)
			case "close":
				if err := w.Close(); err != nil {
					return "error: " + err.Error()
				}
			case "show":
				return show(t, dir, w)
			default:
				t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
			}
			return ""
		})
	})
}

// show reads the hunting directory back (independently of the writer) and
// says what a reader sees; a row visible twice fails the test.
func show(t *testing.T, dir string, w *Writer) string {
	t.Helper()
	var resume []string
	for tp, n := range w.Resume() {
		resume = append(resume, fmt.Sprintf(" %s/%d=%d", tp.Topic, tp.Partition, n))
	}
	seen := map[int64]string{}
	files := map[string]bool{}
	count := map[string]int{}
	for _, r := range readBack(t, dir) {
		if f, dup := seen[r.ID]; dup {
			t.Errorf("row %d is visible twice (%s and %s)", r.ID, f, r.File)
		}
		seen[r.ID] = r.File
		files[r.File] = true
		count[r.Table+"/"+r.Tenant]++
	}
	var rows []string
	for k, n := range count {
		rows = append(rows, fmt.Sprintf(" %s=%d", k, n))
	}
	slices.Sort(resume)
	slices.Sort(rows)
	return fmt.Sprintf("resume:%s\nrows:%s\nfiles: %d\nstaged: %d",
		strings.Join(resume, ""), strings.Join(rows, ""), len(files), countStaged(t, dir))
}
