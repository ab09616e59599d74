package pipeline

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

func TestIdentityMismatch(t *testing.T) {
	rec := Identity{ClusterID: "a", Topics: map[string]string{"signals": "1", "incidents": "2"}}
	for _, c := range []struct {
		name string
		now  Identity
		want string
	}{
		{"same", Identity{ClusterID: "a", Topics: map[string]string{"signals": "1", "incidents": "2"}}, ""},
		{"new topic, missing topic", Identity{ClusterID: "a", Topics: map[string]string{"signals": "1", "x": "9"}}, ""},
		{"other cluster", Identity{ClusterID: "b", Topics: map[string]string{"signals": "1"}}, "the cluster id is b, the state was written against a"},
		{"recreated topic", Identity{ClusterID: "a", Topics: map[string]string{"signals": "3", "incidents": "2"}}, "topic signals was recreated (id 3, the state has 1)"},
	} {
		if got := strings.Join(rec.mismatch(c.now), "; "); got != c.want {
			t.Errorf("%s: mismatch = %q, want %q", c.name, got, c.want)
		}
	}
}

// Instances sharing a hunting directory record the identity at the same
// moment: every write leaves a whole file and no temporary behind.
func TestIdentityWritesRace(t *testing.T) {
	dir := t.TempDir()
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			errs <- writeIdentity(dir, Identity{ClusterID: "c", Topics: map[string]string{"signals": strings.Repeat("x", i*1000)}})
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	if _, ok, err := readIdentity(dir); err != nil || !ok {
		t.Fatalf("read back: %v (found %v)", err, ok)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	if len(left) > 0 {
		t.Fatalf("temporaries left: %v", left)
	}
}

// A replay runs on a new broker each time: a second one into the same
// output directory starts clean, and one over an earlier replay's state
// directory refuses at once unless told to reset it.
func TestReplayRerun(t *testing.T) {
	if testing.Short() {
		t.Skip("replays three times")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in := filepath.Join("..", "testdata", "replay", "mixed-bad.jsonl")
	out := t.TempDir()
	cfg := Default()
	cfg.State.Dir = filepath.Join(t.TempDir(), "state")
	first, err := Replay(ctx, cfg, ReplayOptions{Inputs: []string{in}, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.State.Dir, IdentityFile)); err != nil {
		t.Fatalf("no identity recorded: %v", err)
	}

	var said []string
	progress := func(l string) { said = append(said, l) }
	start := time.Now()
	_, err = Replay(ctx, cfg, ReplayOptions{Inputs: []string{in}, OutDir: out, Progress: progress})
	if !errors.Is(err, ErrStateMismatch) || !strings.Contains(err.Error(), "--reset-state") {
		t.Fatalf("second replay over the same state: %v; want a refusal naming the way out", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the refusal took %s", d)
	}

	cfg.State.Reset = true
	second, err := Replay(ctx, cfg, ReplayOptions{Inputs: []string{in}, OutDir: out, Progress: progress})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(said, "\n"), "starting clean") {
		t.Errorf("the rerun did not say it started clean: %q", said)
	}
	if first.Incidents != second.Incidents || first.RecordsRead != second.RecordsRead || sum(first.HuntingRows) != sum(second.HuntingRows) {
		t.Errorf("rerun: %+v, first run: %+v", second, first)
	}
}

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// A directory a stage declares (Stage.Dirs, as the hunting sink declares
// hunting.dir) is checked against the cluster like state.dir: it records
// the cluster's identity on first use, and state of another cluster in it
// is refused, naming it; with state.reset the stage's Discard clears it
// and it is recorded again. A stage that is off declares nothing checked.
func TestIdentityChecksTheStagesDirs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kept := t.TempDir()
	count := countStage()
	count.Dirs = func(Config) []string { return []string{kept} }
	var discarded []string
	count.Discard = func(_ Config, dir string) error {
		discarded = append(discarded, dir)
		return nil
	}
	reset := false
	check := func(enabled bool) error {
		b, err := kafka.StartBroker()
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		cfg := Default()
		cfg.State.Dir = t.TempDir() // fresh: only kept can be of another cluster
		cfg.Hunting.Enabled = false
		cfg.State.Reset = reset
		count.Enabled = func(Config) bool { return enabled }
		p, err := New(cfg, WithBrokers(b.Addrs()), WithInstance("dirs"), WithStage(count))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.EnsureTopics(ctx); err != nil {
			t.Fatal(err)
		}
		return p.checkIdentity(ctx)
	}
	if err := check(false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(kept, IdentityFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the directory of a stage that is off was recorded: %v", err)
	}
	if err := check(true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(kept, IdentityFile)); err != nil {
		t.Fatalf("the stage's directory was not recorded: %v", err)
	}
	err := check(true) // another broker: another cluster
	if !errors.Is(err, ErrStateMismatch) || !strings.Contains(err.Error(), kept) {
		t.Fatalf("the stage's directory of another cluster: %v; want a refusal naming it", err)
	}
	if len(discarded) > 0 {
		t.Fatalf("refused, yet discarded %q", discarded)
	}
	reset = true
	if err := check(true); err != nil {
		t.Fatalf("state.reset over another cluster's directory: %v", err)
	}
	if len(discarded) != 1 || discarded[0] != kept {
		t.Fatalf("state.reset discarded %q, want the stage's directory %s once", discarded, kept)
	}
	reset = false
	if err := check(true); !errors.Is(err, ErrStateMismatch) {
		t.Fatalf("after the reset, another cluster again: %v; want a refusal (the directory was recorded again)", err)
	}
}
