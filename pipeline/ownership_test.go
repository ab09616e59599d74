package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
)

// The correlate stage decides which tenants it owns with the same mapping
// the normalize stage's producer uses to place their facts (kgo's default
// partitioner hashes keys with murmur2): if the two disagreed, a process
// would close incidents of tenants it does not own, or none at all.
func TestOwnershipMatchesTheProducersPartitioner(t *testing.T) {
	cfg := Default()
	cp := newStateful(&Pipeline{cfg: cfg}, "correlate", "g-correlate", cfg.Topics.Facts)
	const n = 6
	cp.nparts = n
	b, err := kafka.StartBroker(kafka.Listen("127.0.0.1:0"), kafka.DefaultPartitions(n))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// A client with the defaults, as the normalize stage produces facts.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopics(context.Background(), cl, kafka.TopicSpec{Name: cfg.Topics.Facts, Partitions: n, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		tenant := fmt.Sprintf("tenant-%03d-%x", i, i*7919)
		res := cl.ProduceSync(context.Background(), &kgo.Record{Topic: cfg.Topics.Facts, Key: []byte(tenant), Value: []byte("{}")})
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		want := res[0].Record.Partition
		cp.owned = map[int32]bool{want: true}
		if !cp.OwnsKey([]byte(tenant)) {
			t.Fatalf("tenant %s is produced to partition %d but the owner of %d does not own it", tenant, want, want)
		}
		cp.owned = map[int32]bool{(want + 1) % n: true}
		if cp.OwnsKey([]byte(tenant)) {
			t.Fatalf("tenant %s owned by the wrong partition", tenant)
		}
	}
	cp.nparts = 0
	if cp.OwnsKey([]byte("t")) {
		t.Fatal("before any assignment nothing is owned")
	}
}

// The changelogs are created partitioned like the facts topic, the timeless
// one compacted (nothing expires by time), the windowed one deleting by time
// only after the longest any bucket lives (with the default config and a
// long prevalence lookback alike).
func TestChangelogTopicSettings(t *testing.T) {
	for _, lookback := range []time.Duration{7 * 24 * time.Hour, 60 * 24 * time.Hour} {
		cfg := Default()
		cfg.Correlate.PrevalenceLookback = Duration(lookback)
		topo, err := Describe(cfg)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, s := range topo.specs {
			switch s.Name {
			case cfg.Topics.Changelog:
				found++
				if s.Configs["cleanup.policy"] != "compact" || s.Configs["retention.ms"] != "" {
					t.Errorf("timeless changelog configs %v: want compaction and no time retention", s.Configs)
				}
			case cfg.Topics.WindowChangelog:
				found++
				ms, err := strconv.ParseInt(s.Configs["retention.ms"], 10, 64)
				c := cfg.Correlate
				need := (c.PrevalenceLookback.D() + c.AllowedLateness.D() + correlate.PrevalenceBucket).Milliseconds()
				if err != nil || ms < need || s.Configs["cleanup.policy"] != "compact,delete" {
					t.Errorf("window changelog configs %v: want compact,delete and retention.ms >= %d", s.Configs, need)
				}
			default:
				continue
			}
			if s.Partitions != cfg.Topics.Partitions {
				t.Errorf("%s has %d partitions, facts %d", s.Name, s.Partitions, cfg.Topics.Partitions)
			}
		}
		if found != 2 {
			t.Fatalf("%d changelog topics among the pipeline's topics, want 2", found)
		}
	}
}
