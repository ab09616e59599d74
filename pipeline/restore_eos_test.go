package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
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
		out = append(out, &correlate.Facts{Tenant: tenant, MaxTime: at,
			Alerts: []correlate.AlertFact{{ID: id, Time: at, Title: "Suspicious process", Severity: "Medium",
				Category: "Execution", ServiceSource: "Microsoft Defender for Endpoint", DetectionSource: "EDR"}},
			Evidence: []correlate.EvidenceFact{{AlertID: id, Time: at,
				Entities: []string{fmt.Sprintf("device:name:host-%d", i%7), fmt.Sprintf("user:upn:u%d@contoso.com", i%5)},
				Evidence: correlate.Evidence{ODataType: correlate.GraphEvidenceType("Machine"), CreatedDateTime: at, Roles: []string{"compromised"}}}},
		})
	}
	return out
}

type eosRecord struct {
	partition int32
	offset    int64
	facts     *correlate.Facts
}

func newTestCorrelator(t *testing.T) *correlate.Correlator {
	t.Helper()
	st, err := state.Open(t.TempDir(), state.WithCacheSize(1<<20), state.WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := correlate.New(st)
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
		if err != nil {
			t.Fatal(err)
		}
		for _, inc := range incs {
			b, _ := json.Marshal(inc)
			out = append(out, string(b))
		}
	}
	return out
}

// TestRestoreCatchesUp: a store behind the group's committed offsets (by a
// few records, or empty) is brought up to them from the facts topic without
// producing anything, and what follows gives exactly the outputs of an
// uninterrupted run.
func TestRestoreCatchesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := kafka.StartBroker(kafka.DefaultPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "facts"); err != nil {
		t.Fatal(err)
	}
	// Tenants 0 and 2 on partition 0, tenant 1 on partition 1; one record
	// that is not facts (it was dead-lettered when first consumed).
	var recs []eosRecord
	for i, f := range eosFacts(90) {
		p := int32(0)
		if f.Tenant == "tenant-1" {
			p = 1
		}
		v, _ := f.Marshal()
		if i == 40 {
			r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: "facts", Partition: p, Value: []byte("not facts")}).First()
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, eosRecord{partition: p, offset: r.Offset})
		}
		r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: "facts", Partition: p, Key: []byte(f.Tenant), Value: v}).First()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, eosRecord{partition: p, offset: r.Offset, facts: f})
	}
	ref := newTestCorrelator(t)
	applyEOS(t, ref, recs[:60])
	want := applyEOS(t, ref, recs[60:])
	if len(want) == 0 {
		t.Fatal("no outputs after the restore point")
	}

	// The group committed everything before recs[60] on both partitions.
	committed := map[int32]int64{}
	for _, r := range recs[:60] {
		committed[r.partition] = r.offset + 1
	}
	offs := kadm.Offsets{}
	for p, o := range committed {
		offs.AddOffset("facts", p, o, -1)
	}
	if _, err := adm.CommitOffsets(ctx, "g-correlate", offs); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		stored int // records of recs the store already has
	}{{"behind", 25}, {"empty", 0}, {"in-step", 60}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCorrelator(t)
			applyEOS(t, c, recs[:tc.stored])
			m := newMetrics(func() float64 { return 0 })
			err := restoreFacts(ctx, restoreSpec{
				Client: cl, Group: "g-correlate", Topic: "facts", Partitions: []int32{0, 1}, Correlator: c,
				ClientOpts: func() ([]kgo.Opt, error) { return []kgo.Opt{kgo.SeedBrokers(b.Addrs()...)}, nil },
				Metrics:    m, BatchRecords: 7,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := metricValue(t, m, "stitch_state_restore_records_total"), float64(60-tc.stored); got != want {
				t.Errorf("restored %v records, want %v", got, want)
			}
			if got := metricValue(t, m, "stitch_state_restoring_partitions"); got != 0 {
				t.Errorf("restoring gauge left at %v", got)
			}
			have, err := c.Offsets()
			if err != nil {
				t.Fatal(err)
			}
			for p, o := range committed {
				if got := have[state.TopicPartition{Topic: "facts", Partition: p}]; got != o-1 {
					t.Errorf("partition %d: store at %d, want %d", p, got, o-1)
				}
			}
			got := applyEOS(t, c, recs[60:])
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
