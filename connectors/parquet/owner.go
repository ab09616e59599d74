package parquet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Where a shared directory keeps who writes what (see the package comment).
const (
	partitionsDir = "partitions" // under manifestDir
	commitFile    = "commit.json"
	lockName      = "LOCK"
)

// ErrOwned is wrapped by Write's error for a partition that another
// writer of the directory owns (Own reports it as busy).
var ErrOwned = errors.New("input partition owned by another writer of the directory")

var errBusy = errors.New("lock held elsewhere")

// partitionCommit is an input partition's commit.json: its last commit.
// Written atomically, it is the commit point of the partition's part of a
// segment; its files are renamed into place after it, by the writer that
// wrote it or, after a crash, by the partition's next owner.
type partitionCommit struct {
	Topic     string         `json:"topic"`
	Partition int32          `json:"partition"`
	Next      int64          `json:"next"` // the next offset to read
	Segment   string         `json:"segment"`
	Instance  string         `json:"instance"`
	Created   time.Time      `json:"created"`
	Files     []manifestFile `json:"files"` // staged paths are under the writer's _staging/<instance>
}

func (w *Writer) stagingDir() string { return filepath.Join(w.dir, stagingDir, w.instance) }

// partitionPath is the directory of an input partition's commit and lock.
func (w *Writer) partitionPath(tp TopicPartition) string {
	return filepath.Join(w.dir, manifestDir, partitionsDir, safeName(tp.Topic), strconv.Itoa(int(tp.Partition)))
}

// lockFile takes an exclusive lock on path without waiting: errBusy when
// another open file holds it (another process, or another writer of this
// one). On a network file system flock is the server's lock (NFSv4, or
// NLM for v3), released when its holder dies or its lease ends.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errBusy
		}
		return nil, err
	}
	return f, nil
}

// Own takes ownership of input partitions: it locks each, completes its
// last commit if a crash left its files staged, and returns the next
// offset of those that have a commit. A partition another writer owns is
// left out and returned as busy (try again later: its owner releases it
// when its consumer gives it up, or when its process dies). Owning a
// partition already owned is a no-op.
func (w *Writer) Own(tps ...TopicPartition) (next map[TopicPartition]int64, busy []TopicPartition, err error) {
	next = map[TopicPartition]int64{}
	for _, tp := range tps {
		if w.owned[tp] != nil {
			if n, ok := w.next[tp]; ok {
				next[tp] = n
			}
			continue
		}
		dir := w.partitionPath(tp)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return next, busy, fmt.Errorf("parquet: own %s/%d: %w", tp.Topic, tp.Partition, err)
		}
		lock, err := lockFile(filepath.Join(dir, lockName))
		if errors.Is(err, errBusy) {
			busy = append(busy, tp)
			continue
		}
		if err != nil {
			return next, busy, fmt.Errorf("parquet: own %s/%d: %w", tp.Topic, tp.Partition, err)
		}
		c, err := w.readCommit(filepath.Join(dir, commitFile))
		if err == nil && c != nil {
			var n int
			if n, err = w.publish([]*partitionCommit{c}); n > 0 {
				w.cfg.log.Info("hunting: published the files of a commit its writer left (a crash)", "partition", fmt.Sprintf("%s/%d", tp.Topic, tp.Partition),
					"writer", c.Instance, "files", n)
			}
		}
		if err != nil {
			lock.Close()
			return next, busy, err
		}
		w.owned[tp] = lock
		if c != nil {
			w.next[tp] = c.Next
			next[tp] = c.Next
		} else {
			delete(w.next, tp)
		}
	}
	return next, busy, nil
}

// Release gives up input partitions (their consumer moved them), so that
// another writer may own them. Commit first: a partition with rows
// pending cannot be released, and the writer refuses to go on (Abort).
func (w *Writer) Release(tps ...TopicPartition) error {
	for _, tp := range tps {
		if _, pending := w.ranges[tp]; pending {
			err := fmt.Errorf("parquet: %s/%d released with rows not committed", tp.Topic, tp.Partition)
			if w.broken == nil {
				w.broken = err
			}
			return err
		}
	}
	for _, tp := range tps {
		if l := w.owned[tp]; l != nil {
			l.Close()
			delete(w.owned, tp)
		}
	}
	return nil
}

// unlock releases every lock the writer holds.
func (w *Writer) unlock() {
	for tp, l := range w.owned {
		l.Close()
		delete(w.owned, tp)
	}
	for _, l := range []**os.File{&w.instLock, &w.rootLock} {
		if *l != nil {
			(*l).Close()
			*l = nil
		}
	}
}

func (w *Writer) readCommit(path string) (*partitionCommit, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("parquet: read %s: %w", path, err)
	}
	var c partitionCommit
	if err := json.Unmarshal(data, &c); err != nil {
		// Written to a temporary name and renamed, so a torn one means
		// the disk lied: refuse rather than guess.
		return nil, fmt.Errorf("parquet: commit %s is corrupt: %w", path, err)
	}
	return &c, nil
}

func (w *Writer) writeCommit(c *partitionCommit) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("parquet: encode commit: %w", err)
	}
	return writeAtomic(filepath.Join(w.partitionPath(TopicPartition{c.Topic, c.Partition}), commitFile), data)
}

// readCommits reads every partition's last commit, owned or not.
func (w *Writer) readCommits() ([]*partitionCommit, error) {
	paths, err := filepath.Glob(filepath.Join(w.dir, manifestDir, partitionsDir, "*", "*", commitFile))
	if err != nil {
		return nil, fmt.Errorf("parquet: list commits: %w", err)
	}
	sort.Strings(paths)
	var out []*partitionCommit
	for _, p := range paths {
		c, err := w.readCommit(p)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// recoverOwn completes the commits this instance left with files still
// staged, for the partitions nobody owns now (an owner completed them when
// it took the partition).
func (w *Writer) recoverOwn(commits []*partitionCommit) error {
	prefix := filepath.Join(stagingDir, w.instance) + string(filepath.Separator)
	for _, c := range commits {
		staged := false
		for _, f := range c.Files {
			if strings.HasPrefix(f.Staged, prefix) {
				if _, err := os.Stat(filepath.Join(w.dir, f.Staged)); err == nil {
					staged = true
					break
				}
			}
		}
		if !staged {
			continue
		}
		tp := TopicPartition{c.Topic, c.Partition}
		if _, busy, err := w.Own(tp); err != nil {
			return err
		} else if len(busy) == 0 {
			w.Release(tp)
		}
	}
	return nil
}

// dropUncommitted deletes this instance's staged files that no commit
// names: their offsets will be read again.
func (w *Writer) dropUncommitted(commits []*partitionCommit) error {
	covered := map[string]bool{}
	for _, c := range commits {
		for _, f := range c.Files {
			covered[filepath.Clean(f.Staged)] = true
		}
	}
	es, err := os.ReadDir(w.stagingDir())
	if err != nil {
		return fmt.Errorf("parquet: list staging: %w", err)
	}
	for _, e := range es {
		rel := filepath.Join(stagingDir, w.instance, e.Name())
		if e.Name() == lockName || covered[rel] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(w.dir, rel)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("parquet: drop uncommitted %s: %w", rel, err)
		}
		w.cfg.log.Info("hunting: dropped uncommitted file", "file", rel)
	}
	return nil
}

func sortPartitions(tps []TopicPartition) {
	sort.Slice(tps, func(i, j int) bool {
		a, b := tps[i], tps[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
}
