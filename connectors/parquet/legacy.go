package parquet

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// The single-writer layout (stitch before shared directories) kept one
// writer's state for the whole directory:
//
//	_manifest/LOCK                   held exclusively by the one writer
//	_manifest/offsets.json           the next offset of every input partition
//	_manifest/<segment>.pending.json a segment committed but not yet renamed
//	_staging/*.parquet.tmp           staged files
//
// Its published files are where they would be now, so readers need
// nothing. A writer of this layout holds _manifest/LOCK exclusively;
// writers of the shared layout hold it shared, so that neither runs beside
// the other, and the first shared writer to find the old state moves it
// (under the exclusive lock) to the partitions' commit.json files.
const (
	legacyOffsets = "offsets.json"
	legacyPending = ".pending.json"
	// legacyMoved is what offsets.json is renamed to once moved: an older
	// stitch then finds no offsets and starts from its group's offsets
	// instead of from stale ones.
	legacyMoved = "offsets.json.migrated"
)

// How long Open waits for a writer that holds _manifest/LOCK exclusively
// to let go: a writer of this version moving the old layout does so in
// moments; a writer of an older version never does.
var rootLockWait = 10 * time.Second

type legacyManifest struct {
	Segment string         `json:"segment"`
	Ranges  []offsetRange  `json:"ranges"`
	Files   []manifestFile `json:"files"`
}

type legacyOffsetsState struct {
	Next []offsetRange `json:"next"` // First holds the next offset
}

// lockRoot takes _manifest/LOCK shared, after moving the single-writer
// layout if it finds one (exclusively, then shared).
func (w *Writer) lockRoot() (*os.File, error) {
	path := filepath.Join(w.dir, manifestDir, lockName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("parquet: open lock: %w", err)
	}
	fd := int(f.Fd())
	deadline := time.Now().Add(rootLockWait)
	for {
		if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			if err := w.migrate(); err != nil {
				f.Close()
				return nil, err
			}
			// Shared from now on, so that other instances may join.
			if err := syscall.Flock(fd, syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
				f.Close()
				return nil, fmt.Errorf("parquet: lock %s: %w", w.dir, err)
			}
			return f, nil
		}
		if err := syscall.Flock(fd, syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
			return f, nil // other instances run: they moved any old state
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("parquet: %s is in use by a writer of the single-writer layout (an older stitch holds %s): "+
				"stop it first, or give this instance another hunting.dir", w.dir, filepath.Join(manifestDir, lockName))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// migrate moves the single-writer layout's state, when there is one, to
// the partitions' commits. It runs under the exclusive lock, so no other
// writer runs, and it can be redone after a crash at any point: each step
// leaves the old state until the new one is written.
func (w *Writer) migrate() error {
	mdir := filepath.Join(w.dir, manifestDir)
	pending, err := filepath.Glob(filepath.Join(mdir, "*"+legacyPending))
	if err != nil {
		return fmt.Errorf("parquet: list manifests: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(mdir, legacyOffsets))
	if errors.Is(err, os.ErrNotExist) && len(pending) == 0 {
		return w.dropLegacyStaged()
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("parquet: read %s: %w", legacyOffsets, err)
	}
	next := map[TopicPartition]int64{}
	if err == nil {
		var st legacyOffsetsState
		if err := json.Unmarshal(data, &st); err != nil {
			return fmt.Errorf("parquet: read %s: %w", legacyOffsets, err)
		}
		for _, r := range st.Next {
			next[TopicPartition{r.Topic, r.Partition}] = r.First
		}
	}
	// Segments a crash left between manifest and renames: complete them.
	sort.Strings(pending)
	for _, p := range pending {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("parquet: read manifest: %w", err)
		}
		var m legacyManifest
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("parquet: manifest %s is corrupt: %w", p, err)
		}
		w.cfg.log.Info("hunting: completing segment left by a crash", "segment", m.Segment, "files", len(m.Files))
		if _, err := w.publish([]*partitionCommit{{Segment: m.Segment, Files: m.Files}}); err != nil {
			return err
		}
		for _, r := range m.Ranges {
			tp := TopicPartition{r.Topic, r.Partition}
			next[tp] = max(next[tp], r.Last+1)
		}
	}
	tps := make([]TopicPartition, 0, len(next))
	for tp := range next {
		tps = append(tps, tp)
	}
	sortPartitions(tps)
	for _, tp := range tps {
		if err := os.MkdirAll(w.partitionPath(tp), 0o755); err != nil {
			return fmt.Errorf("parquet: move the single-writer layout: %w", err)
		}
		c, err := w.readCommit(filepath.Join(w.partitionPath(tp), commitFile))
		if err != nil {
			return err
		}
		if c != nil {
			// Written by a shared-layout writer before an older stitch ran
			// here: finish it, and keep the later of the two.
			if _, err := w.publish([]*partitionCommit{c}); err != nil {
				return err
			}
			if c.Next >= next[tp] {
				continue
			}
		}
		if err := w.writeCommit(&partitionCommit{Topic: tp.Topic, Partition: tp.Partition, Next: next[tp],
			Segment: "single-writer-layout", Instance: w.cfg.instance, Created: w.cfg.clock().UTC()}); err != nil {
			return err
		}
	}
	for _, p := range pending {
		if err := removeIfExists(p); err != nil {
			return fmt.Errorf("parquet: drop manifest: %w", err)
		}
	}
	if err := os.Rename(filepath.Join(mdir, legacyOffsets), filepath.Join(mdir, legacyMoved)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("parquet: move the single-writer layout: %w", err)
	}
	if err := syncDir(mdir); err != nil {
		return fmt.Errorf("parquet: move the single-writer layout: %w", err)
	}
	w.cfg.log.Info("hunting: moved the single-writer layout to per-partition commits", "dir", w.dir, "partitions", len(tps))
	return w.dropLegacyStaged()
}

// dropLegacyStaged deletes the single-writer layout's staged files (those
// directly under _staging): no manifest covers them any more.
func (w *Writer) dropLegacyStaged() error {
	es, err := os.ReadDir(filepath.Join(w.dir, stagingDir))
	if err != nil {
		return fmt.Errorf("parquet: list staging: %w", err)
	}
	for _, e := range es {
		if e.IsDir() {
			continue
		}
		p := filepath.Join(w.dir, stagingDir, e.Name())
		if err := removeIfExists(p); err != nil {
			return fmt.Errorf("parquet: drop uncommitted %s: %w", p, err)
		}
		w.cfg.log.Info("hunting: dropped uncommitted file", "file", e.Name())
	}
	return nil
}
