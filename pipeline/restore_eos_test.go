package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// eosFacts are n facts records for three tenants whose alerts chain through
// shared devices and users (so incidents grow and merge), a minute apart.
func eosFacts(n int) []*correlate.Facts {
	base := time.Date(2024, 6, 3, 8, 0, 0, 0, time.UTC)
	var out []*correlate.Facts
	for i := range n {
		at := base.Add(time.Duration(i) * time.Minute)
		tenant := fmt.Sprintf("tenant-%d", i%3)
		id := fmt.Sprintf("da-%d", i)
		// Telemetry saw two addresses: each batch names a few more
		// devices (several observers of one entity per transaction: one
		// grouped changelog record), so one of them becomes prevalent
		// midway; alerts name them too, so prevalence decides links.
		ip := fmt.Sprintf("ip:198.51.100.%d", i%2)
		var observers []string
		for j := range 3 {
			observers = append(observers, fmt.Sprintf("device:name:seen-%d", (i*3+j)%(40+40*(i%2))))
		}
		out = append(out, &correlate.Facts{Tenant: tenant, MaxTime: at,
			Alerts: []correlate.AlertFact{{ID: id, Time: at, Title: "Suspicious process", Severity: "Medium",
				Category: "Execution", ServiceSource: "Microsoft Defender for Endpoint", DetectionSource: "EDR"}},
			Evidence: []correlate.EvidenceFact{{AlertID: id, Time: at,
				Entities: []string{fmt.Sprintf("device:name:host-%d", i%7), fmt.Sprintf("user:upn:u%d@contoso.com", i%5), ip},
				Evidence: correlate.Evidence{ODataType: correlate.GraphEvidenceType("Machine"), CreatedDateTime: at, Roles: []string{"compromised"}}}},
			Sightings: []correlate.Sighting{{Entity: ip, Bucket: state.Bucket(at, correlate.PrevalenceBucket), Observers: observers}},
		})
	}
	return out
}

type eosRecord struct {
	partition int32
	offset    int64
	facts     *correlate.Facts
}

