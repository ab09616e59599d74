package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The first hour of a user (issue 11): reruns, restarts, the demo and the
// README's quick start, as a user runs them.

// A replay into the same --out twice starts clean and gives the same
// summary; a replay over an earlier replay's --state-dir refuses at once,
// naming the way out.
func TestReplayTwiceIntoOneOut(t *testing.T) {
	skipShort(t)
	out := t.TempDir()
	in := filepath.Join("..", "testdata", "replay", "mixed-bad.jsonl")
	first := stitch(t, "replay", "--in", in, "--out", out, "--timeout", "2m")
	sum1, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	// A Parquet part names its own table, wherever it is copied.
	parts, _ := filepath.Glob(filepath.Join(out, "hunting", "*", "tenant=*", "date=*", "hour=*", "*.parquet"))
	for _, f := range parts {
		rel, _ := filepath.Rel(filepath.Join(out, "hunting"), f)
		table, _, _ := strings.Cut(rel, string(filepath.Separator))
		if !strings.HasPrefix(filepath.Base(f), "part-"+table+"-") {
			t.Errorf("%s: the part's name does not carry its table %s", rel, table)
		}
	}
	if len(parts) == 0 {
		t.Errorf("no Parquet parts under %s", filepath.Join(out, "hunting"))
	}
	start := time.Now()
	second := stitch(t, "replay", "--in", in, "--out", out, "--timeout", "2m")
	if d := time.Since(start); d > time.Minute {
		t.Errorf("the second replay took %s", d)
	}
	if !strings.Contains(second, "starting clean") || strings.Contains(first, "starting clean") {
		t.Errorf("only the rerun should say it starts clean:\nfirst:\n%s\nsecond:\n%s", first, second)
	}
	sum2, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if strip(sum1) != strip(sum2) || len(sum1) == 0 {
		t.Errorf("summaries differ:\n%s\n%s", sum1, sum2)
	}

	state := filepath.Join(t.TempDir(), "state")
	stitch(t, "replay", "--in", in, "--out", out, "--state-dir", state)
	cmd := exec.Command(bin, "replay", "--in", in, "--out", out, "--state-dir", state, "--timeout", "2m")
	msg, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "another Kafka cluster") || !strings.Contains(string(msg), "--reset-state") {
		t.Errorf("a replay over an earlier replay's state: %v\n%s", err, msg)
	}
	stitch(t, "replay", "--in", in, "--out", out, "--state-dir", state, "--reset-state")
}

var durationRe = regexp.MustCompile(`"duration_seconds": [0-9.e+-]+`)

func strip(b []byte) string { return durationRe.ReplaceAllString(string(b), "") }

// startEmbedded runs `stitch run` on its embedded broker (no --brokers),
// without the simulator, and returns it with its broker's address.
func startEmbedded(t *testing.T, cfg, stateDir, logPath string, extra ...string) (*proc, string) {
	t.Helper()
	args := append([]string{"run", "--simulate=false", "--state-dir", stateDir, "--http", "127.0.0.1:0", "--config", cfg}, extra...)
	var from int64 // this start's lines: the log holds every start
	if fi, err := os.Stat(logPath); err == nil {
		from = fi.Size()
	}
	p := startProc(t, logPath, args...)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b, _ := os.ReadFile(logPath)
		b = b[min(from, int64(len(b))):]
		const say = "embedded Kafka-protocol broker on "
		if i := strings.LastIndex(string(b), say); i >= 0 {
			if addr, _, ok := strings.Cut(string(b[i+len(say):]), "\n"); ok {
				return p, strings.TrimSpace(addr)
			}
		}
		if p.cmd.ProcessState != nil {
			break
		}
	}
	t.Fatalf("stitch run did not say where its broker listens:\n%s", tail(logPath, 20))
	return nil, ""
}

// splitLines writes the first and the second half of in's lines to two files.
func splitLines(t *testing.T, in string) (string, string) {
	t.Helper()
	data, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	half := len(lines) / 2
	a, b := in+".1", in+".2"
	os.WriteFile(a, []byte(strings.Join(lines[:half], "")), 0o644)
	os.WriteFile(b, []byte(strings.Join(lines[half:], "")), 0o644)
	return a, b
}

