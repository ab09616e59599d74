package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/pipeline"
)

// BenchmarkEndToEnd is issue 14's end-to-end figure, side by side in one
// run: a stream of simulated records (three tenants, every table, attack
// stories) is pre-loaded on an embedded broker running in a child process
// (as `stitch broker` would), then
//
//   - copy: a plain exactly-once franz-go copy of the input topic to
//     another topic through the same broker (GroupTransactSession, one
//     commit a second), until every record is copied and committed;
//   - stitch: the pipeline with the default config (as `stitch run
//     --simulate=false` runs it) drains the same stream until every output
//     (hunting Parquet, facts, incidents, changelogs, dead letters) is
//     committed (Pipeline.WaitIdle), start-up included.
//
// It reports records/s of both, their ratio, and the peak RSS and Go heap
// of this process during each (the broker's memory is the child's, not
// counted). STITCH_BENCH_RECORDS sets the stream's length (default
// 300,000); STITCH_BENCH_CONFIG=FILE runs stitch with a YAML config
// instead of the defaults; STITCH_BENCH_PROFILE=DIR writes a CPU profile of
// the stitch drain and a heap profile at its heap's high-water mark into
// DIR (and an execution trace with STITCH_BENCH_TRACE=1);
// STITCH_BENCH_BROKER_DIR=DIR keeps the broker's log in files under DIR
// instead of the broker child's memory (needed past about 1M records on a
// machine with 24 GiB); STITCH_BENCH_TIMELINE=1 prints what each stage committed every second
// (=100ms: every 100 ms, when it changed). It also prints the drain's
// milestones (every stage ready, normalize's first and last commit, every
// output committed): the fixed cost of a drain is what lies outside
// normalize's first and last commit.
//
//	go test ./bench -run XXX -bench EndToEnd -benchtime 1x
//	STITCH_BENCH_RECORDS=3000000 STITCH_BENCH_BROKER_DIR=/var/tmp go test ./bench -run XXX -bench EndToEnd -benchtime 1x -timeout 60m
func BenchmarkEndToEnd(b *testing.B) {
	n := envInt("STITCH_BENCH_RECORDS", 300_000)
	addrs, brokerPid := childBroker(b)
	cfg := pipeline.Default()
	if path := os.Getenv("STITCH_BENCH_CONFIG"); path != "" {
		var err error
		if cfg, err = pipeline.Load(path); err != nil {
			b.Fatal(err)
		}
	}
	cfg.Kafka.Brokers = addrs
	ctx := context.Background()
	loadStart := time.Now()
	bytes := preload(b, cfg, n)
	b.Logf("pre-loaded %d records (%.0f MB) in %s", n, float64(bytes)/1e6, time.Since(loadStart).Round(time.Millisecond))
	b.SetBytes(bytes / int64(n))
	b.ResetTimer()
	for i := range b.N {
		mem := watchMemory("")
		cpu0, bcpu0 := cpuSeconds(os.Getpid()), cpuSeconds(brokerPid)
		copyTook, err := exactlyOnceCopy(ctx, addrs, cfg.Topics.Inputs[0], fmt.Sprintf("bench.copy-%d", i), n)
		if err != nil {
			b.Fatal(err)
		}
		copyRSS, copyHeap := mem.stop()
		cpu1, bcpu1 := cpuSeconds(os.Getpid()), cpuSeconds(brokerPid)

		mem = watchMemory(os.Getenv("STITCH_BENCH_PROFILE"))
		res, err := drainStitch(ctx, cfg, b.TempDir(), n, os.Getenv("STITCH_BENCH_PROFILE"))
		if err != nil {
			b.Fatal(err)
		}
		rss, heap := mem.stop()
		cpu2, bcpu2 := cpuSeconds(os.Getpid()), cpuSeconds(brokerPid)

		copyRate := float64(n) / copyTook.Seconds()
		rate := float64(n) / res.committed.Seconds()
		b.Logf("copy: %s, %.0f records/s, peak RSS %.0f MiB, heap %.0f MiB; CPU %.1f s, broker's %.1f s",
			copyTook.Round(time.Millisecond), copyRate, copyRSS, copyHeap, cpu1-cpu0, bcpu1-bcpu0)
		b.Logf("stitch: every output committed after %s (stopped after %s), %.0f records/s, peak RSS %.0f MiB, heap %.0f MiB; %d rows to Parquet, %d incidents versions, %d dead letters",
			res.committed.Round(time.Millisecond), res.stopped.Round(time.Millisecond), rate, rss, heap,
			res.totals.HuntingTotal(), res.totals.IncidentVersions, res.totals.DeadTotal())
		b.Logf("stitch phases: %s, every output %s, stopped %s; transactions committed: %s",
			res.phases, res.committed.Round(time.Millisecond), res.stopped.Round(time.Millisecond), transactions(res.totals))
		b.Logf("stitch CPU %.1f s, broker's %.1f s; changelog records per input record: window %.3f, timeless %.3f",
			cpu2-cpu1, bcpu2-bcpu1, float64(res.totals.RecordsOut[cfg.Topics.WindowChangelog])/float64(n),
			float64(res.totals.RecordsOut[cfg.Topics.Changelog])/float64(n))
		b.Logf("ratio stitch/copy: %.3f", rate/copyRate)
		b.ReportMetric(copyRate, "copy-records/s")
		b.ReportMetric(rate, "stitch-records/s")
		b.ReportMetric(rate/copyRate, "ratio")
		b.ReportMetric(rss, "stitch-peak-RSS-MiB")
		b.ReportMetric(heap, "stitch-peak-heap-MiB")
		b.ReportMetric(copyRSS, "copy-peak-RSS-MiB")
	}
}

