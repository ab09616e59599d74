package parquet

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

// writeRows writes one batch of one row per id at offset off of tp.
func writeRows(t *testing.T, w *Writer, tp TopicPartition, off int64, ids ...int64) {
	t.Helper()
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	var rows []parquettest.Row
	for _, id := range ids {
		rows = append(rows, parquettest.Row{Time: at.Add(time.Duration(id) * time.Minute), ID: id})
	}
	b := parquettest.Batch(memory.DefaultAllocator, parquettest.Schema("DeviceEvents"), "t1", rows)
	defer b.Release()
	if err := w.Write(Source{Topic: tp.Topic, Partition: tp.Partition, Offset: off}, b); err != nil {
		t.Fatal(err)
	}
}

// onceEach fails unless the directory holds exactly the rows 0..n-1, once each.
func onceEach(t *testing.T, dir string, n int) {
	t.Helper()
	rows := readBack(t, dir)
	seen := map[int64]int{}
	for _, r := range rows {
		seen[r.ID]++
	}
	for id := range int64(n) {
		if seen[id] != 1 {
			t.Errorf("row %d seen %d times", id, seen[id])
		}
	}
	if len(rows) != n {
		t.Errorf("%d rows, want %d", len(rows), n)
	}
}

// TestTwoWritersShareADirectory: writers of two instances write one
// directory; a partition is owned by one at a time (the other finds it
// busy), and moves between them continuing its offsets in place, also
// after its owner dies between its commit.json and its renames.
func TestTwoWritersShareADirectory(t *testing.T) {
	dir := t.TempDir()
	p0, p1 := TopicPartition{"hunting.DeviceEvents", 0}, TopicPartition{"hunting.DeviceEvents", 1}
	a, err := Open(dir, Instance("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir, Instance("b"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Instance("a")); err == nil {
		t.Fatal("a second writer of instance a was allowed")
	}
	if _, busy, err := a.Own(p0); err != nil || len(busy) != 0 {
		t.Fatalf("a owns p0: busy %v, %v", busy, err)
	}
	if _, busy, err := b.Own(p0, p1); err != nil || len(busy) != 1 || busy[0] != p0 {
		t.Fatalf("b owns p0 and p1: busy %v (want p0), %v", busy, err)
	}
	writeRows(t, a, p0, 0, 0, 1)
	writeRows(t, b, p1, 0, 2, 3)
	if err := b.Write(Source{Topic: p0.Topic, Partition: p0.Partition, Offset: 1}, parquettest.Batch(memory.DefaultAllocator, parquettest.Schema("DeviceEvents"), "t1", nil)); !errors.Is(err, ErrOwned) {
		t.Fatalf("b wrote a's partition: %v", err)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	// p0 moves from a to b: a lets go (after its commit), b continues.
	writeRows(t, a, p0, 1, 4)
	if err := a.Release(p0); err == nil {
		t.Fatal("released a partition with rows pending")
	}
	a.Abort()
	if err := a.Release(p0); err != nil {
		t.Fatal(err)
	}
	next, busy, err := b.Own(p0)
	if err != nil || len(busy) != 0 || next[p0] != 1 {
		t.Fatalf("b owns p0: next %v busy %v, %v; want next 1 (a's commit)", next, busy, err)
	}
	writeRows(t, b, p0, 1, 4)
	// b dies between p0's commit.json and its renames; p1 was not committed.
	writeRows(t, b, p1, 1, 5)
	b.cfg.hook = func(event string, tp TopicPartition) error {
		if event == "commit" && tp == p1 {
			return errCrash
		}
		return nil
	}
	if err := b.Commit(); !errors.Is(err, errCrash) {
		t.Fatalf("commit: %v", err)
	}
	crash(b)
	// a takes both: it publishes b's committed p0 files and resumes p1
	// where b last committed it.
	next, busy, err = a.Own(p0, p1)
	if err != nil || len(busy) != 0 || next[p0] != 2 || next[p1] != 1 {
		t.Fatalf("a owns p0, p1: next %v busy %v, %v; want p0 at 2, p1 at 1", next, busy, err)
	}
	writeRows(t, a, p1, 1, 5)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// b comes back: its uncommitted p1 file goes, nothing of a's.
	if n := countStaged(t, dir); n != 1 {
		t.Errorf("%d staged files before b's restart, want b's uncommitted one", n)
	}
	b, err = Open(dir, Instance("b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := countStaged(t, dir); n != 0 {
		t.Errorf("%d staged files after b's restart", n)
	}
	onceEach(t, dir, 6)
}

// TestRestartCompletesItsOwnCommit: a writer killed after a partition's
// commit.json completes it at its next Open when nobody took the
// partition meanwhile, and keeps (for the owner to publish) the files of a
// partition another writer owns now.
func TestRestartCompletesItsOwnCommit(t *testing.T) {
	dir := t.TempDir()
	p0 := TopicPartition{"hunting.DeviceEvents", 0}
	p1 := TopicPartition{"hunting.DeviceEvents", 1}
	a, err := Open(dir, Instance("a"))
	if err != nil {
		t.Fatal(err)
	}
	writeRows(t, a, p0, 0, 0)
	writeRows(t, a, p1, 0, 1)
	a.crashAfterManifest = true
	if err := a.Commit(); !errors.Is(err, errCrash) {
		t.Fatal(err)
	}
	crash(a)
	// b owns p1 but, slow, has not published a's p1 commit yet: simulate
	// by holding p1's lock from outside.
	hold, err := lockFile(filepath.Join(dir, manifestDir, partitionsDir, "hunting.DeviceEvents", "1", lockName))
	if err != nil {
		t.Fatal(err)
	}
	a, err = Open(dir, Instance("a"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := readBack(t, dir); len(rows) != 1 || rows[0].ID != 0 {
		t.Errorf("after a's restart: %v, want p0's row published", rows)
	}
	if n := countStaged(t, dir); n != 1 {
		t.Errorf("%d staged files, want p1's, which its owner publishes", n)
	}
	hold.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir, Instance("b"))
	if err != nil {
		t.Fatal(err)
	}
	if next, _, err := b.Own(p1); err != nil || next[p1] != 1 {
		t.Fatalf("b owns p1: %v %v", next, err)
	}
	b.Close()
	onceEach(t, dir, 2)
}

// TestSingleWriterLayoutIsMoved: a directory of the single-writer layout
// (one offsets.json, a segment left between its manifest and its renames,
// an uncommitted staged file) is readable as it is, and the first writer
// moves its state to the partitions: the pending segment published, the
// offsets resumed, the stray file gone.
func TestSingleWriterLayoutIsMoved(t *testing.T) {
	src, dir := t.TempDir(), t.TempDir()
	p0 := TopicPartition{"hunting.DeviceEvents", 0}
	w, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	writeRows(t, w, p0, 0, 0)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	writeRows(t, w, p0, 1, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := readBack(t, src)
	// Lay the two files out as the single-writer layout would: one
	// published, one staged under a pending manifest.
	for _, d := range []string{filepath.Join(dir, manifestDir), filepath.Join(dir, stagingDir)} {
		os.MkdirAll(d, 0o755)
	}
	move := func(from, to string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, to)), 0o755)
		if err := os.Rename(filepath.Join(src, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	move(files[0].File, files[0].File)
	staged := filepath.Join(stagingDir, "part-old.parquet.tmp")
	move(files[1].File, staged)
	final := filepath.Join(filepath.Dir(files[1].File), "part-old.parquet")
	m, _ := json.Marshal(legacyManifest{Segment: "s1", Ranges: []offsetRange{{Topic: p0.Topic, Partition: 0, First: 5, Last: 9}},
		Files: []manifestFile{{Staged: staged, Final: final, Rows: 1}}})
	os.WriteFile(filepath.Join(dir, manifestDir, "s1"+legacyPending), m, 0o644)
	os.WriteFile(filepath.Join(dir, manifestDir, legacyOffsets), []byte(`{"next":[{"topic":"hunting.DeviceEvents","partition":0,"first":5,"last":0},{"topic":"hunting.DeviceEvents","partition":3,"first":7,"last":0}]}`), 0o644)
	os.WriteFile(filepath.Join(dir, stagingDir, "part-stray.parquet.tmp"), []byte("torn"), 0o644)
	if rows := readBack(t, dir); len(rows) != 1 {
		t.Fatalf("the old layout reads %d rows before any writer, want 1", len(rows))
	}

	w, err = Open(dir, Instance("a"))
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Resume(); got[p0] != 10 || got[TopicPartition{p0.Topic, 3}] != 7 {
		t.Errorf("resume %v, want p0 at 10 (the pending segment's), p3 at 7", got)
	}
	b, err := Open(dir, Instance("b")) // joins the moved directory
	if err != nil {
		t.Fatal(err)
	}
	if next, busy, err := b.Own(p0); err != nil || len(busy) != 0 || next[p0] != 10 {
		t.Errorf("b owns p0: %v %v %v", next, busy, err)
	}
	b.Close()
	w.Close()
	onceEach(t, dir, 2)
	if n := countStaged(t, dir); n != 0 {
		t.Errorf("%d staged files left", n)
	}
	for _, gone := range []string{legacyOffsets, "s1" + legacyPending} {
		if _, err := os.Stat(filepath.Join(dir, manifestDir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", gone, err)
		}
	}
}

// TestOlderWriterIsRefused: while a writer of the single-writer layout
// holds the directory (_manifest/LOCK exclusively), Open says so and what
// to do, instead of writing beside it.
func TestOlderWriterIsRefused(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, manifestDir), 0o755)
	old, err := lockFile(filepath.Join(dir, manifestDir, lockName))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	defer func(d time.Duration) { rootLockWait = d }(rootLockWait)
	rootLockWait = 200 * time.Millisecond
	_, err = Open(dir, Instance("a"))
	if err == nil || !strings.Contains(err.Error(), "single-writer layout") || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("open beside an older writer: %v", err)
	}
	// And the older writer, taking the lock exclusively, is refused while
	// a writer of this layout runs.
	old.Close()
	w, err := Open(dir, Instance("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f, _ := os.OpenFile(filepath.Join(dir, manifestDir, lockName), os.O_RDWR, 0)
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		t.Fatal("an older writer could take the directory beside a running one")
	}
}

// TestFailedPublishKeepsCommittedFiles: when a committed file can be
// neither published nor quarantined (the disk itself), the commit fails
// and the writer is aborted, but the committed partition's staged file is
// kept for its next owner: nothing committed is lost.
func TestFailedPublishKeepsCommittedFiles(t *testing.T) {
	dir := t.TempDir()
	p0 := TopicPartition{"hunting.DeviceEvents", 0}
	w, err := Open(dir, Instance("a"))
	if err != nil {
		t.Fatal(err)
	}
	writeRows(t, w, p0, 0, 0)
	// Where the partition's directories and the quarantine should be,
	// plain files.
	for _, p := range []string{"DeviceEvents", quarantineDir} {
		if err := os.WriteFile(filepath.Join(dir, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err == nil {
		t.Fatal("commit succeeded with nowhere to publish")
	}
	if err := w.Close(); err == nil {
		t.Fatal("close of a broken writer succeeded")
	}
	if n := countStaged(t, dir); n != 1 {
		t.Fatalf("%d staged files after the abort, want the committed one", n)
	}
	for _, p := range []string{"DeviceEvents", quarantineDir} {
		os.Remove(filepath.Join(dir, p))
	}
	w, err = Open(dir, Instance("b"))
	if err != nil {
		t.Fatal(err)
	}
	if next, _, err := w.Own(p0); err != nil || next[p0] != 1 {
		t.Fatalf("b owns p0: %v %v", next, err)
	}
	w.Close()
	onceEach(t, dir, 1)
}
