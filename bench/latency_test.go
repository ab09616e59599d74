package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/pipeline"
)

// BenchmarkLatency is issue 14's latency figure: a running pipeline (default
// config but for kafka.commit_interval and kafka.urgent_commit_interval) is
// fed a steady stream of simulated records (STITCH_BENCH_RATE records/s,
// default 20,000, rendered before the clock starts unless
// STITCH_BENCH_PRERENDER_SECONDS=0: latency_load_test.go) on an embedded
// broker in a child process, and every 200 ms (STITCH_BENCH_ALERT_EVERY) an alert of its own
// (an AlertEvidence row naming a user, then its AlertInfo row, with a fresh
// AlertId). A read-committed
// consumer of the incidents topic notes when each alert first appears in a
// committed incident; the latency is that moment minus the alert's
// produce. Another, of the facts topic, notes when its facts are committed
// there: the first of the two transactional hops (normalize's), reported
// beside the whole. Alerts are counted from 2 s after the first incident
// came out and normalize caught up with the backlog of the start-up (what
// it committed within half a second of what was produced), so that the
// figure is the steady state's, not the time a machine without headroom
// takes to drain the start-up (after 2 minutes it starts anyway, and says
// so).
//
// Each pair of a commit interval of STITCH_BENCH_INTERVALS (default "1s")
// and an urgent commit interval of STITCH_BENCH_URGENT (default "0s,100ms":
// kafka.urgent_commit_interval, 0s = off, the behaviour before it existed)
// runs on a fresh broker for STITCH_BENCH_SECONDS (default 20) of measured
// stream, one after another in one run (STITCH_BENCH_ROUNDS times, default
// 1, alternating, so that a busy minute on a shared machine hurts every
// setting alike), and reports p50/p90/p99/max, whether the pipeline kept up
// (its read records against the produced ones), the CPU of this process
// (pipeline plus load generator) and of the broker per produced record,
// and the transactions the normalize and correlate stages committed per
// second: at a fixed rate, what shorter transactions cost.
// STITCH_BENCH_CONFIG=FILE runs stitch with a YAML config instead of the
// defaults (the two intervals above still override it).
// STITCH_BENCH_PROFILE=DIR writes a CPU profile of each setting's measured
// seconds (latency-<round>-<interval>-<urgent>.pprof) into DIR.
//
//	go test ./bench -run XXX -bench Latency -benchtime 1x -v
func BenchmarkLatency(b *testing.B) {
	rate := envInt("STITCH_BENCH_RATE", 20_000)
	secs := envInt("STITCH_BENCH_SECONDS", 20)
	rounds := envInt("STITCH_BENCH_ROUNDS", 1)
	intervals := durations(b, envString("STITCH_BENCH_INTERVALS", "1s"))
	urgents := durations(b, envString("STITCH_BENCH_URGENT", "0s,100ms"))
	for i := range b.N * rounds {
		for _, iv := range intervals {
			for _, u := range urgents {
				r, err := measureLatency(b, iv, u, rate, time.Duration(secs)*time.Second, fmt.Sprintf("%d-%s-%s", i, iv, u))
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("rate %d/s commit_interval %-6s urgent %-6s: %d alerts, latency p50 %s p90 %s p99 %s max %s; %d missing; produced %d records (%.0f/s), pipeline read %d (%.1f%% behind at the end); CPU per record: stitch+generator %.1f µs, broker %.1f µs; transactions/s normalize %.1f correlate %.1f; first hop (on %s) p50 %s p99 %s",
					rate, iv, u, len(r.lat), r.pct(50), r.pct(90), r.pct(99), r.pct(100), r.missing, r.produced, r.rate, r.read,
					100*float64(r.produced-r.read)/float64(max(r.produced, 1)), r.cpu*1e6/float64(r.produced), r.bcpu*1e6/float64(r.produced),
					r.txns["normalize"], r.txns["correlate"], "facts", percentile(r.hop1, 50), percentile(r.hop1, 99))
				b.Logf("  hops (ms) %s; polls with records:%s; load: %s", hopReport(r.hops), r.polls, r.loadReport())
				b.Logf("  time of the stages' goroutines:%s; waits for a CPU: %s", r.phases, r.sched)
				if r.notCaughtUp {
					b.Logf("  (the pipeline never caught up with the start-up's backlog: measured from 2 minutes on)")
				}
				b.ReportMetric(float64(r.pct(99))/1e6, "p99-ms@"+iv.String()+"/"+u.String())
			}
		}
	}
}

