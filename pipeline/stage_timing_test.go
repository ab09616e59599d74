package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// When a transaction ends (docs/EXACTLY-ONCE.md): these tests run the
// pipeline on an embedded broker with a long commit interval, so that
// what ends a transaction early shows as seconds.

// An alert in a stream that never pauses reaches incidents within
// kafka.urgent_commit_interval of each of its two hops, not the commit
// interval; the telemetry around it still commits once an interval.
func TestAlertEndsItsTransactionsEarly(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, addrs, cfg := countingSetup(t, 2)
	cfg.Correlate.Enabled = true
	cfg.State.Dir = t.TempDir()
	const interval = 6 * time.Second
	cfg.Kafka.CommitInterval = Duration(interval)
	cfg.Kafka.UrgentCommit = Duration(100 * time.Millisecond)
	p := newTestPipeline(t, ctx, cfg, addrs, "urgent-test")
	p.start(ctx)

	prod, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic(cfg.Topics.Inputs[0]), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const tenant = "tenant-urgent"
	// Telemetry every 10 ms: the input never pauses for the 50 ms that
	// ends a transaction early, so only the interval or an alert does.
	flowCtx, stopFlow := context.WithCancel(ctx)
	var flowing sync.WaitGroup
	flowing.Add(1)
	go func() {
		defer flowing.Done()
		for i := 0; flowCtx.Err() == nil; i++ {
			prod.Produce(flowCtx, &kgo.Record{Key: []byte(tenant), Value: telemetryRecord(tenant, i, time.Now())}, nil)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	defer func() { stopFlow(); flowing.Wait() }()

	normalizeTxns := func() int64 { return p.Totals().Stages["normalize"].Transactions }
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		for end := time.Now().Add(limit); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: not within %s", what, limit)
			}
		}
	}
	// Steady state: normalize committed twice (the first transaction may
	// have begun before the flow).
	waitFor("normalize's first commits", 3*interval, func() bool { return normalizeTxns() >= 2 })

	// Telemetry alone commits about once an interval (a pause of the
	// producer on a loaded machine may end one early, not thirty).
	before := normalizeTxns()
	time.Sleep(interval / 2)
	if n := normalizeTxns() - before; n > 5 {
		t.Fatalf("telemetry alone: normalize committed %d transactions in half a commit interval", n)
	}

	// An alert produced just after a commit would wait a whole interval at
	// normalize without urgency.
	before = normalizeTxns()
	waitFor("a normalize commit", 2*interval, func() bool { return normalizeTxns() > before })
	const alertID = "urgent-test-alert"
	sent := time.Now()
	evidence, info := testAlert(tenant, alertID, sent)
	prod.Produce(ctx, &kgo.Record{Key: []byte(tenant), Value: evidence}, nil)
	prod.Produce(ctx, &kgo.Record{Key: []byte(tenant), Value: info}, nil)

	cons, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(cfg.Topics.Incidents),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	limit := interval / 2 // two hops of the interval would be up to 2 x 6 s
	pctx, pcancel := context.WithTimeout(ctx, limit)
	defer pcancel()
	var took time.Duration
	for took == 0 {
		fs := cons.PollFetches(pctx)
		if pctx.Err() != nil {
			t.Fatalf("the alert's incident is not on %s %s after its produce (commit interval %s, urgent %s)",
				cfg.Topics.Incidents, limit, interval, cfg.Kafka.UrgentCommit)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var inc struct {
				Alerts []struct {
					ID string `json:"id"`
				} `json:"alerts"`
			}
			if json.Unmarshal(r.Value, &inc) != nil {
				return
			}
			for _, a := range inc.Alerts {
				if a.ID == alertID && took == 0 {
					took = time.Since(sent)
				}
			}
		})
	}
	t.Logf("alert to incident: %s (commit interval %s)", took.Round(time.Millisecond), interval)
}

// A stage with no input ends no transaction: an empty one stays open
// into the next interval (ending it is a commit for nothing, and franz-go
// holds a commit without offsets for 500 ms), and input that arrives after
// a pause is processed and committed as usual.
func TestIdleStageCommitsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, addrs, cfg := countingSetup(t, 2)
	cfg.State.Dir = t.TempDir()
	p := newTestPipeline(t, ctx, cfg, addrs, "idle-test", WithStage(countStage()))
	p.start(ctx)
	for !p.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(10 * cfg.Kafka.CommitInterval.D())
	for name, st := range p.Totals().Stages {
		if st.Transactions != 0 {
			t.Errorf("stage %s committed %d transactions with no input", name, st.Transactions)
		}
	}
	p.produce(ctx, &kgo.Record{Topic: "count.in", Key: []byte("t-a"), Value: []byte("x")})
	if err := p.WaitIdle(ctx, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if err := p.halt(); err != nil {
		t.Fatal(err)
	}
	// Stopping ends no empty transaction either (each would hold the stop
	// for 500 ms).
	if d := time.Since(stopped); d > 2*time.Second {
		t.Errorf("stopping an idle pipeline took %s", d)
	}
	st := p.Totals().Stages["count"]
	if st.RecordsIn["count.in"] != 1 || st.Transactions != 1 {
		t.Fatalf("count stage after one record: %+v, want it read and one transaction committed", st)
	}
}