// childBrokerEnv makes the test binary an embedded broker (see TestMain).
const childBrokerEnv = "STITCH_BENCH_BROKER_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childBrokerEnv) != "" {
		os.Exit(serveBroker())
	}
	os.Exit(m.Run())
}

// brokerDirEnv puts the bench broker's log on disk, in a directory of its
// own under the directory it names (removed at the end), instead of in the
// broker child's memory: a 3M-record drain's log (input, the copy and every
// output) is over 13 GB, more than a small machine's memory.
const brokerDirEnv = "STITCH_BENCH_BROKER_DIR"

// brokerProfileEnv names a file for a CPU profile of the bench broker's
// whole life (a benchmark that starts several brokers leaves the last one's).
const brokerProfileEnv = "STITCH_BENCH_BROKER_PROFILE"

// serveBroker runs an embedded broker (in memory, or on disk with
// STITCH_BENCH_BROKER_DIR), prints its addresses and serves until its stdin
// closes (the parent exited or finished).
func serveBroker() int {
	opts := []kafka.BrokerOption{kafka.Listen("127.0.0.1:0"), kafka.DefaultPartitions(int(pipeline.Default().Topics.Partitions))}
	if parent := os.Getenv(brokerDirEnv); parent != "" {
		dir, err := os.MkdirTemp(parent, "bench-broker-*")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench broker's directory:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		// No fsync: the log is this run's alone, as replay's broker's is.
		opts = append(opts, kafka.DataDir(dir), kafka.NoFsync())
	}
	br, err := kafka.StartBroker(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer br.Close()
	if path := os.Getenv(brokerProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench broker's profile:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench broker's profile:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Println(strings.Join(br.Addrs(), ","))
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// childBroker starts this test binary again as a broker, so that the
// broker's memory and CPU are not this process's.
func childBroker(tb testing.TB) ([]string, int) {
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), childBrokerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("broker child: %v", err)
	}
	return strings.Split(strings.TrimSpace(line), ","), cmd.Process.Pid
}

// preload creates the pipeline's topics and produces n simulated records
// (three tenants, a story every 2,000 records) keyed by tenant, as `stitch
// produce` does. It returns the bytes produced.
func preload(tb testing.TB, cfg pipeline.Config, n int) int64 {
	cfg.State.Dir = tb.TempDir()
	p, err := pipeline.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if err := p.EnsureTopics(ctx); err != nil {
		tb.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.DefaultProduceTopic(cfg.Topics.Inputs[0]),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	sim := simulator.New(simulator.Seed(14), simulator.Tenants(3), simulator.EventsPerSecond(2000),
		simulator.AttackEvery(envInt("STITCH_BENCH_ATTACK_EVERY", 2000)))
	var bytes atomic.Int64
	var failed atomic.Value
	for range n {
		k, v := sim.Next(nil)
		cl.Produce(ctx, &kgo.Record{Key: k, Value: v}, func(r *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
			bytes.Add(int64(len(r.Value)))
		})
	}
	if err := cl.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
	if err, _ := failed.Load().(error); err != nil {
		tb.Fatal(err)
	}
	return bytes.Load()
}

// exactlyOnceCopy copies n records of src to dst (created here, with src's
// partitions) with a group transact session committing once a second, and
// returns how long it took until the last record's transaction committed.
func exactlyOnceCopy(ctx context.Context, addrs []string, src, dst string, n int) (time.Duration, error) {
	start := time.Now()
	adm, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return 0, err
	}
	err = kafka.EnsureTopics(ctx, adm, kafka.TopicSpec{Name: dst, Partitions: pipeline.Default().Topics.Partitions})
	adm.Close()
	if err != nil {
		return 0, err
	}
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(addrs...),
		kgo.ConsumerGroup("bench-copy-"+dst),
		kgo.ConsumeTopics(src),
		kgo.TransactionalID("bench-copy-"+dst),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DefaultProduceTopic(dst),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	copied := 0
	for copied < n {
		if err := sess.Begin(); err != nil {
			return 0, err
		}
		deadline := time.Now().Add(time.Second)
		inTx := 0
		var perr atomic.Value
		for time.Now().Before(deadline) && copied+inTx < n {
			pctx, cancel := context.WithDeadline(ctx, deadline)
			fs := sess.PollFetches(pctx)
			cancel()
			fs.EachRecord(func(r *kgo.Record) {
				inTx++
				sess.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value, Partition: r.Partition}, func(_ *kgo.Record, err error) {
					if err != nil {
						perr.Store(err)
					}
				})
			})
		}
		if err := sess.Client().Flush(ctx); err != nil {
			return 0, err
		}
		_, failed := perr.Load().(error)
		ok, err := sess.End(ctx, kgo.TransactionEndTry(!failed))
		if err != nil {
			return 0, err
		}
		if ok {
			copied += inTx
		}
	}
	return time.Since(start), nil
}

