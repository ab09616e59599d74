package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stitch-xdr/stitch/internal/simulator"
)

// TestScaleOutSharedHunting is TestScaleOut with one hunting.dir for every
// instance, as on a network file system: a starts, b and c join, b is
// killed (SIGKILL) and restarted, c leaves (SIGINT), while the input
// arrives; hunting partitions move between the instances and continue in
// place. The directory then holds exactly the uninterrupted run's rows per
// table (no row lost or written twice), with no temporary file in sight,
// and the incidents and dead letters are the uninterrupted run's.
func TestScaleOutSharedHunting(t *testing.T) {
	skipShort(t)
	rng := seed(t)
	dir := t.TempDir()
	in := writeInput(t, dir, 12000, simulator.Tenants(6))
	cfg := writeConfig(t, dir)
	baseline := uninterrupted(t, dir, in, cfg)

	shared := filepath.Join(t.TempDir(), "hunting")
	base, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// writeConfig's hunting block is its last.
	sharedCfg := filepath.Join(dir, "shared.yaml")
	if err := os.WriteFile(sharedCfg, append(base, []byte("  dir: "+shared+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newScaled(t, dir, splitInput(t, in, 12), sharedCfg)
	s.start(t, "a")
	s.sleep(t, rng, "+b")
	s.start(t, "b")
	s.sleep(t, rng, "+c")
	s.start(t, "c")
	s.sleep(t, rng, "kill b")
	for _, i := range s.insts {
		if i.name == "b" && !i.left {
			i.p.kill()
			i.left = true
		}
	}
	s.start(t, "b") // its instance id again: fences what it left open
	s.sleep(t, rng, "-c")
	s.stop(t, "c")

	<-s.fed
	var live []*proc
	for _, i := range s.insts {
		if !i.left {
			live = append(live, i.p)
		}
	}
	waitSettledDirs(t, s.addr, []string{shared}, func(rows map[string]int64) bool { return sum(rows) >= sum(baseline.hunting) }, live...)
	got := collect(t, s.addr, shared)
	for _, p := range live {
		p.stop(t)
	}
	t.Logf("shared: %d incidents (%d versions), %d dead letters, hunting rows %v", len(got.incidents), got.versions, len(got.dead), got.hunting)
	compare(t, baseline, got)
	s.logTails(t)
}
