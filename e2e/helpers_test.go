// Package e2e runs the stitch binary as an operator would: a standalone
// broker, `stitch produce`, one or more `stitch run` processes (killed and
// restarted at will), and `stitch consume` to read what came out.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/internal/simulator"
)

var long = flag.Bool("stitch.long", os.Getenv("STITCH_E2E_LONG") != "", "run the long forms (many kills); or set STITCH_E2E_LONG=1")

var bin string // the stitch binary, built once

// readSources reads every Go source and module file of the repository. The
// binary under test is built by a subprocess, which go test's result cache
// cannot see; files the test process opens it does, so a change anywhere in
// stitch reruns these tests instead of replaying a stale pass.
func readSources(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum") {
			_, err = os.ReadFile(path)
		}
		return err
	})
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test skips
	}
	tmp, err := os.MkdirTemp("", "stitch-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(tmp, "stitch")
	// -trimpath: the packages' build cache entries then do not depend on
	// the checkout's directory, so the quick start's build of a copy of
	// the tree (TestREADMEQuickStart) only links.
	out, err := exec.Command("go", "build", "-trimpath", "-o", bin, "../cmd/stitch").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the stitch binary end to end")
	}
	// Inside a test, not TestMain: go test logs the files a test opens
	// only once m.Run has started.
	sourcesOnce.Do(func() {
		if err := readSources(".."); err != nil {
			t.Fatal(err)
		}
	})
}

var sourcesOnce sync.Once

// seed is the test's random seed: STITCH_E2E_SEED, or logged for a rerun.
func seed(t *testing.T) *rand.Rand {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("STITCH_E2E_SEED"); v != "" {
		fmt.Sscan(v, &s)
	}
	t.Logf("random seed %d (STITCH_E2E_SEED to repeat)", s)
	return rand.New(rand.NewPCG(s, s^0x5eed))
}

const partitions = 4

// startBroker runs `stitch broker` until the test ends and returns its address.
func startBroker(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(bin, "broker", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
		"--partitions", fmt.Sprint(partitions))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "stitch broker listening on "); ok {
				addr <- strings.TrimSpace(a)
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("broker did not say where it listens")
		return ""
	}
}

