package pipeline

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

// The correlate stage decides which tenants it owns with the same mapping
// the normalize stage's producer uses to place their facts (kgo's default
// partitioner hashes keys with murmur2): if the two disagreed, a process
// would close incidents of tenants it does not own, or none at all.
func TestOwnershipMatchesTheProducersPartitioner(t *testing.T) {
	cp := &correlateProc{p: &Pipeline{cfg: Default()}}
	cp.kafkaOpts()
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
	if err := kafka.EnsureTopics(context.Background(), cl, kafka.TopicSpec{Name: cp.p.cfg.Topics.Facts, Partitions: n, ReplicationFactor: -1}); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		tenant := fmt.Sprintf("tenant-%03d-%x", i, i*7919)
		res := cl.ProduceSync(context.Background(), &kgo.Record{Topic: cp.p.cfg.Topics.Facts, Key: []byte(tenant), Value: []byte("{}")})
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		want := res[0].Record.Partition
		cp.owned = map[int32]bool{want: true}
		if !cp.owns(tenant) {
			t.Fatalf("tenant %s is produced to partition %d but the owner of %d does not own it", tenant, want, want)
		}
		cp.owned = map[int32]bool{(want + 1) % n: true}
		if cp.owns(tenant) {
			t.Fatalf("tenant %s owned by the wrong partition", tenant)
		}
	}
	cp.nparts = 0
	if cp.owns("t") {
		t.Fatal("before any assignment nothing is owned")
	}
}

// The facts topic is created with a retention long enough to rebuild the
// correlation store from it (idle close + window + lateness, twice over).
func TestFactsTopicRetentionCoversLiveState(t *testing.T) {
	p := &Pipeline{cfg: Default()}
	for _, s := range p.Topics() {
		if s.Name != p.cfg.Topics.Facts {
			continue
		}
		ms, err := strconv.ParseInt(s.Configs["retention.ms"], 10, 64)
		c := p.cfg.Correlate
		need := (c.IdleClose.D() + c.Window.D() + c.AllowedLateness.D()).Milliseconds()
		if err != nil || ms < need {
			t.Fatalf("facts retention.ms = %q, need at least %d", s.Configs["retention.ms"], need)
		}
		return
	}
	t.Fatal("no facts topic among the pipeline's topics")
}