func durations(tb testing.TB, list string) []time.Duration {
	var out []time.Duration
	for _, s := range strings.Split(list, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

type latencyResult struct {
	lat            []time.Duration
	hop1           []time.Duration   // produce to the alert's facts committed (normalize)
	hops           [][]time.Duration // each traced alert's hops (hopNames)
	polls          string            // the traced stages' polls (hopTracer.polls)
	phases         string            // where the traced stages' time went (hopTracer.phases)
	sched          string            // goroutines' waits for a CPU in the measured seconds (schedLatency)
	missing        int
	produced, read int64
	rate           float64
	cpu, bcpu      float64
	txns           map[string]float64 // committed per second of the measured stream, by stage
	notCaughtUp    bool               // measured from 2 minutes on, never having caught up
	rendered, live int                // records rendered ahead, and live once those ran out
}

func (r latencyResult) pct(p int) time.Duration { return percentile(r.lat, p) }

// loadReport says how the telemetry was rendered.
func (r latencyResult) loadReport() string {
	switch {
	case r.rendered == 0:
		return "rendered live in this process (STITCH_BENCH_PRERENDER_SECONDS=0)"
	case r.live > 0:
		return fmt.Sprintf("%d records rendered ahead, then %d live (a start-up past the allowance)", r.rendered, r.live)
	}
	return fmt.Sprintf("rendered ahead (%d records, none live)", r.rendered)
}

// percentile of sorted durations, rounded to the millisecond (0: none).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)].Round(time.Millisecond)
}

func measureLatency(b *testing.B, interval, urgent time.Duration, rate int, measure time.Duration, name string) (latencyResult, error) {
	res := latencyResult{txns: map[string]float64{}}
	// The telemetry of STITCH_BENCH_PRERENDER_SECONDS (default 15: the
	// start-up's allowance) plus the measured seconds, rendered before
	// anything starts (latency_load_test.go); 0 renders it live, in this
	// process, as it is produced (before 2026-12-03). The stream's event
	// time then runs behind the wall clock by the rendering's time.
	var load *renderedLoad
	ahead := 15
	if v, err := strconv.Atoi(os.Getenv("STITCH_BENCH_PRERENDER_SECONDS")); err == nil && v >= 0 {
		ahead = v
	}
	if ahead > 0 {
		var err error
		if load, err = renderLoad(latencySim(time.Now(), rate), (ahead+int(measure.Seconds()))*rate); err != nil {
			return res, err
		}
		defer load.close() // after the producer's Close (deferred later, run first)
	}
	addrs, brokerPid := childBroker(b)
	cfg := pipeline.Default()
	if path := os.Getenv("STITCH_BENCH_CONFIG"); path != "" {
		c, err := pipeline.Load(path)
		if err != nil {
			return res, err
		}
		cfg = c
	}
	cfg.Kafka.Brokers = addrs
	cfg.Kafka.CommitInterval = pipeline.Duration(interval)
	cfg.Kafka.UrgentCommit = pipeline.Duration(urgent)
	dir := b.TempDir()
	cfg.State.Dir = filepath.Join(dir, "state")
	cfg.Kafka.Group = "bench-latency-" + strings.NewReplacer(".", "", "/", "").Replace(name)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := pipeline.New(cfg, pipeline.WithLogger(log))
	if err != nil {
		return res, err
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := p.EnsureTopics(ctx); err != nil {
		return res, err
	}

	// The incidents reader: first committed appearance of each alert id.
	var mu sync.Mutex
	produced := map[string]time.Time{}
	seen := map[string]time.Duration{}
	seenAt := map[string]time.Time{}
	first := make(chan struct{})
	var firstOnce sync.Once
	cons, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(cfg.Topics.Incidents),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return res, err
	}
	defer cons.Close()
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		var inc struct {
			Alerts []struct {
				ID string `json:"id"`
			} `json:"alerts"`
		}
		for ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				inc.Alerts = inc.Alerts[:0]
				if json.Unmarshal(r.Value, &inc) != nil {
					return
				}
				mu.Lock()
				for _, a := range inc.Alerts {
					t0, ok := produced[a.ID]
					if _, done := seen[a.ID]; ok && !done {
						seen[a.ID] = now.Sub(t0)
						seenAt[a.ID] = now
						firstOnce.Do(func() { close(first) })
					}
				}
				mu.Unlock()
			})
		}
	}()

	// The facts reader: first committed appearance of each probe alert on
	// the facts topic, the end of the first hop (normalize's commit).
	hop1 := map[string]time.Duration{}
	fcons, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(cfg.Topics.Facts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return res, err
	}
	defer fcons.Close()
	readers.Add(1)
	go func() {
		defer readers.Done()
		probe := []byte("lat") // the probe alerts' ids (below)
		for ctx.Err() == nil {
			fs := fcons.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				if !bytes.Contains(r.Value, probe) {
					return
				}
				f, err := correlate.UnmarshalFacts(r.Value)
				if err != nil {
					return
				}
				mu.Lock()
				for _, a := range f.Alerts {
					t0, ok := produced[a.ID]
					if _, done := hop1[a.ID]; ok && !done {
						hop1[a.ID] = now.Sub(t0)
					}
				}
				mu.Unlock()
			})
		}
	}()

	tracer := newHopTracer(strings.NewReplacer(".", "", "/", "").Replace(name))
	pipeline.SetStageTrace(tracer.event)
	defer pipeline.SetStageTrace(nil)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	// The load: simulated records at rate, stream time = wall time, in
	// slices every 10 ms; an alert every alertEvery.
	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(cfg.Topics.Inputs[0]),
		kgo.ProducerLinger(2*time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return res, err
	}
	defer prod.Close()
	start := time.Now()
	if load == nil { // rendered live, as it is produced
		if load, err = renderLoad(latencySim(start, rate), 0); err != nil {
			return res, err
		}
	}
	tenantKey, _ := load.record()
	tenant := string(tenantKey)
	var countFrom time.Time // alerts produced from then on are measured
	var measureFrom time.Time
	sawFirst := false
	var measured []string
	var cpu0, bcpu0 float64
	var sched0 schedLatency
	var produced0, read0 int64
	var txns0 pipeline.Snapshot
	var nrec int64
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	nextAlert := start
	alertEvery := durations(b, envString("STITCH_BENCH_ALERT_EVERY", "200ms"))[0]
	alertN := 0
	var end time.Time
	for {
		var now time.Time
		select {
		case err := <-done:
			return res, fmt.Errorf("pipeline stopped: %v", err)
		case now = <-tick.C:
		}
		if countFrom.IsZero() {
			select {
			case <-first:
				sawFirst = true
			default:
			}
			// Steady state: the first incident is out and normalize's
			// commits caught up with the start-up's backlog (what it
			// committed is within half a second of what was produced),
			// else a machine without headroom measures how long the
			// backlog takes to drain. After 2 minutes it starts anyway
			// and says so.
			caughtUp := nrec-p.Totals().RecordsRead <= int64(rate)/2
			late := now.Sub(start) > 2*time.Minute
			if sawFirst && (caughtUp || late) {
				res.notCaughtUp = !caughtUp
				countFrom = now.Add(2 * time.Second)
			} else if late && !sawFirst {
				return res, fmt.Errorf("no incident in 2 minutes")
			}
		}
		if !countFrom.IsZero() && cpu0 == 0 && !now.Before(countFrom) {
			if dir := os.Getenv("STITCH_BENCH_PROFILE"); dir != "" {
				f, err := os.Create(filepath.Join(dir, "latency-"+name+".pprof"))
				if err != nil {
					return res, err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return res, err
				}
				defer pprof.StopCPUProfile()
			}
			cpu0, bcpu0 = cpuSeconds(os.Getpid()), cpuSeconds(brokerPid)
			sched0 = readSchedLatency()
			txns0 = p.Totals()
			produced0, read0 = nrec, txns0.RecordsRead
			end = now.Add(measure) // from when it starts: a slice may come late
			measureFrom = now
		}
		if !end.IsZero() && now.After(end) {
			break
		}
		// Records up to each alert's due time, then the alert (one per
		// 200 ms even when a slice comes late), then records up to now.
		for !now.Before(nextAlert) {
			for want := int64(nextAlert.Sub(start).Seconds() * float64(rate)); nrec < want; nrec++ {
				k, v := load.record()
				prod.Produce(ctx, &kgo.Record{Key: k, Value: v}, nil)
			}
			nextAlert = nextAlert.Add(alertEvery)
			alertN++
			id := fmt.Sprintf("lat%s-%d", strings.NewReplacer(".", "", "/", "").Replace(name), alertN)
			t0 := time.Now()
			ev, info := latencyAlert(tenant, id, alertN, t0)
			mu.Lock()
			produced[id] = t0
			mu.Unlock()
			prod.Produce(ctx, &kgo.Record{Key: tenantKey, Value: ev}, nil)
			prod.Produce(ctx, &kgo.Record{Key: tenantKey, Value: info}, nil)
			nrec += 2
			if !countFrom.IsZero() && !t0.Before(countFrom) {
				measured = append(measured, id)
			}
		}
		for want := int64(time.Since(start).Seconds() * float64(rate)); nrec < want; nrec++ {
			k, v := load.record()
			prod.Produce(ctx, &kgo.Record{Key: k, Value: v}, nil)
		}
	}
	took := time.Since(measureFrom)
	res.rendered, res.live = len(load.offs)/2, load.live
	res.cpu, res.bcpu = cpuSeconds(os.Getpid())-cpu0, cpuSeconds(brokerPid)-bcpu0
	res.sched = readSchedLatency().since(sched0)
	pprof.StopCPUProfile() // the measured seconds only (no-op without STITCH_BENCH_PROFILE)
	res.produced = nrec - produced0
	txns1 := p.Totals()
	res.read = txns1.RecordsRead - read0
	for name, st := range txns1.Stages {
		res.txns[name] = float64(st.Transactions-txns0.Stages[name].Transactions) / took.Seconds()
	}
	res.rate = float64(res.produced) / took.Seconds()
	res.polls = tracer.polls(time.Since(start).Seconds())
	res.phases = tracer.phases()
	// Let the last alerts' incidents arrive (the stream has stopped).
	wait := time.Now().Add(10*interval + 5*time.Second)
	for len(measured) > 0 && time.Now().Before(wait) {
		mu.Lock()
		_, ok := seen[measured[len(measured)-1]]
		mu.Unlock()
		if ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done
	readers.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, id := range measured {
		if d, ok := hop1[id]; ok {
			res.hop1 = append(res.hop1, d)
		}
		if d, ok := seen[id]; ok {
			res.lat = append(res.lat, d)
			if hs := tracer.hops(id, seenAt[id].Add(-d), seenAt[id]); hs != nil {
				res.hops = append(res.hops, hs)
			}
		} else {
			res.missing++
		}
	}
	slices.Sort(res.lat)
	slices.Sort(res.hop1)
	return res, nil
}