func newTestCorrelator(t *testing.T, opts ...correlate.Option) *correlate.Correlator {
	t.Helper()
	st, err := state.Open(t.TempDir(), state.WithCacheSize(1<<20), state.WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := correlate.New(st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func applyEOS(t *testing.T, c *correlate.Correlator, recs []eosRecord) []string {
	t.Helper()
	var out []string
	for _, r := range recs {
		if r.facts == nil { // not facts: consumed and dead-lettered
			if err := c.Skip("facts", r.partition, r.offset); err != nil {
				t.Fatal(err)
			}
			continue
		}
		incs, err := c.ApplyOffset(r.partition, r.facts, "facts", r.offset)
		out = appendIncidents(t, out, incs, err)
	}
	return out
}

func appendIncidents(t *testing.T, out []string, incs []correlate.Incident, err error) []string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	for _, inc := range incs {
		b, _ := json.Marshal(inc)
		out = append(out, string(b))
	}
	return out
}

// applyTick is applyEOS, then a tick (idle close), with its outputs, in one
// transaction of the correlator (its one commit path).
func applyTick(t *testing.T, c *correlate.Correlator, recs []eosRecord) []string {
	t.Helper()
	if err := c.Begin(); err != nil {
		t.Fatal(err)
	}
	out := applyEOS(t, c, recs)
	incs, err := c.Tick(time.Time{})
	out = appendIncidents(t, out, incs, err)
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	return out
}

// eosOwner runs a correlator as the correlate stage does: transactions of
// facts whose state changes go to the changelogs inside a Kafka transaction,
// and into the store only after it committed.
type eosOwner struct {
	t         *testing.T
	cl        *kgo.Client // transactional, manual partitioner
	changelog *changelogWriter
	c         *correlate.Correlator
}

// txn processes recs in one transaction. abort aborts the Kafka
// transaction; crash commits it but never the store (a crash between the
// two commits).
func (o *eosOwner) txn(ctx context.Context, recs []eosRecord, abort, crash bool) {
	t := o.t
	if err := o.c.Begin(); err != nil {
		t.Fatal(err)
	}
	applyEOS(t, o.c, recs)
	if _, err := o.c.Tick(time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := o.cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	_, err := o.changelog.emit(correlatorStore{o.c}, 2, func(r *kgo.Record) {
		res, err := o.cl.ProduceSync(ctx, r).First()
		if err != nil {
			t.Fatal(err)
		}
		o.changelog.produced(res)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cl.EndTransaction(ctx, kgo.TransactionEndTry(!abort)); err != nil {
		t.Fatal(err)
	}
	pos := o.changelog.positions()
	if abort || crash {
		o.c.Abort()
		return
	}
	if err := o.c.CommitAt(pos); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreFromChangelogs: stores that are empty, behind (restored once
// before and missing later transactions), or in step are brought to the
// committed state from the changelogs alone, without producing anything;
// an aborted transaction's changes are not applied; and what follows gives
// exactly the outputs of the process that built the state.
func TestRestoreFromChangelogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := kafka.StartBroker(kafka.DefaultPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	topics := TopicsConfig{Facts: "facts", Changelog: "cl", WindowChangelog: "wcl"}
	for _, tp := range []string{"facts", "cl", "wcl", "cl-empty", "wcl-empty"} {
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, tp); err != nil {
			t.Fatal(err)
		}
	}
	// Facts records as the facts topic holds them: a tenant's partition by
	// the producer's partitioner, offsets counting up per partition; one is
	// not facts (dead-lettered when first consumed).
	// Short windows, and a jump of 26 hours at record 50 (idle close works in day buckets), so that ticks
	// close incidents (deletions, which the changelog carries as
	// tombstones) and later alerts start new ones.
	opts := []correlate.Option{correlate.WithWindow(30 * time.Minute), correlate.WithIdleClose(30 * time.Minute),
		correlate.WithLateness(10 * time.Minute), correlate.WithEvidenceGrace(10 * time.Minute)}
	newCor := func() *correlate.Correlator { return newTestCorrelator(t, opts...) }
	facts := eosFacts(90)
	for _, f := range facts[50:] {
		f.MaxTime = f.MaxTime.Add(26 * time.Hour)
		for i := range f.Alerts {
			f.Alerts[i].Time = f.Alerts[i].Time.Add(26 * time.Hour)
		}
		for i := range f.Evidence {
			f.Evidence[i].Time = f.Evidence[i].Time.Add(26 * time.Hour)
			f.Evidence[i].Evidence.CreatedDateTime = f.Evidence[i].Evidence.CreatedDateTime.Add(26 * time.Hour)
		}
	}
	log0 := newChangelogWriter([]string{topics.Changelog, topics.WindowChangelog}, topics.Facts)
	log0.nparts = 2
	var recs []eosRecord
	next := map[int32]int64{}
	for i, f := range facts {
		p := log0.partitionOf([]byte(f.Tenant))
		if i == 40 {
			recs = append(recs, eosRecord{partition: p, offset: next[p]})
			next[p]++
		}
		recs = append(recs, eosRecord{partition: p, offset: next[p], facts: f})
		next[p]++
	}
	if len(next) != 2 {
		t.Fatalf("tenants on %d partitions, want both", len(next))
	}
	newOwner := func(id string) *eosOwner {
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.TransactionalID(id),
			kgo.RecordPartitioner(kgo.ManualPartitioner()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		w := newChangelogWriter([]string{topics.Changelog, topics.WindowChangelog}, topics.Facts)
		return &eosOwner{t: t, cl: cl, changelog: w, c: newCor()}
	}
	commitGroup := func(upto int) map[int32]int64 {
		committed := map[int32]int64{}
		for _, r := range recs[:upto] {
			committed[r.partition] = r.offset + 1
		}
		offs := kadm.Offsets{}
		for p, o := range committed {
			offs.AddOffset("facts", p, o, -1)
		}
		if _, err := adm.CommitOffsets(ctx, "g-correlate", offs); err != nil {
			t.Fatal(err)
		}
		return committed
	}
	restore := func(c *correlate.Correlator, m *Metrics, cls ...string) error {
		return restoreChangelogs(ctx, restoreSpec{
			Client: admCl, Group: "g-correlate", Input: "facts", Changelogs: cls, Partitions: []int32{0, 1}, Store: correlatorStore{c},
			ClientOpts: func() ([]kgo.Opt, error) { return []kgo.Opt{kgo.SeedBrokers(b.Addrs()...)}, nil },
			Metrics:    m, BatchRecords: 7, Settle: time.Second, Name: "correlate",
		})
	}

	// The first owner: transactions of 10 facts; the 4th commits in Kafka
	// but its process "crashes" before its store does.
	a := newOwner("owner-a")
	behind := newCor()
	for i := 0; i < 60; i += 10 {
		a.txn(ctx, recs[i:i+10], false, i == 40)
		switch i {
		case 20:
			commitGroup(30)
			if err := restore(behind, nil, "cl", "wcl"); err != nil {
				t.Fatalf("early restore: %v", err)
			}
		case 40:
			// The owner restarts after its crash and restores the
			// transaction its store missed.
			commitGroup(50)
			if err := restore(a.c, nil, "cl", "wcl"); err != nil {
				t.Fatalf("restore after the crash: %v", err)
			}
		}
	}
	committed := commitGroup(60)
	// An aborted transaction after the committed point: never visible.
	a.txn(ctx, recs[60:70], true, false)

	ref := newCor()
	if err := restore(ref, nil, "cl", "wcl"); err != nil {
		t.Fatal(err)
	}
	want := applyTick(t, a.c, recs[60:])
	if len(want) == 0 {
		t.Fatal("no outputs after the restore point")
	}
	if closed := a.c.Stats().Closed; closed == 0 {
		t.Fatal("no incident was idle-closed: the test does not exercise deletions")
	}
	for _, tc := range []struct {
		name    string
		c       *correlate.Correlator
		records bool // whether anything must be read
	}{{"empty", newCor(), true}, {"behind", behind, true}, {"in-step", ref, false}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMetrics(func() float64 { return 0 })
			if err := restore(tc.c, m, "cl", "wcl"); err != nil {
				t.Fatal(err)
			}
			if got := metricValue(t, m, "stitch_state_restore_records_total"); (got > 0) != tc.records {
				t.Errorf("restored %v changelog records; want some: %v", got, tc.records)
			}
			if got := metricValue(t, m, "stitch_state_restoring_partitions"); got != 0 {
				t.Errorf("restoring gauge left at %v", got)
			}
			have, err := tc.c.Offsets()
			if err != nil {
				t.Fatal(err)
			}
			for p, o := range committed {
				if got := have[state.TopicPartition{Topic: "facts", Partition: p}]; got != o-1 {
					t.Errorf("partition %d: store at facts offset %d, want %d", p, got, o-1)
				}
			}
			got := applyTick(t, tc.c, recs[60:])
			if len(got) != len(want) {
				t.Fatalf("%d outputs after restore, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("output %d after restore:\n got %s\nwant %s", i, got[i], want[i])
				}
			}
		})
	}

	// The sightings travelled grouped (one record per entity, bucket and
	// transaction), and the restores above expanded them.
	if n := groupedRecords(ctx, t, b.Addrs(), "wcl"); n == 0 {
		t.Fatal("no grouped window-changelog record: the test does not exercise them")
	}

	// Changelogs that do not hold what the group committed (deleted and
	// recreated): a clear error, not an empty state.
	err = restore(newTestCorrelator(t), nil, "cl-empty", "wcl-empty")
	if err == nil || !strings.Contains(err.Error(), "do not reach the group's committed offsets") {
		t.Fatalf("restore from empty changelogs: %v", err)
	}
}

func metricValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			ms := mf.GetMetric()[0]
			if c := ms.GetCounter(); c != nil {
				return c.GetValue()
			}
			return ms.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// groupedRecords counts the committed grouped records of a changelog topic.
func groupedRecords(ctx context.Context, t *testing.T, addrs []string, topic string) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if fs.NumRecords() == 0 {
			return n
		}
		fs.EachRecord(func(r *kgo.Record) {
			if len(r.Value) > 0 && r.Value[0] == changelogValueGroup {
				n++
			}
		})
	}
}