// writeInput writes the replay: a simulator stream with attack stories, and
// bad lines the normalizer dead-letters (at the start, middle and end).
func writeInput(t *testing.T, dir string, n int, opts ...simulator.Option) string {
	t.Helper()
	path := filepath.Join(dir, "input.jsonl")
	opts = append([]simulator.Option{simulator.Seed(11), simulator.EventsPerSecond(10), simulator.AttackEvery(n / 25)}, opts...)
	if err := simulator.WriteFile(path, n, opts...); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	bad := []string{
		"this is not json\n",
		`{"tenantId":"00000000-0000-0000-0000-0000000000aa","category":"NoSuchTable","properties":{}}` + "\n",
		`[1,2,3]` + "\n",
		`{"tenantId":"00000000-0000-0000-0000-0000000000aa","properties":{"Timestamp":"2024-06-03T08:00:00Z"}}` + "\n",
	}
	out := append([]string{bad[0]}, lines[:len(lines)/2]...)
	out = append(out, bad[1], bad[2])
	out = append(out, lines[len(lines)/2:]...)
	out = append(out, bad[3])
	if err := os.WriteFile(path, []byte(strings.Join(out, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func stitch(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("stitch %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writeConfig writes a config with short commit intervals, so that kills
// land between and inside many transactions.
func writeConfig(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "stitch.yaml")
	cfg := fmt.Sprintf(`kafka:
  commit_interval: 200ms
topics:
  partitions: %d
normalize:
  batch_age: 200ms
hunting:
  roll_age: 1s
  # The simulator's events are from 2024: keep them.
  retention_every: 0s
`, partitions)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is one `stitch run`.
type proc struct {
	cmd *exec.Cmd
	log string
}

func startRun(t *testing.T, addr, cfg, stateDir, logPath string) *proc {
	t.Helper()
	return startProc(t, logPath, "run", "--brokers", addr, "--simulate=false", "--state-dir", stateDir,
		"--http", "127.0.0.1:0", "--log-level", "warn", "--config", cfg)
}

// startProc starts the binary with args, its output appended to logPath,
// and kills it when the test ends.
func startProc(t *testing.T, logPath string, args ...string) *proc {
	t.Helper()
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(lf, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); lf.Close() }()
	p := &proc{cmd: cmd, log: logPath}
	t.Cleanup(func() { p.kill() })
	return p
}

// interrupt stops the run as Ctrl-C does (SIGINT) and waits for it to exit.
func (p *proc) interrupt(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	for i := 0; i < 3000 && p.cmd.ProcessState == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	switch {
	case p.cmd.ProcessState == nil:
		p.kill()
		t.Errorf("stitch run did not stop on SIGINT within 30s; log %s", p.log)
	case !p.cmd.ProcessState.Success():
		t.Errorf("stitch run exited %v on SIGINT; log %s:\n%s", p.cmd.ProcessState, p.log, tail(p.log, 20))
	}
}

// uninterrupted runs one `stitch run` over in on a fresh broker until it
// settles: the outcome the other runs are compared with.
func uninterrupted(t *testing.T, dir, in, cfg string) outcome {
	t.Helper()
	addr := startBroker(t)
	stitch(t, "produce", "--brokers", addr, "--in", in)
	state := filepath.Join(t.TempDir(), "state")
	start := time.Now()
	p := startRun(t, addr, cfg, state, filepath.Join(dir, "baseline.log"))
	waitSettled(t, addr, filepath.Join(state, "hunting"), statusDone(p), p)
	t.Logf("uninterrupted run settled in %s", time.Since(start).Round(time.Millisecond))
	o := collect(t, addr, filepath.Join(state, "hunting"))
	p.stop(t)
	if len(o.incidents) < 5 || len(o.dead) < 4 || len(o.actions) < 5 {
		t.Fatalf("baseline too thin to compare: %d incidents, %d dead letters, %d actions", len(o.incidents), len(o.dead), len(o.actions))
	}
	t.Logf("baseline: %d incidents (%d versions), %d dead letters, %d actions, hunting rows %v",
		len(o.incidents), o.versions, len(o.dead), len(o.actions), o.hunting)
	return o
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		for i := 0; i < 100 && p.cmd.ProcessState == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// stop asks for a clean stop (SIGTERM) and waits for it.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < 3000 && p.cmd.ProcessState == nil; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if p.cmd.ProcessState == nil {
		p.kill()
		t.Errorf("stitch run did not stop within 30s; log %s", p.log)
	}
}

// statusDone reads the run's /status (its address is in the log) and says
// whether every normalized row reached the hunting partitions: the end of a
// single uninterrupted run.
func statusDone(p *proc) func(map[string]int64) bool {
	return func(map[string]int64) bool {
		s, ok := status(p)
		if !ok || len(s.Normalized) == 0 {
			return false
		}
		for table, n := range s.Normalized {
			if s.Hunting[table] != n {
				return false
			}
		}
		return true
	}
}

// runStatus is the part of a run's /status JSON the tests read.
type runStatus struct {
	RecordsRead      int64            `json:"records_read"`
	Normalized       map[string]int64 `json:"normalized"`
	Dead             map[string]int64 `json:"dead_lettered"`
	RecordsIn        map[string]int64 `json:"records_in"`
	IncidentVersions int64            `json:"incident_updates"` // versions published, not incidents
	Hunting          map[string]int64 `json:"hunting_rows"`
}

// httpAddr is the run's HTTP address, from its stderr line
// "metrics on http://ADDR/metrics" (the last one: a log holds every start).
func httpAddr(p *proc) (string, bool) {
	b, _ := os.ReadFile(p.log)
	i := strings.LastIndex(string(b), "metrics on http://")
	if i < 0 {
		return "", false
	}
	addr, _, ok := strings.Cut(string(b[i+len("metrics on http://"):]), "/metrics")
	return addr, ok
}

// status reads the run's /status.
func status(p *proc) (runStatus, bool) {
	var s runStatus
	addr, ok := httpAddr(p)
	if !ok {
		return s, false
	}
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return s, false
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s) == nil
}

// rowsDone says whether the hunting partitions hold want's rows.
func rowsDone(want map[string]int64) func(map[string]int64) bool {
	return func(rows map[string]int64) bool { return maps.Equal(rows, want) }
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		// Progress lines drown what matters when a run goes wrong.
		if !strings.Contains(l, " rec/s | ") && !strings.Contains(l, "EndTxn slow") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitSettled waits until the normalize group has committed all of the input
// and the outputs (incident and dead-letter end offsets, hunting rows) stop
// changing for a few seconds.
func waitSettled(t *testing.T, addr, huntDir string, done func(rows map[string]int64) bool, procs ...*proc) {
	t.Helper()
	waitSettledDirs(t, addr, []string{huntDir}, done, procs...)
}

// waitSettledDirs is waitSettled over the hunting directories of several
// instances, their rows summed per table.
func waitSettledDirs(t *testing.T, addr string, huntDirs []string, done func(rows map[string]int64) bool, procs ...*proc) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var last string
	stable := 0
	for stable < 3 {
		select {
		case <-ctx.Done():
			for _, p := range procs {
				t.Logf("log %s:\n%s", p.log, tail(p.log, 30))
			}
			t.Fatalf("outputs did not settle: %s", last)
		case <-time.After(2 * time.Second):
		}
		for _, p := range procs {
			if p.cmd.ProcessState != nil {
				t.Fatalf("stitch run exited: %v\n%s", p.cmd.ProcessState, tail(p.log, 30))
			}
		}
		lag, err := adm.Lag(ctx, "stitch-normalize")
		if err != nil {
			continue
		}
		var behind int64
		lag.Each(func(l kadm.DescribedGroupLag) {
			for _, ps := range l.Lag {
				for _, pl := range ps {
					if pl.Topic == "signals" {
						behind += pl.Lag
					}
				}
			}
		})
		ends, err := adm.ListEndOffsets(ctx, "incidents", "deadletter", "actions")
		if err != nil {
			continue
		}
		var out int64
		ends.Each(func(o kadm.ListedOffset) { out += o.Offset })
		rows := huntingRowsSum(t, huntDirs)
		now := fmt.Sprintf("signals lag %d, incident+deadletter end offsets %d, hunting rows %v", behind, out, rows)
		if behind == 0 && now == last && done(rows) {
			stable++
		} else {
			stable = 0
		}
		last = now
	}
}

// huntingRows counts the committed Parquet rows per table (the directories
// under dir, staging excluded).
func huntingRows(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	rows := map[string]int64{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() && strings.HasPrefix(d.Name(), "_") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".parquet") {
			return nil
		}
		r, err := file.OpenParquetFile(path, false)
		if err != nil {
			t.Errorf("open %s: %v", rel, err)
			return nil
		}
		rows[strings.Split(rel, string(filepath.Separator))[0]] += r.NumRows()
		r.Close()
		return nil
	})
	return rows
}

// huntingRowsSum sums huntingRows over several instances' directories.
func huntingRowsSum(t *testing.T, dirs []string) map[string]int64 {
	t.Helper()
	rows := map[string]int64{}
	for _, d := range dirs {
		for table, n := range huntingRows(t, d) {
			rows[table] += n
		}
	}
	return rows
}

// strayTemps lists *.tmp files outside _staging directories.
func strayTemps(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == "_staging" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".tmp") {
			out = append(out, path)
		}
		return nil
	})
	return out
}

