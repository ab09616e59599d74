package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/simulator"
)

// TestScaleOut runs several `stitch run` processes in one group (each with
// its own state directory) over one broker and compares what came out with
// a single process on a fresh broker: the same incidents (final alert
// groupings per id, redirects included, except arrival-order redirect
// stubs: see incidentDiffs) with no (id, version) published
// twice, the same dead letters once each, and the same hunting rows per
// table summed over the instances' hunting directories.
//
// Default: a second instance joins mid-stream; and, with one hunting.dir
// for every instance (as on a network file system), b and c join, b is
// killed (SIGKILL) and restarted, c leaves, so that hunting partitions move
// between the instances and continue in place: the directory then holds
// exactly the uninterrupted run's rows per table, with no temporary file
// in sight. -stitch.long adds one that joins and leaves (SIGINT) again, and
// three instances with one joining and one leaving mid-stream, so that
// facts partitions move with their restored state and hunting partitions
// move between hunting directories, and back.
func TestScaleOut(t *testing.T) {
	skipShort(t)
	rng := seed(t)
	dir := t.TempDir()
	// Six tenants over four partitions: every stage has work to split (the
	// input, facts and hunting topics are all keyed by tenant).
	in := writeInput(t, dir, 12000, simulator.Tenants(6))
	cfg := writeConfig(t, dir)
	baseline := uninterrupted(t, dir, in, cfg)
	// The scaled runs get the same input as a live stream: one chunk a
	// second for ~12 s (a single process normalizes all of it in ~2 s).
	chunks := splitInput(t, in, 12)

	// Each step starts ("a") an instance, starts one after 2-5 s ("+b"), or
	// stops one with SIGINT after 2-5 s ("-b"), while the input arrives.
	// "+b" starts b after 2-5 s, "-b" stops it (SIGINT), "!b" kills it
	// (SIGKILL).
	for _, c := range []struct {
		name, why string
		long      bool
		shared    bool // one hunting.dir for all
		steps     []string
	}{
		{"two", "b joins mid-stream: partitions of every stage move from a to b", false, false, []string{"a", "+b"}},
		{"shared-hunting", "one hunting.dir: b and c join, b is killed and restarted, c leaves", false, true,
			[]string{"a", "+b", "+c", "!b", "+b", "-c"}},
		{"back", "b joins, then leaves: partitions move to b and back to a", true, false, []string{"a", "+b", "-b"}},
		{"join-leave", "three instances, c joining and b leaving mid-stream", true, false, []string{"a", "b", "+c", "-b"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.long && !*long {
				t.Skip("-stitch.long (or STITCH_E2E_LONG=1): " + c.why)
			}
			s := newScaled(t, dir, chunks, cfg)
			if c.shared {
				s.sharedHunting(t)
			}
			for _, step := range c.steps {
				name := strings.TrimLeft(step, "+-!")
				if step != name {
					s.sleep(t, rng, step)
				}
				switch step[0] {
				case '-':
					s.stop(t, name)
				case '!':
					s.kill(t, name)
				default:
					s.start(t, name) // a restarted instance keeps its id: it fences what it left open
				}
			}
			got := s.settle(t, baseline)
			compare(t, baseline, got)
			s.logTails(t)
		})
	}
}

type instance struct {
	name, state string
	p           *proc
	left        bool
	last        runStatus // /status when last asked
}

// scaled is one broker, the input produced to it chunk by chunk, and the
// instances run on it.
type scaled struct {
	dir, addr, cfg string
	shared         string // the hunting.dir of every instance; "": each its own
	insts          []*instance
	began          time.Time
	fed            chan struct{} // closed when every chunk is produced
}

func newScaled(t *testing.T, dir string, chunks []string, cfg string) *scaled {
	t.Helper()
	s := &scaled{dir: t.TempDir(), addr: startBroker(t), cfg: cfg, began: time.Now(), fed: make(chan struct{})}
	stitch(t, "produce", "--brokers", s.addr, "--in", chunks[0])
	go func() {
		defer close(s.fed)
		for _, c := range chunks[1:] {
			time.Sleep(time.Second)
			if out, err := exec.Command(bin, "produce", "--brokers", s.addr, "--in", c).CombinedOutput(); err != nil {
				t.Errorf("stitch produce %s: %v\n%s", c, err, out)
				return
			}
		}
	}()
	return s
}

