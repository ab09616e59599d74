package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A stateful stage that ticks before any partition is assigned to it (at
// its start, or for good in a process the group gives no partition: more
// processes than partitions) commits its ticks: its stores' transaction
// learns the input's partition count from the stage's own client, where it
// was known only after an assignment, and every such tick aborted with
// "the partition count of count.in is not known yet" (ten in a row stopped
// the pipeline).
func TestStageTicksBeforeAnAssignment(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, addrs, cfg := countingSetup(t, 1)
	cfg.State.Dir = t.TempDir()
	count := countStage()
	count.TickEvery = func(Config) time.Duration { return 20 * time.Millisecond }
	p := newTestPipeline(t, ctx, cfg, addrs, "tick-test", WithStage(count))

	// Another member of the count stage's group holds count.in's only
	// partition: the stage is never assigned one.
	_, info, _ := p.Topology().stage("count")
	assigned := make(chan struct{})
	other, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup(info.Group), kgo.ConsumeTopics("count.in"),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			if len(a["count.in"]) > 0 {
				close(assigned)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	select {
	case <-assigned:
	case <-time.After(30 * time.Second):
		t.Fatal("the other member got no partition of count.in")
	}
	p.produce(ctx, &kgo.Record{Topic: "count.in", Key: []byte("t-a"), Value: []byte("x")})

	p.start(ctx)
	var st StageSnapshot
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		st = p.Totals().Stages["count"]
		if st.Aborted > 0 || st.Sum("ticks") >= 2 {
			break
		}
	}
	if st.Aborted > 0 || st.Sum("ticks") < 2 {
		t.Fatalf("count stage without a partition: %d ticks committed, %d transactions aborted; want ticks and no abort", st.Sum("ticks"), st.Aborted)
	}
	if n := st.RecordsIn["count.in"]; n != 0 {
		t.Fatalf("count stage read %d records of count.in: it was assigned a partition, and the test shows nothing", n)
	}
}