// A stage with a store restores a newly assigned partition as soon as it
// is assigned: it ends the transaction the assignment waits for at once,
// rather than at the commit interval (the start-up of every stateful stage
// paid one to two intervals before).
func TestRestoreDoesNotWaitForTheInterval(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, addrs, cfg := countingSetup(t, 2)
	cfg.State.Dir = filepath.Join(t.TempDir(), "state")
	const interval = 8 * time.Second
	cfg.Kafka.CommitInterval = Duration(interval)
	p := newTestPipeline(t, ctx, cfg, addrs, "restore-wait-test", WithStage(countStage()))
	for _, tn := range []string{"t-a", "t-b", "t-c"} {
		p.produce(ctx, &kgo.Record{Topic: "count.in", Key: []byte(tn), Value: []byte("x")})
	}
	start := time.Now()
	p.start(ctx)
	// Three records, then a pause: once read, the transaction ends after
	// 50 ms of quiet. What is left is the wait for the assignment's restore.
	for p.Totals().Stages["count"].RecordsIn["count.in"] < 3 {
		if time.Since(start) > interval {
			t.Fatalf("the count stage committed nothing in a commit interval (%s) after its start", interval)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("first commit of the stateful stage %s after the start", time.Since(start).Round(time.Millisecond))
}

// The urgency of a transaction holds while the input is less than a poll
// behind: lag counts what the last fetches left, markers aside.
func TestInputLag(t *testing.T) {
	fetch := func(p int32, last, end int64) kgo.Fetches {
		return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{{
			Partition: p, HighWatermark: end, LastStableOffset: end, Records: []*kgo.Record{{Offset: last}},
		}}}}}}
	}
	var in inputPosition
	if in.lag() != 0 {
		t.Fatal("nothing read yet: a lag")
	}
	in.observe(fetch(0, 98, 100)) // the last record, then a marker
	in.observe(fetch(1, 10, 500))
	if got := in.lag(); got != 488 {
		t.Fatalf("lag %d, want 488 (489 left on partition 1, less its marker)", got)
	}
	in.observe(fetch(1, 498, 500))
	if got := in.lag(); got != 0 {
		t.Fatalf("caught up: lag %d", got)
	}
}

// telemetryRecord is a DeviceProcessEvents record of the streaming API.
func telemetryRecord(tenant string, i int, now time.Time) []byte {
	ts := now.UTC().Format("2006-01-02T15:04:05.0000000Z")
	return fmt.Appendf(nil, `{"time":%q,"tenantId":%q,"operationName":"Publish","category":"AdvancedHunting-DeviceProcessEvents","properties":{"Timestamp":%q,"DeviceId":"dev-%d","DeviceName":"host-%d","ActionType":"ProcessCreated","FileName":"cmd.exe","ProcessCommandLine":"cmd /c echo %d","AccountName":"user%d"}}`,
		ts, tenant, ts, i%5, i%5, i, i%7)
}

// testAlert is an AlertEvidence row naming a user and the AlertInfo row of
// the same alert.
func testAlert(tenant, id string, now time.Time) (evidence, info []byte) {
	ts := now.UTC().Format("2006-01-02T15:04:05.0000000Z")
	evidence = fmt.Appendf(nil, `{"time":%q,"tenantId":%q,"operationName":"Publish","category":"AdvancedHunting-AlertEvidence","properties":{"Timestamp":%q,"AlertId":%q,"Title":"Urgent test","Categories":"[\"CredentialAccess\"]","AttackTechniques":"[]","ServiceSource":"Microsoft Defender for Identity","DetectionSource":"Microsoft Defender for Identity","EntityType":"User","EvidenceRole":"Impacted","AccountSid":"S-1-5-21-1-2-3-4242","Severity":"Medium"}}`,
		ts, tenant, ts, id)
	info = fmt.Appendf(nil, `{"time":%q,"tenantId":%q,"operationName":"Publish","category":"AdvancedHunting-AlertInfo","properties":{"Timestamp":%q,"AlertId":%q,"Title":"Urgent test","Category":"CredentialAccess","Severity":"Medium","ServiceSource":"Microsoft Defender for Identity","DetectionSource":"Microsoft Defender for Identity","AttackTechniques":"[]"}}`,
		ts, tenant, ts, id)
	return evidence, info
}
