package normalize

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow/go/v17/arrow/memory"
)

// FuzzNormalize: no input panics, every record is accounted for as
// normalized or dead, and the fast path makes of it exactly what the
// fastjson path makes. Seeds: testdata/fuzz/FuzzNormalize plus the table
// records and dead-letter cases.
func FuzzNormalize(f *testing.F) {
	files, _ := filepath.Glob("testdata/tables/*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, false)
		}
	}
	f.Add([]byte(`{"Timestamp":"2021-08-02T13:11:39Z","ActionType":"LdapSearch","ReportId_long":1,"ReportId_string":""}`), true)
	f.Fuzz(func(t *testing.T, value []byte, importMode bool) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		opts := []Option{WithAllocator(mem), WithBatchRows(2), WithMaxDepth(8), WithDeadLetterValueLimit(64)}
		if importMode {
			opts = append(opts, WithImport(""))
		}
		n := New(opts...)
		defer n.Close()
		var rows int64
		emit := func(b Batch) {
			rows += b.Record.NumRows()
			for i, col := range b.Record.Columns() {
				if col.Len() != int(b.Record.NumRows()) {
					t.Errorf("column %d has %d rows, record %d", i, col.Len(), b.Record.NumRows())
				}
			}
			b.Release()
		}
		deads := 0
		dead := func(d DeadLetter) {
			deads++
			if d.Reason == "" || d.Error == "" || d.SHA256 == "" {
				t.Errorf("incomplete dead letter %+v", d)
			}
		}
		n.Add(Input{Value: value}, emit, dead)
		n.Add(Input{Value: value}, emit, dead) // the reused parser and scratch row must not carry state over
		n.Flush(emit)
		s := n.Stats()
		checkStats(t, s)
		var normalized int64
		for _, c := range s.Normalized {
			normalized += c
		}
		if normalized != rows || int64(deads) != s.Records-normalized {
			t.Errorf("rows %d vs normalized %d, dead letters %d vs %d", rows, normalized, deads, s.Records-normalized)
		}
		if !importMode {
			checkSamePaths(t, [][]byte{value, value}, WithBatchRows(2), WithMaxDepth(8), WithDeadLetterValueLimit(64))
		}
	})
}