// `stitch run` on its embedded broker, stopped and started again on the same
// state directory, continues: the two runs together give the rows, incidents
// and dead letters of one uninterrupted run. Then the same state directory
// pointed at another cluster refuses to start, and says what to do.
func TestEmbeddedRestartContinues(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	in := writeInput(t, dir, 3000)
	cfg := writeConfig(t, dir)
	baseline := uninterrupted(t, dir, in, cfg)

	first, second := splitLines(t, in)
	state := filepath.Join(t.TempDir(), "state")
	hunt := filepath.Join(state, "hunting")
	logPath := filepath.Join(dir, "embedded.log")
	var addr string
	for i, part := range []string{first, second} {
		var p *proc
		p, addr = startEmbedded(t, cfg, state, logPath)
		stitch(t, "produce", "--brokers", addr, "--in", part)
		waitSettled(t, addr, hunt, statusDone(p), p)
		if i == 1 {
			got := collect(t, addr, hunt)
			t.Logf("after a restart: %d incidents (%d versions), %d dead letters", len(got.incidents), got.versions, len(got.dead))
			compare(t, baseline, got)
		}
		p.interrupt(t)
	}
	// The restart says how many incidents the earlier run left, since the
	// progress line counts only this run's new ones.
	if log, _ := os.ReadFile(logPath); strings.Contains(string(log), "the first incident is out") &&
		!strings.Contains(string(log), "incidents from earlier runs on this state directory") {
		t.Errorf("the restart did not say how many incidents the first run left:\n%s", tail(logPath, 20))
	}
	if _, err := os.Stat(filepath.Join(state, "broker")); err != nil {
		t.Errorf("the embedded broker's log is not under the state directory: %v", err)
	}

	other := startBroker(t)
	cmd := exec.Command(bin, "run", "--brokers", other, "--simulate=false", "--state-dir", state, "--http", "127.0.0.1:0", "--config", cfg)
	done := make(chan []byte, 1)
	go func() { b, _ := cmd.CombinedOutput(); done <- b }()
	select {
	case msg := <-done:
		if cmd.ProcessState.Success() || !strings.Contains(string(msg), "another Kafka cluster") ||
			!strings.Contains(string(msg), "--reset-state") || !strings.Contains(string(msg), "--state-dir") {
			t.Errorf("state of another cluster: exit %v\n%s", cmd.ProcessState, msg)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Error("stitch run on another cluster's state did not refuse within 60s")
	}
	if t.Failed() {
		fmt.Println(tail(logPath, 40))
	}
}

// The default demo shows an incident within 30 s of starting, and
// `stitch incidents` lists it and shows why its alerts are one incident.
func TestDemoShowsIncident(t *testing.T) {
	skipShort(t)
	state := filepath.Join(t.TempDir(), "state")
	cmd := exec.Command(bin, "run", "--state-dir", state, "--http", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
	}()
	progress := regexp.MustCompile(`\| incidents ([1-9][0-9]*) \(`)
	seen := make(chan time.Duration, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if progress.MatchString(sc.Text()) {
				select {
				case seen <- time.Since(start):
				default:
				}
			}
		}
	}()
	select {
	case d := <-seen:
		t.Logf("the progress line counted an incident after %s", d.Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatalf("no incident on the progress line within 30s")
	}
	list := stitch(t, "incidents", "--state-dir", state)
	ids := strings.Fields(stitch(t, "incidents", "--state-dir", state, "--format", "ids"))
	if len(ids) == 0 || !strings.Contains(list, ids[0]) {
		t.Fatalf("stitch incidents lists nothing:\n%s", list)
	}
	show := stitch(t, "incidents", "--state-dir", state, "show", ids[0])
	for _, want := range []string{"Alerts (", "Entities:", "Why these alerts are one incident:"} {
		if !strings.Contains(show, want) {
			t.Errorf("stitch incidents show lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, "with no impacted device or user") {
		t.Errorf("the demo's incident has no impacted device or user:\n%s", show)
	}
}

// The README's quick start, run as written (its code block, line by line,
// in a copy of the working tree), ends by showing an incident.
func TestREADMEQuickStart(t *testing.T) {
	skipShort(t)
	block := quickStart(t)
	tree := t.TempDir()
	copyTree(t, "..", tree)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", block)
	cmd.Dir = tree
	// Port 8080 may be taken on a shared machine: any free port. The
	// README's go build of the copy reuses the packages TestMain built
	// (both -trimpath, so the copy's directory is not in their cache keys).
	cmd.Env = append(os.Environ(), "STITCH_HTTP_ADDR=127.0.0.1:0",
		"GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" -trimpath"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the quick start failed: %v\n%s\n---\n%s", err, block, out)
	}
	for _, want := range []string{"Why these alerts are one incident:", "stitch: ran "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the quick start's output lacks %q:\n%s", want, out)
		}
	}
}

// quickStart is the first sh code block under the README's "## Quick start".
func quickStart(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no '## Quick start' section")
	}
	_, block, ok := strings.Cut(sec, "```sh\n")
	if block, _, ok2 := strings.Cut(block, "```"); ok && ok2 {
		return block
	}
	t.Fatal("the quick start has no sh code block")
	return ""
}

// copyTree copies the Go module at src (every source file, embedded assets
// included; not .git, testdata, screenshots or build outputs) to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		name := d.Name()
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "stitch-data" || name == "bench") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		// Every source file, whatever go:embed takes in (the pane's HTML,
		// JS and CSS); not built binaries, screenshots nor large data.
		if !d.Type().IsRegular() || rel == "stitch" || strings.HasSuffix(name, ".png") || strings.HasSuffix(name, ".parquet") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
