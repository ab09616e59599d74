package pipeline

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/shareddata"
)

// TestReplayBrokerLogOnDisk: a replay's embedded broker writes its log
// (the input topic and every output topic) into segment files of a
// directory of its own inside the state directory while it runs, instead of
// holding it in memory, and removes that directory at the end; the state
// directory the caller placed stays, and the replay's outputs are what they
// were.
func TestReplayBrokerLogOnDisk(t *testing.T) {
	in := filepath.Join(shareddata.Root(t), "testdata/replay/mixed-bad.jsonl")
	cfg := Default()
	cfg.State.Dir = filepath.Join(t.TempDir(), "state")

	// Watch the state directory while the replay runs: the broker's
	// directories and the most segment bytes seen in them.
	var dirs atomic.Value
	var segBytes atomic.Int64
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			found, _ := filepath.Glob(filepath.Join(cfg.State.Dir, "replay-broker-*"))
			if len(found) > 0 {
				dirs.Store(found)
			}
			var n int64
			for _, d := range found {
				filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
					if err == nil && !e.IsDir() && strings.HasSuffix(path, ".dat") {
						if info, err := e.Info(); err == nil {
							n += info.Size()
						}
					}
					return nil
				})
			}
			if n > segBytes.Load() {
				segBytes.Store(n)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := Replay(ctx, cfg, ReplayOptions{Inputs: []string{in}, OutDir: t.TempDir()})
	close(stop)
	<-watched
	if err != nil {
		t.Fatalf("replay: %v", err)
	}

	found, _ := dirs.Load().([]string)
	if len(found) != 1 {
		t.Fatalf("broker directories in the state directory while the replay ran: %v, want one", found)
	}
	if segBytes.Load() == 0 {
		t.Fatalf("no segment file written in %s: the broker's log was not on disk", found[0])
	}
	if _, err := os.Stat(found[0]); !os.IsNotExist(err) {
		t.Fatalf("the broker's directory is still there after the replay (stat: %v)", err)
	}
	if _, err := os.Stat(cfg.State.Dir); err != nil {
		t.Fatalf("the state directory: %v", err)
	}
	if sum.RecordsRead == 0 || len(sum.Normalized) == 0 || len(sum.DeadLettered) == 0 {
		t.Fatalf("summary: %+v", sum)
	}
	t.Logf("%d records read; up to %d bytes of segments in %s", sum.RecordsRead, segBytes.Load(), filepath.Base(found[0]))
}
