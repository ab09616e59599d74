package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/operators/normalize"
	"github.com/stitch-xdr/stitch/pipeline"
	"github.com/stitch-xdr/stitch/state"
)

var long = flag.Bool("stitch.long", os.Getenv("STITCH_E2E_LONG") != "", "run the long forms (the scale test); or set STITCH_E2E_LONG=1")

// scale is one run of planted stories through normalize, Extract and the
// correlator as stage 2 runs it (transactions, a tick before each commit).
type scale struct {
	stories, records int // planted; simulator records
	pollRecords      int // records normalized between drains (a poll)
	commitFacts      int // facts per transaction
}

type scaleResult struct {
	records, facts, alerts, incidents int
	complete                          int // stories whose rows were all produced
	split, shared                     []string
	elapsed                           time.Duration
	invariants                        error
}

// scaleFromEnv is the scale of the issue (3,000 stories over three tenants,
// 3M records over about two weeks of stream time) unless
// STITCH_SCALE_STORIES says how many stories (records scale with them).
func scaleFromEnv() scale {
	s := scale{stories: 3000, pollRecords: 10_000, commitFacts: 500}
	if v, err := strconv.Atoi(os.Getenv("STITCH_SCALE_STORIES")); err == nil && v > 0 {
		s.stories = v
	}
	s.records = s.stories * 1000
	return s
}

// simulator is the scale's world and stream.
func (sc scale) simulator() *simulator.Simulator {
	// Each story takes a fresh victim and a device no story used (an
	// identity story's brute-force source may be another user's
	// workstation), so the world has twice the users stories need, and a
	// workstation each: no two stories share an entity by running out.
	users := 2*(sc.stories/3) + 100
	return simulator.New(simulator.Seed(17), simulator.Tenants(3),
		simulator.Users(users), simulator.Devices(users+users/20+60),
		// About two weeks of stream time whatever the scale.
		simulator.EventsPerSecond(float64(sc.records)/(14*86400)),
		simulator.AttackEvery(sc.records/sc.stories))
}

