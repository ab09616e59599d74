package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestCrashExactlyOnce kills `stitch run` with SIGKILL at random moments
// (some right after a start, while groups rebalance and state restores),
// restarting it each time over the same state directory, lets it finish,
// and compares what came out with an uninterrupted run on a fresh broker:
// the same incidents (final alert groupings, redirects included, except a
// redirect stub that only arrival order across a commit makes: see
// incidentDiffs) with no
// version published twice, the same dead letters each exactly once, the
// same hunting rows per table, and no temporary file in sight.
func TestCrashExactlyOnce(t *testing.T) {
	skipShort(t)
	kills, records := 6, 12000
	if *long {
		kills, records = 25, 30000
	}
	rng := seed(t)
	dir := t.TempDir()
	in := writeInput(t, dir, records)
	cfg := writeConfig(t, dir)

	baseline := uninterrupted(t, dir, in, cfg)

	addr := startBroker(t)
	stitch(t, "produce", "--brokers", addr, "--in", in)
	state := filepath.Join(t.TempDir(), "state")
	logPath := filepath.Join(dir, "crash.log")
	start := time.Now()
	for i := range kills {
		p := startRun(t, addr, cfg, state, logPath)
		var d time.Duration
		if rng.IntN(3) == 0 {
			d = time.Duration(100+rng.IntN(900)) * time.Millisecond // starting, joining, restoring
		} else {
			d = time.Duration(1000+rng.IntN(3000)) * time.Millisecond
		}
		time.Sleep(d)
		if p.cmd.ProcessState != nil {
			t.Fatalf("run %d exited by itself: %v\n%s", i, p.cmd.ProcessState, tail(logPath, 40))
		}
		p.kill()
		t.Logf("kill %d after %s", i+1, d)
	}
	p := startRun(t, addr, cfg, state, logPath)
	waitSettled(t, addr, filepath.Join(state, "hunting"), rowsDone(baseline.hunting), p)
	t.Logf("%d kills, settled after %s", kills, time.Since(start).Round(time.Millisecond))
	got := collect(t, addr, filepath.Join(state, "hunting"))
	p.stop(t)
	t.Logf("after crashes: %d incidents (%d versions), %d dead letters", len(got.incidents), got.versions, len(got.dead))
	compare(t, baseline, got)
	if t.Failed() {
		fmt.Println(tail(logPath, 60))
	}
}