type drainResult struct {
	committed, stopped time.Duration
	totals             pipeline.Snapshot
	phases             drainPhases
}

// drainPhases are when a drain reached its milestones, from the start of
// Run: the fixed cost of a drain is ready plus the time from the input's
// last commit to every output's.
type drainPhases struct {
	ready       time.Duration // every stage joined its group and polled
	firstCommit time.Duration // normalize committed its first records
	inputDone   time.Duration // normalize committed the whole input
}

func (d drainPhases) String() string {
	return fmt.Sprintf("every stage ready %s, normalize's first commit %s, its last %s",
		d.ready.Round(time.Millisecond), d.firstCommit.Round(time.Millisecond), d.inputDone.Round(time.Millisecond))
}

// transactions lists the transactions each stage committed.
func transactions(s pipeline.Snapshot) string {
	var parts []string
	for name, st := range s.Stages {
		if st.Transactions > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", name, st.Transactions))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// watchPhases samples the pipeline every 5 ms until ctx is done; the
// function it returns gives the milestones seen so far.
func watchPhases(ctx context.Context, p *pipeline.Pipeline, start time.Time, cfg pipeline.Config, n int) func() drainPhases {
	var mu sync.Mutex
	var ph drainPhases
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now := time.Since(start)
			ready := p.Ready()
			read := p.Totals().Stages["normalize"].RecordsIn[cfg.Topics.Inputs[0]]
			mu.Lock()
			if ph.ready == 0 && ready {
				ph.ready = now
			}
			if ph.firstCommit == 0 && read > 0 {
				ph.firstCommit = now
			}
			if ph.inputDone == 0 && read >= int64(n) {
				ph.inputDone = now
			}
			mu.Unlock()
		}
	}()
	return func() drainPhases {
		mu.Lock()
		defer mu.Unlock()
		return ph
	}
}

