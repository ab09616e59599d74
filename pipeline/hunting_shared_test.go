package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/ipc"
	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

// memberEnv carries a sharedMember to the process TestSharedHuntingMember
// runs in.
const memberEnv = "STITCH_TEST_HUNTING_MEMBER"

// sharedMember is one instance of the hunting sink over the shared root.
type sharedMember struct {
	Instance string   `json:"instance"`
	Brokers  []string `json:"brokers"`
	Config   Config   `json:"config"`
	// KillAtCommit, in a process of its own: SIGKILL itself as it is about
	// to write its n-th partition commit.json, once the other partitions
	// of that segment wrote theirs (none renamed yet): some of the
	// segment is committed, some not.
	KillAtCommit int `json:"killAtCommit"`
}

// TestSharedHuntingRoot runs hunting sinks of several instances (one
// consumer group, one embedded broker) over ONE hunting directory while
// the input arrives: a starts, b joins, c joins in a process of its own and
// is killed (SIGKILL, between a partition's commit and its renames), b
// leaves, c comes back. Partitions move between them all along, each
// continuing its segments in place. An independent Parquet reader then
// finds every input row in the directory exactly once, and no staged file
// left.
func TestSharedHuntingRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs several hunting sinks and a child process for a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b, err := kafka.StartBroker(kafka.DefaultPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := t.TempDir()
	cfg := Default()
	cfg.Topics.Partitions = 4
	cfg.Kafka.CommitInterval = Duration(100 * time.Millisecond)
	cfg.Kafka.MaxPollRecords = 50 // many segments, so kills and moves land inside streams
	cfg.Hunting.Enabled = true
	cfg.Hunting.Dir = filepath.Join(dir, "hunting")
	cfg.Hunting.RollAge = Duration(300 * time.Millisecond)
	cfg.Hunting.RetentionEvery = 0
	cfg.State.Dir = filepath.Join(dir, "state-setup")
	setup, err := New(cfg, WithBrokers(b.Addrs()), WithInstance("setup"))
	if err != nil {
		t.Fatal(err)
	}
	if err := setup.EnsureTopics(ctx); err != nil {
		t.Fatal(err)
	}

	prod, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	rng := rand.New(rand.NewPCG(16, 2))
	tables := []string{"DeviceProcessEvents", "DeviceNetworkEvents", "DeviceFileEvents"}
	var produced int64
	produce := func(records int) {
		t.Helper()
		now := time.Now().UTC()
		var recs []*kgo.Record
		for range records {
			table := tables[rng.IntN(len(tables))]
			tenant := fmt.Sprintf("tenant-%d", rng.IntN(6))
			var rows []parquettest.Row
			for range 1 + rng.IntN(4) {
				// Rows over three hours: several files per partition.
				rows = append(rows, parquettest.Row{Time: now.Add(-time.Duration(rng.IntN(3*3600)) * time.Second), ID: produced})
				produced++
			}
			batch := parquettest.Batch(memory.DefaultAllocator, parquettest.Schema(table), tenant, rows)
			m, err := ipc.Encode(batch)
			batch.Release()
			if err != nil {
				t.Fatal(err)
			}
			r := &kgo.Record{Topic: cfg.Topics.HuntingPrefix + table, Key: m.Key, Value: m.Value}
			for _, h := range m.Headers {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: []byte(h.Value)})
			}
			recs = append(recs, r)
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// feed produces a wave of input over a few seconds, as a stream.
	feed := func(what string) {
		t.Helper()
		for range 10 {
			produce(40)
			time.Sleep(150 * time.Millisecond)
		}
		t.Logf("%s; %d rows produced, %d in the directory", what, produced, len(readSharedRoot(t, cfg.Hunting.Dir)))
	}

	member := func(instance string) sharedMember {
		c := cfg
		c.State.Dir = filepath.Join(dir, "state-"+instance)
		return sharedMember{Instance: instance, Brokers: b.Addrs(), Config: c}
	}
	// A writer that has not let go of a partition yet (a zombie, a slow
	// revoke): a is assigned it, waits (paused) and takes it once free.
	held := filepath.Join(cfg.Hunting.Dir, "_manifest", "partitions", cfg.Topics.HuntingPrefix+tables[0], "0")
	if err := os.MkdirAll(held, 0o755); err != nil {
		t.Fatal(err)
	}
	zombie, err := os.OpenFile(filepath.Join(held, "LOCK"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(zombie.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	a := startSharedMember(t, ctx, member("a"))
	feed("a alone, one partition held by another writer")
	if _, err := os.Stat(filepath.Join(held, "commit.json")); err == nil {
		t.Error("a committed a partition another writer held")
	}
	zombie.Close()
	feed("a alone, the partition let go")
	bm := startSharedMember(t, ctx, member("b"))
	feed("b joined")

	// c in a process of its own, killed in its third partition commit.
	cm := member("c")
	cm.KillAtCommit = 3
	child := startMemberProcess(t, cm, filepath.Join(dir, "c.log"))
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	deadline := time.After(45 * time.Second)
feeding:
	for {
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("c ended with %v, not killed at its commit; log:\n%s", err, tailFile(filepath.Join(dir, "c.log"), 30))
			}
			break feeding
		case <-deadline:
			child.Process.Kill()
			<-exited
			t.Log("c never reached its third commit: killed from outside instead")
			break feeding
		default:
			produce(20)
			time.Sleep(100 * time.Millisecond)
		}
	}
	staged, _ := filepath.Glob(filepath.Join(cfg.Hunting.Dir, "_staging", "c", "*.tmp"))
	// Its committed files not yet renamed: whoever owns their partitions
	// next publishes them.
	var orphans []string
	commits, _ := filepath.Glob(filepath.Join(cfg.Hunting.Dir, "_manifest", "partitions", "*", "*", "commit.json"))
	for _, path := range commits {
		var c struct {
			Files []struct{ Staged, Final string }
		}
		data, _ := os.ReadFile(path)
		json.Unmarshal(data, &c)
		for _, f := range c.Files {
			if _, err := os.Stat(filepath.Join(cfg.Hunting.Dir, f.Staged)); err == nil {
				orphans = append(orphans, f.Final)
			}
		}
	}
	t.Logf("c killed with %d staged files, %d of them committed; %d rows produced", len(staged), len(orphans), produced)
	if len(orphans) == 0 || len(orphans) == len(staged) {
		t.Logf("(the kill left no mix of committed and uncommitted files: c's segment had one partition)")
	}
	feed("after c's kill")
	// Its session ends (static membership: 10 s) and its partitions move
	// to a and b, which publish what c committed.
	published := func() bool {
		for _, f := range orphans {
			if _, err := os.Stat(filepath.Join(cfg.Hunting.Dir, f)); err != nil {
				return false
			}
		}
		return true
	}
	for wait := time.Now(); !published(); {
		if time.Since(wait) > time.Minute {
			t.Fatal("c's committed files were not published by the partitions' new owners")
		}
		produce(10)
		time.Sleep(200 * time.Millisecond)
	}
	feed("c's partitions moved to a and b")

	bm.stop(t)
	feed("b left")
	c := startSharedMember(t, ctx, member("c"))
	feed("c back")

	want := produced
	for {
		rows := readSharedRoot(t, cfg.Hunting.Dir)
		if int64(len(rows)) >= want || ctx.Err() != nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	a.stop(t)
	c.stop(t)

	rows := readSharedRoot(t, cfg.Hunting.Dir)
	var missing, twice []int64
	for id := range want {
		switch n := rows[id]; {
		case n == 0:
			missing = append(missing, id)
		case n > 1:
			twice = append(twice, id)
		}
	}
	if len(missing) > 0 || len(twice) > 0 || int64(len(rows)) != want {
		t.Errorf("%d rows produced, %d distinct in the directory: %d missing (e.g. %v), %d more than once (e.g. %v)",
			want, len(rows), len(missing), missing[:min(5, len(missing))], len(twice), twice[:min(5, len(twice))])
	}
	for _, f := range orphans {
		if _, err := os.Stat(filepath.Join(cfg.Hunting.Dir, f)); err != nil {
			t.Errorf("c's committed file was not published: %v", err)
		}
	}
	filepath.WalkDir(filepath.Join(cfg.Hunting.Dir, "_staging"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != "LOCK" {
			t.Errorf("left staged: %s", p)
		}
		return nil
	})
	commits, _ = filepath.Glob(filepath.Join(cfg.Hunting.Dir, "_manifest", "partitions", "*", "*", "commit.json"))
	if len(commits) != len(tables)*int(cfg.Topics.Partitions) {
		t.Errorf("%d partition commits, want one per input partition (%d)", len(commits), len(tables)*int(cfg.Topics.Partitions))
	}
	t.Logf("%d rows, each once; %d partition commits", len(rows), len(commits))
}

// TestSharedHuntingMember is the child process of TestSharedHuntingRoot
// (skipped unless it sets memberEnv).
func TestSharedHuntingMember(t *testing.T) {
	spec := os.Getenv(memberEnv)
	if spec == "" {
		t.Skip("the child process of TestSharedHuntingRoot")
	}
	var m sharedMember
	if err := json.Unmarshal([]byte(spec), &m); err != nil {
		t.Fatal(err)
	}
	if m.KillAtCommit > 0 {
		var commits atomic.Int64
		huntingTestOptions = append(huntingTestOptions, parquet.Hook(func(event string, tp parquet.TopicPartition) error {
			if event == "commit" && commits.Add(1) == int64(m.KillAtCommit) {
				time.Sleep(300 * time.Millisecond) // the segment's other commits
				fmt.Fprintf(os.Stderr, "killing myself before the commit of %s/%d\n", tp.Topic, tp.Partition)
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			return nil
		}))
	}
	r := startSharedMember(t, context.Background(), m)
	<-r.done // until killed
}

type runningMember struct {
	name string
	stop func(t *testing.T)
	done chan error
}

// startSharedMember runs the hunting stage of one instance in this process.
func startSharedMember(t *testing.T, ctx context.Context, m sharedMember) *runningMember {
	t.Helper()
	p, err := New(m.Config, WithBrokers(m.Brokers), WithInstance(m.Instance))
	if err != nil {
		t.Fatal(err)
	}
	def, info, ok := p.topo.stage("hunting")
	if !ok {
		t.Fatal("no hunting stage")
	}
	r, _, err := p.build(def, info)
	if err != nil {
		t.Fatalf("%s: %v", m.Instance, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	rm := &runningMember{name: m.Instance, done: make(chan error, 1)}
	go func() { rm.done <- r.Run(runCtx) }()
	stopped := false
	rm.stop = func(t *testing.T) {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-rm.done; err != nil {
			t.Errorf("%s: %v", m.Instance, err)
		}
	}
	t.Cleanup(func() { rm.stop(t) })
	return rm
}

// startMemberProcess runs a member in a child process (this test binary).
func startMemberProcess(t *testing.T, m sharedMember, log string) *exec.Cmd {
	t.Helper()
	spec, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	cmd := exec.Command(os.Args[0], "-test.run=^TestSharedHuntingMember$", "-test.v")
	cmd.Env = append(os.Environ(), memberEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})
	return cmd
}

// readSharedRoot reads every published file of a hunting directory with
// Arrow's Parquet reader (not the writer's code) and counts the rows per
// ReportId.
func readSharedRoot(t *testing.T, root string) map[int64]int {
	t.Helper()
	seen := map[int64]int{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), "_") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".parquet") {
			return nil
		}
		pf, err := file.OpenParquetFile(p, false)
		if err != nil {
			return err
		}
		defer pf.Close()
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
		if err != nil {
			return err
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			return err
		}
		defer tbl.Release()
		tr := array.NewTableReader(tbl, 0)
		defer tr.Release()
		for tr.Next() {
			rec := tr.Record()
			idx := rec.Schema().FieldIndices("ReportId")
			if len(idx) != 1 {
				return fmt.Errorf("%s: no ReportId", p)
			}
			ids := rec.Column(idx[0]).(*array.Int64)
			for i := range ids.Len() {
				seen[ids.Value(i)]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