type consumed struct {
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	Key       any             `json:"key"`
	Value     json.RawMessage `json:"value"`
}

// drain reads a whole topic with `stitch consume`.
func drain(t *testing.T, addr, topic, dir string) []consumed {
	t.Helper()
	path := filepath.Join(dir, topic+".jsonl")
	stitch(t, "consume", "--brokers", addr, "--topic", topic, "--out", path, "--until-idle", "3s")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []consumed
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var c consumed
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// outcome is what a run left behind, in comparable form.
type outcome struct {
	// incidents: id → status, redirect and sorted alert ids of its latest version.
	incidents map[string]string
	versions  int
	dups      []string       // (id, version) pairs published more than once
	dead      map[string]int // dead-letter value → times published
	hunting   map[string]int64
	stray     []string
	// actions: action id → its final state (actions_test.go).
	actions    map[string]string
	actionDups []string
}

func collect(t *testing.T, addr, huntDir string) outcome {
	t.Helper()
	dir := t.TempDir()
	o := outcome{incidents: map[string]string{}, dead: map[string]int{}, hunting: huntingRows(t, huntDir), stray: strayTemps(huntDir)}
	type inc struct {
		ID       string  `json:"id"`
		Status   string  `json:"status"`
		Redirect *string `json:"redirectIncidentId"`
		Version  int     `json:"version"`
		Alerts   []struct {
			ID string `json:"id"`
		} `json:"alerts"`
	}
	latest := map[string]inc{}
	seen := map[string]bool{}
	for _, r := range drain(t, addr, "incidents", dir) {
		var i inc
		if err := json.Unmarshal(r.Value, &i); err != nil {
			t.Fatalf("incident at %d/%d: %v", r.Partition, r.Offset, err)
		}
		o.versions++
		k := fmt.Sprintf("%s v%d", i.ID, i.Version)
		if seen[k] {
			o.dups = append(o.dups, k)
		}
		seen[k] = true
		if i.Version > latest[i.ID].Version {
			latest[i.ID] = i
		}
	}
	for id, i := range latest {
		var alerts []string
		for _, a := range i.Alerts {
			alerts = append(alerts, a.ID)
		}
		slices.Sort(alerts)
		red := ""
		if i.Redirect != nil {
			red = *i.Redirect
		}
		o.incidents[id] = fmt.Sprintf("%s→%s %v", i.Status, red, alerts)
	}
	o.actions, o.actionDups = collectActions(t, addr, dir)
	for _, r := range drain(t, addr, "deadletter", dir) {
		// Where a record without a tenant lands, and when, differ per run.
		var d map[string]any
		if err := json.Unmarshal(r.Value, &d); err != nil {
			t.Fatalf("dead letter at %d/%d: %v", r.Partition, r.Offset, err)
		}
		delete(d, "time")
		delete(d, "partition")
		delete(d, "offset")
		b, _ := json.Marshal(d)
		o.dead[string(b)]++
	}
	return o
}

// incidentDiffs says how got's incidents (as collect writes them) differ
// from want's: errs fail the comparison, notes are differences of arrival
// order. An alert whose evidence comes after it in the stream is placed
// with its partners when both land in one transaction, but opens an
// incident of its own when a commit falls between them (commit intervals
// fall by time, and a restart resumes at the last commit), which its
// evidence then redirects into theirs: one run then has an incident,
// redirected and with no alert, that the other has not, into an incident
// both have with the same alerts (pipeline's
// TestAlertBeforeItsEvidenceAcrossACommit). Anything else is an error.
func incidentDiffs(want, got map[string]string) (errs, notes []string) {
	// arrival: v, of an incident only one run has, is a redirect without
	// alerts into an incident both runs have alike.
	arrival := func(v string) bool {
		into, ok := strings.CutPrefix(v, "redirected→")
		if !ok {
			return false
		}
		into, ok = strings.CutSuffix(into, " []")
		if !ok || into == "" {
			return false
		}
		w, ok := want[into]
		return ok && w == got[into] && !strings.HasPrefix(w, "redirected→")
	}
	for id, w := range want {
		if g, ok := got[id]; !ok && arrival(w) {
			notes = append(notes, fmt.Sprintf("incident %s only in the uninterrupted run (an alert before its evidence, a commit between them): %s", id, w))
		} else if !ok {
			errs = append(errs, fmt.Sprintf("incident %s missing (want %s)", id, w))
		} else if g != w {
			errs = append(errs, fmt.Sprintf("incident %s:\n got %s\nwant %s", id, g, w))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok && arrival(g) {
			notes = append(notes, fmt.Sprintf("incident %s only in this run (an alert before its evidence, a commit between them): %s", id, g))
		} else if !ok {
			errs = append(errs, fmt.Sprintf("extra incident %s: %s", id, g))
		}
	}
	slices.Sort(errs)
	slices.Sort(notes)
	return errs, notes
}

// compare checks got against the uninterrupted run's want.
func compare(t *testing.T, want, got outcome) {
	t.Helper()
	if len(got.dups) > 0 {
		t.Errorf("%d incident versions published twice, e.g. %v", len(got.dups), got.dups[:min(5, len(got.dups))])
	}
	errs, notes := incidentDiffs(want.incidents, got.incidents)
	for _, e := range errs {
		t.Error(e)
	}
	for _, n := range notes {
		t.Log(n)
	}
	for v, n := range got.dead {
		if n != 1 {
			t.Errorf("dead letter published %d times: %.200s", n, v)
		}
		if want.dead[v] == 0 {
			t.Errorf("unexpected dead letter: %.200s", v)
		}
	}
	for v := range want.dead {
		if got.dead[v] == 0 {
			t.Errorf("dead letter missing: %.200s", v)
		}
	}
	for table, n := range want.hunting {
		if got.hunting[table] != n {
			t.Errorf("hunting %s: %d rows, want %d", table, got.hunting[table], n)
		}
	}
	for table, n := range got.hunting {
		if _, ok := want.hunting[table]; !ok {
			t.Errorf("hunting %s: %d rows, want none", table, n)
		}
	}
	if len(got.stray) > 0 {
		t.Errorf("temporary files outside _staging: %v", got.stray)
	}
	compareActions(t, want.actions, got.actions, got.actionDups)
}