// drainStitch runs the pipeline over the pre-loaded input until every
// output is committed, then stops it.
func drainStitch(ctx context.Context, cfg pipeline.Config, dir string, n int, profileDir string) (drainResult, error) {
	var res drainResult
	cfg.State.Dir = filepath.Join(dir, "state")
	cfg.Kafka.Group = "bench-stitch-" + filepath.Base(dir)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if profileDir != "" {
		f, err := os.Create(filepath.Join(profileDir, "stitch-cpu.pprof"))
		if err != nil {
			return res, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return res, err
		}
		defer pprof.StopCPUProfile()
	}
	if profileDir != "" && os.Getenv("STITCH_BENCH_TRACE") != "" {
		f, err := os.Create(filepath.Join(profileDir, "stitch.trace"))
		if err != nil {
			return res, err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return res, err
		}
		defer trace.Stop()
	}
	start := time.Now()
	p, err := pipeline.New(cfg, pipeline.WithLogger(log))
	if err != nil {
		return res, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	idle := make(chan error, 1)
	go func() { idle <- p.WaitIdle(runCtx, 100*time.Millisecond) }()
	phases := watchPhases(runCtx, p, start, cfg, n)
	if v := os.Getenv("STITCH_BENCH_TIMELINE"); v != "" {
		every, err := time.ParseDuration(v)
		if err != nil {
			every = time.Second // "1" and the like
		}
		go timeline(runCtx, p, start, every)
	}
	select {
	case err := <-done:
		return res, fmt.Errorf("pipeline stopped before draining: %v", err)
	case err := <-idle:
		if err != nil {
			return res, err
		}
	case <-time.After(30 * time.Minute):
		return res, errors.New("pipeline did not drain in 30 minutes")
	}
	res.committed = time.Since(start)
	res.phases = phases()
	stop()
	if err := <-done; err != nil {
		return res, err
	}
	res.stopped = time.Since(start)
	res.totals = p.Totals()
	if res.totals.RecordsRead != int64(n) {
		return res, fmt.Errorf("stitch read %d records, want %d", res.totals.RecordsRead, n)
	}
	return res, nil
}

// memWatch samples the Go heap every 50 ms and keeps its high-water mark;
// the peak RSS (VmHWM) is reset when it starts (Linux: clear_refs 5).
type memWatch struct {
	stopc     chan struct{}
	wg        sync.WaitGroup
	peakHeap  uint64
	profileTo string
}

func watchMemory(profileDir string) *memWatch {
	runtime.GC()
	debug.FreeOSMemory()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	w := &memWatch{stopc: make(chan struct{})}
	if profileDir != "" {
		w.profileTo = filepath.Join(profileDir, "stitch-heap.pprof")
	}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var profiled uint64
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stopc:
				return
			case <-t.C:
			}
			metrics.Read(sample)
			v := sample[0].Value.Uint64()
			w.peakHeap = max(w.peakHeap, v)
			// A heap profile near the high-water mark: each time the heap
			// passes the last profiled size by a tenth.
			if w.profileTo != "" && v > profiled+profiled/10 {
				profiled = v
				if f, err := os.Create(w.profileTo); err == nil {
					pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
		}
	}()
	return w
}

// stop returns the peak RSS and the peak Go heap, in MiB.
func (w *memWatch) stop() (rss, heap float64) {
	close(w.stopc)
	w.wg.Wait()
	return peakRSS(), float64(w.peakHeap) / (1 << 20)
}

// cpuSeconds is the user and system CPU time a process has used (Linux; 0
// elsewhere).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis: utime and stime are
	// the 12th and 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // clock ticks (USER_HZ is 100 on Linux)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// timeline prints, every second (or every), what each stage has committed
// so far (STITCH_BENCH_TIMELINE=1, or a duration): where a drain waits.
func timeline(ctx context.Context, p *pipeline.Pipeline, start time.Time, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var last pipeline.Snapshot
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := p.Totals()
		if every < time.Second && reflect.DeepEqual(s, last) {
			continue // a fine timeline prints changes only
		}
		last = s
		var b strings.Builder
		fmt.Fprintf(&b, "%5.1fs", time.Since(start).Seconds())
		for _, st := range p.Topology().Stages {
			var in int64
			for _, n := range s.Stages[st.Name].RecordsIn {
				in += n
			}
			fmt.Fprintf(&b, " %s %d", st.Name, in)
		}
		fmt.Fprintf(&b, " | parquet rows %d", s.HuntingTotal())
		fmt.Fprintln(os.Stderr, b.String())
	}
}