// latencySim is the benchmark's load: three tenants at rate records/s of
// stream time from start, an attack story every STITCH_BENCH_ATTACK_EVERY
// records (default 2,000).
func latencySim(start time.Time, rate int) *simulator.Simulator {
	return simulator.New(simulator.Seed(14), simulator.Tenants(3), simulator.Start(start),
		simulator.EventsPerSecond(float64(rate)), simulator.AttackEvery(envInt("STITCH_BENCH_ATTACK_EVERY", 2000)))
}

// latencyAlert is an AlertEvidence row naming a user of its own and the
// AlertInfo row of the same alert, as the streaming API sends them.
func latencyAlert(tenant, id string, n int, now time.Time) (evidence, info []byte) {
	ts := now.UTC().Format("2006-01-02T15:04:05.0000000Z")
	evidence = fmt.Appendf(nil, `{"time":%q,"tenantId":%q,"operationName":"Publish","category":"AdvancedHunting-AlertEvidence","properties":{"Timestamp":%q,"AlertId":%q,"Title":"Latency probe","Categories":"[\"CredentialAccess\"]","AttackTechniques":"[]","ServiceSource":"Microsoft Defender for Identity","DetectionSource":"Microsoft Defender for Identity","EntityType":"User","EvidenceRole":"Impacted","AccountSid":"S-1-5-21-1-2-3-%d","Severity":"Medium"}}`,
		ts, tenant, ts, id, 100000+n)
	info = fmt.Appendf(nil, `{"time":%q,"tenantId":%q,"operationName":"Publish","category":"AdvancedHunting-AlertInfo","properties":{"Timestamp":%q,"AlertId":%q,"Title":"Latency probe","Category":"CredentialAccess","Severity":"Medium","ServiceSource":"Microsoft Defender for Identity","DetectionSource":"Microsoft Defender for Identity","AttackTechniques":"[]"}}`,
		ts, tenant, ts, id)
	return evidence, info
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