// splitInput cuts the input file into n files of consecutive lines.
func splitInput(t *testing.T, in string, n int) []string {
	t.Helper()
	b, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	var out []string
	for i := range n {
		path := fmt.Sprintf("%s.%02d", in, i)
		part := lines[i*len(lines)/n : (i+1)*len(lines)/n]
		if err := os.WriteFile(path, []byte(strings.Join(part, "")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, path)
	}
	return out
}

func (s *scaled) start(t *testing.T, name string) {
	t.Helper()
	state := filepath.Join(s.dir, "state-"+name)
	p := startRun(t, s.addr, s.cfg, state, filepath.Join(s.dir, name+".log"))
	s.insts = append(s.insts, &instance{name: name, state: state, p: p})
	t.Logf("%s started at %s (%s)", name, time.Since(s.began).Round(time.Millisecond), s.progress())
}

// stop stops an instance as Ctrl-C does; its hunting directory still counts.
func (s *scaled) stop(t *testing.T, name string) {
	t.Helper()
	for _, i := range s.insts {
		if i.name == name && !i.left {
			i.p.interrupt(t)
			i.left = true
			t.Logf("%s stopped (SIGINT) after reading %d records", name, i.last.RecordsRead)
		}
	}
}

// sharedHunting gives every instance one hunting.dir.
func (s *scaled) sharedHunting(t *testing.T) {
	t.Helper()
	s.shared = filepath.Join(s.dir, "hunting")
	base, err := os.ReadFile(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// writeConfig's hunting block is its last.
	s.cfg = filepath.Join(s.dir, "shared.yaml")
	if err := os.WriteFile(s.cfg, append(base, []byte("  dir: "+s.shared+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// kill kills an instance (SIGKILL), as a crash does.
func (s *scaled) kill(t *testing.T, name string) {
	t.Helper()
	for _, i := range s.insts {
		if i.name == name && !i.left {
			i.p.kill()
			i.left = true
			t.Logf("%s killed (SIGKILL) after reading %d records", name, i.last.RecordsRead)
		}
	}
}

// huntingDir is where an instance writes its hunting partitions.
func (s *scaled) huntingDir(i *instance) string {
	if s.shared != "" {
		return s.shared
	}
	return filepath.Join(i.state, "hunting")
}

// sleep waits 2-5 s, then says how far the instances got.
func (s *scaled) sleep(t *testing.T, rng *rand.Rand, next string) {
	t.Helper()
	time.Sleep(time.Duration(2000+rng.IntN(3000)) * time.Millisecond)
	t.Logf("%s at %s (%s)", next, time.Since(s.began).Round(time.Millisecond), s.progress())
}

// progress is the records each live instance has read so far.
func (s *scaled) progress() string {
	var parts []string
	for _, i := range s.insts {
		if i.left {
			continue
		}
		if st, ok := status(i.p); ok {
			i.last = st
		}
		parts = append(parts, fmt.Sprintf("%s read %d", i.name, i.last.RecordsRead))
	}
	return strings.Join(parts, ", ")
}

// shares says what each instance did: input records read, incident
// versions published, hunting rows written (a share of 0 is legal: a group
// may finish a stage before a rebalance gives the newcomer any of it).
func (s *scaled) shares(t *testing.T) string {
	var parts []string
	for _, i := range s.insts {
		if st, ok := status(i.p); ok && !i.left {
			i.last = st
		}
		parts = append(parts, fmt.Sprintf("%s: read %d, incident versions %d, hunting rows %d",
			i.name, i.last.RecordsRead, i.last.IncidentVersions, sum(huntingRows(t, s.huntingDir(i)))))
	}
	return strings.Join(parts, "; ")
}

// settle waits until the live instances have done all the work and collects
// the outcome over every instance's hunting directory.
func (s *scaled) settle(t *testing.T, want outcome) outcome {
	t.Helper()
	<-s.fed
	var dirs []string
	var live []*proc
	for _, i := range s.insts {
		if d := s.huntingDir(i); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
		if !i.left {
			live = append(live, i.p)
		}
	}
	// At least the baseline's rows (not exactly: rows written twice should
	// fail the comparison below, not time out here).
	waitSettledDirs(t, s.addr, dirs, func(rows map[string]int64) bool { return sum(rows) >= sum(want.hunting) }, live...)
	t.Logf("%d instances settled after %s (%s)", len(s.insts), time.Since(s.began).Round(time.Millisecond), s.shares(t))
	got := collect(t, s.addr, dirs[0])
	got.hunting, got.stray = huntingRowsSum(t, dirs), nil
	for _, d := range dirs {
		got.stray = append(got.stray, strayTemps(d)...)
	}
	for _, p := range live {
		p.stop(t)
	}
	t.Logf("scaled: %d incidents (%d versions), %d dead letters, hunting rows %v", len(got.incidents), got.versions, len(got.dead), got.hunting)
	return got
}

func (s *scaled) logTails(t *testing.T) {
	if !t.Failed() {
		return
	}
	for _, i := range s.insts {
		t.Logf("log of %s (%s):\n%s", i.name, i.p.log, tail(i.p.log, 40))
		// Which hunting partitions this instance committed, and up to where.
		commits, _ := filepath.Glob(filepath.Join(s.huntingDir(i), "_manifest", "partitions", "*", "*", "commit.json"))
		for _, c := range commits {
			b, _ := os.ReadFile(c)
			t.Logf("hunting commit of %s, %s: %.300s", i.name, c, b)
		}
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
