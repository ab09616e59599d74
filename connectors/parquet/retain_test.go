package parquet

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

func TestRetainRemovesWholeOldDays(t *testing.T) {
	dir := t.TempDir()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	w, err := Open(dir, Allocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	days := map[string]string{"old": "2024-03-30T23:00:00Z", "edge": "2024-04-01T05:00:00Z", "kept": "2024-04-02T00:00:00Z"}
	off := int64(0)
	for tenant, ts := range days {
		tm, _ := time.Parse(time.RFC3339, ts)
		b := parquettest.Batch(mem, parquettest.Schema("DeviceProcessEvents"), tenant, []parquettest.Row{{Time: tm, ID: off}})
		if err := w.Write(Source{Topic: "t", Offset: off}, b); err != nil {
			t.Fatal(err)
		}
		b.Release()
		off++
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	// Something a writer is still producing inside an old day must survive.
	busy := filepath.Join(dir, "DeviceProcessEvents", "tenant=old", "date=2024-03-30", "hour=22")
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(busy, "x.parquet.tmp"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC) // cutoff 2024-04-02T00:00Z
	removed, err := Retain(context.Background(), dir, 30*24*time.Hour, now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Errorf("removed %v, want the old and edge days' files", removed)
	}
	rows := readBack(t, dir)
	if len(rows) != 1 || rows[0].Tenant != "kept" {
		t.Errorf("left %v, want only the kept day", rows)
	}
	if _, err := os.Stat(filepath.Join(busy, "x.parquet.tmp")); err != nil {
		t.Errorf("in-progress file removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "DeviceProcessEvents", "tenant=edge")); !os.IsNotExist(err) {
		t.Errorf("empty tenant directory left behind: %v", err)
	}
	// The writer keeps working after retention ran beside it.
	tm := time.Date(2024, 3, 30, 1, 0, 0, 0, time.UTC)
	b := parquettest.Batch(mem, parquettest.Schema("DeviceProcessEvents"), "edge", []parquettest.Row{{Time: tm, ID: 99}})
	defer b.Release()
	if err := w.Write(Source{Topic: "t", Offset: 99}, b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(readBack(t, dir)); got != 2 {
		t.Errorf("%d rows after late write, want 2", got)
	}
}

func TestOpenRefusesSecondWriter(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := Open(dir); err == nil {
		t.Fatal("second writer on the same directory was allowed")
	}
}

// Discard (state.reset over a former cluster's hunting.dir) removes the
// committed partitions, the manifest and the staging files, and leaves what
// stitch does not write; a writer opened afterwards starts from nothing.
func TestDiscardLeavesOnlyWhatStitchDoesNotWrite(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := parquettest.Batch(memory.DefaultAllocator, parquettest.Schema("DeviceEvents"), "tenant-a",
		[]parquettest.Row{{Time: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), ID: 1}})
	if err := w.Write(Source{Topic: "hunting.DeviceEvents", Offset: 41}, b); err != nil {
		t.Fatal(err)
	}
	b.Release()
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if rows := readBack(t, dir); len(rows) != 1 {
		t.Fatalf("%d rows before the discard, want 1", len(rows))
	}
	theirs := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(theirs, []byte("an analyst's"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := Discard(dir); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range es {
		left = append(left, e.Name())
	}
	if len(left) != 1 || left[0] != "notes.txt" {
		t.Fatalf("left in the directory: %q, want only notes.txt", left)
	}
	w, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if next := w.Resume(); len(next) != 0 {
		t.Fatalf("a writer after the discard resumes at %v, want nothing committed", next)
	}
}