func (sc scale) run(tb testing.TB) scaleResult {
	tb.Helper()
	sim := sc.simulator()
	norm := normalize.New()
	st, err := state.Open(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	const window = 24 * time.Hour
	c, err := correlate.New(st, correlate.WithWindow(window))
	if err != nil {
		tb.Fatal(err)
	}
	res := scaleResult{records: sc.records}
	where := map[string]string{} // tenant/alert -> live incident
	live := map[string]bool{}
	reasons := map[string][]correlate.CorrelationReason{}
	keep := func(incs []correlate.Incident) {
		for _, inc := range incs {
			live[inc.ID] = inc.Status != correlate.StatusRedirected
			reasons[inc.ID] = inc.CorrelationReasons
			for _, a := range inc.Alerts {
				where[inc.TenantID+"/"+a.ID] = inc.ID
			}
		}
	}
	var telemetry, alerts []*correlate.Facts
	emit := func(b normalize.Batch) {
		f := correlate.Extract(b)
		if f != nil && (b.Table == "AlertInfo" || b.Table == "AlertEvidence") {
			alerts = append(alerts, f)
		} else if f != nil {
			telemetry = append(telemetry, f)
		}
		b.Release()
	}
	inTx := 0
	apply := func(final bool) {
		for _, f := range append(telemetry, alerts...) { // alert facts after the telemetry, as stage 1 sends them
			if inTx == 0 {
				if err := c.Begin(); err != nil {
					tb.Fatal(err)
				}
			}
			incs, err := c.ApplyOffset(0, f, "facts", int64(res.facts))
			if err != nil {
				tb.Fatal(err)
			}
			keep(incs)
			res.facts++
			if inTx++; inTx == sc.commitFacts {
				commit(tb, c, keep)
				inTx = 0
			}
		}
		telemetry, alerts = telemetry[:0], alerts[:0]
		if final && inTx > 0 {
			commit(tb, c, keep)
		}
	}
	start := time.Now()
	var buf []byte
	for i := range sc.records {
		_, v := sim.Next(buf[:0])
		norm.Add(normalize.Input{Topic: "signals", Offset: int64(i), Value: append([]byte(nil), v...)}, emit,
			func(d normalize.DeadLetter) { tb.Fatalf("simulator record dead-lettered: %s", d.Reason) })
		buf = v
		if i%sc.pollRecords == sc.pollRecords-1 {
			norm.Flush(emit)
			apply(false)
		}
	}
	norm.Flush(emit)
	apply(true)
	res.elapsed = time.Since(start)
	res.invariants = correlate.CheckInvariants(st, window)
	res.alerts = int(c.Stats().Alerts)
	for _, ok := range live {
		if ok {
			res.incidents++
		}
	}
	res.judge(sim.Stories(), where, reasons)
	return res
}

// judge counts the complete stories and says which are split over
// incidents and which share one; where is tenant/alert -> live incident.
func (res *scaleResult) judge(stories []simulator.Story, where map[string]string, reasons map[string][]correlate.CorrelationReason) {
	owner := map[string]int{}
	for i, s := range stories {
		if !s.Complete {
			continue
		}
		res.complete++
		incs := map[string]bool{}
		for _, a := range s.SameIncident {
			incs[where[s.Tenant+"/"+a]] = true
		}
		if len(incs) != 1 {
			res.split = append(res.split, fmt.Sprintf("story %d (%s, %s, %s) in %d incidents", i, s.Kind, s.Tenant, s.Start.Format(time.RFC3339), len(incs)))
		}
		for id := range incs {
			if o, ok := owner[id]; ok && o != i {
				res.shared = append(res.shared, fmt.Sprintf("stories %d (%s) and %d (%s, %s, %s) share incident %s (reasons %v)",
					o, stories[o].Start.Format(time.RFC3339), i, s.Kind, s.Tenant, s.Start.Format(time.RFC3339), id, reasons[id]))
			}
			owner[id] = i
		}
	}
}

// replay is run through pipeline.Replay, as `stitch replay` runs a file:
// the records produced to the embedded broker keyed by tenant, normalized,
// their facts repartitioned by tenant over three partitions (each with its
// own watermark) and correlated in Kafka transactions at the default commit
// intervals and poll sizes; hunting is off (it does not feed correlation).
// The stories are judged on incidents.jsonl, the invariants on the
// correlate store the replay leaves.
func (sc scale) replay(tb testing.TB) scaleResult {
	tb.Helper()
	dir := tb.TempDir()
	in := filepath.Join(dir, "stories.jsonl")
	sim := sc.simulator()
	f, err := os.Create(in)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var buf []byte
	for range sc.records {
		_, buf = sim.Next(buf[:0])
		w.Write(buf)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	cfg := pipeline.Default()
	cfg.Hunting.Enabled = false
	cfg.Topics.Partitions = 3
	cfg.State.Dir = filepath.Join(dir, "state")
	out := filepath.Join(dir, "out")
	start := time.Now()
	sum, err := pipeline.Replay(context.Background(), cfg, pipeline.ReplayOptions{Inputs: []string{in}, OutDir: out, Timeout: time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	res := scaleResult{records: int(sum.RecordsRead), elapsed: time.Since(start)}
	if len(sum.DeadLettered) > 0 {
		tb.Fatalf("simulator records dead-lettered: %v", sum.DeadLettered)
	}
	latest := map[string]correlate.Incident{}
	inc, err := os.Open(filepath.Join(out, "incidents.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer inc.Close()
	lines := bufio.NewScanner(inc)
	lines.Buffer(nil, 64<<20)
	for lines.Scan() {
		var i correlate.Incident
		if err := json.Unmarshal(lines.Bytes(), &i); err != nil {
			tb.Fatal(err)
		}
		if i.Version > latest[i.ID].Version {
			latest[i.ID] = i
		}
	}
	if err := lines.Err(); err != nil {
		tb.Fatal(err)
	}
	where := map[string]string{}
	reasons := map[string][]correlate.CorrelationReason{}
	for id, i := range latest {
		if i.Status == correlate.StatusRedirected {
			continue
		}
		res.incidents++
		reasons[id] = i.CorrelationReasons
		for _, a := range i.Alerts {
			res.alerts++
			where[i.TenantID+"/"+a.ID] = id
		}
	}
	res.judge(sim.Stories(), where, reasons)
	st, err := state.Open(filepath.Join(cfg.State.Dir, "correlate"), state.WithReadOnly())
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	res.invariants = correlate.CheckInvariants(st, cfg.Correlate.Window.D())
	return res
}

func commit(tb testing.TB, c *correlate.Correlator, keep func([]correlate.Incident)) {
	incs, err := c.Tick(time.Time{})
	if err != nil {
		tb.Fatal(err)
	}
	keep(incs)
	if err := c.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// peakRSS is the process's high-water resident set (VmHWM), in MiB; 0 where
// /proc is not there.
func peakRSS() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// TestScaleStories (long: -stitch.long or STITCH_E2E_LONG=1) plants 3,000
// attack stories over three tenants in 3M simulator records (about two weeks
// of stream time; STITCH_SCALE_STORIES scales it) and wants every complete
// story in one incident, no two stories in one, and the correlator's
// invariants kept.
func TestScaleStories(t *testing.T) {
	if !*long {
		t.Skip("-stitch.long (or STITCH_E2E_LONG=1): 3M records through normalize and the correlator")
	}
	scaleFromEnv().run(t).check(t)
}

// TestScaleStoriesReplay (long) is TestScaleStories through pipeline.Replay
// (three facts partitions, Kafka transactions at the default intervals):
// where polls, batches and transactions end, and one partition's watermark
// running ahead of another's, must not split a story or join two.
func TestScaleStoriesReplay(t *testing.T) {
	if !*long {
		t.Skip("-stitch.long (or STITCH_E2E_LONG=1): 3M records replayed through the pipeline")
	}
	scaleFromEnv().replay(t).check(t)
}

func (res scaleResult) check(t *testing.T) {
	t.Helper()
	t.Logf("%d records, %d facts, %d alerts, %d incidents, %d complete stories in %s; peak RSS %.0f MiB",
		res.records, res.facts, res.alerts, res.incidents, res.complete, res.elapsed.Round(time.Second), peakRSS())
	if res.complete < scaleFromEnv().stories*9/10 {
		t.Errorf("only %d stories complete", res.complete)
	}
	for _, s := range append(res.split, res.shared...)[:min(20, len(res.split)+len(res.shared))] {
		t.Error(s)
	}
	if res.invariants != nil {
		t.Errorf("invariants: %v", res.invariants)
	}
}

// BenchmarkScaleStories is TestScaleStories as a benchmark: run time, input
// records per second and the process's peak RSS (run it with -benchtime 1x).
func BenchmarkScaleStories(b *testing.B) {
	sc := scaleFromEnv()
	for b.Loop() {
		res := sc.run(b)
		if bad := append(res.split, res.shared...); len(bad) > 0 || res.invariants != nil {
			b.Errorf("%d split, %d shared stories (%s); invariants: %v", len(res.split), len(res.shared),
				strings.Join(bad[:min(5, len(bad))], "; "), res.invariants)
		}
		b.ReportMetric(res.elapsed.Seconds(), "s/run")
		b.ReportMetric(float64(res.records)/res.elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(res.complete), "stories")
		b.ReportMetric(float64(res.alerts), "alerts")
		b.ReportMetric(float64(res.incidents), "incidents")
	}
	b.ReportMetric(peakRSS(), "peak-RSS-MiB")
}
