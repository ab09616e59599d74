package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/state"
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

// guardedStore is a count stage's store that records any use after the
// Pebble store under it closed (markClosed runs after state.Store.Close).
// Its first Offsets (a restore's first read) says so on entered and waits,
// up to hold, for the stage's closing to begin (closing), then a little
// more, so that a restore in progress when a failed start closes the
// stores reaches the store after its close: the "pebble: closed" panic
// where Pebble's handle was still being closed.
type guardedStore struct {
	StateStore
	closed  atomic.Bool
	late    atomic.Int32 // store calls after the close
	entered chan struct{}
	closing chan struct{}
	once    sync.Once
	hold    time.Duration
}

func (g *guardedStore) check() {
	if g.closed.Load() {
		g.late.Add(1)
	}
}

func (g *guardedStore) Offsets() (map[state.TopicPartition]int64, error) {
	g.once.Do(func() {
		close(g.entered)
		select {
		case <-g.closing:
			for end := time.Now().Add(time.Second); !g.closed.Load() && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
			}
		case <-time.After(g.hold):
		}
	})
	g.check()
	return g.StateStore.Offsets()
}

func (g *guardedStore) Begin() error { g.check(); return g.StateStore.Begin() }
func (g *guardedStore) Restore(del bool, key, val []byte) error {
	g.check()
	return g.StateStore.Restore(del, key, val)
}

// A stage that fails to start (a later stage's constructor errs) while an
// earlier stateful stage is already restoring its first assignment stops
// the pipeline with that stage's error: the earlier stage's Kafka session
// is closed and its restore ends before its store closes. The session was
// left running and its restore read the closed store (panic: pebble:
// closed).
func TestFailedStartClosesStoresAfterTheirRestores(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, addrs, cfg := countingSetup(t, 2)
	cfg.State.Dir = t.TempDir()
	g := &guardedStore{entered: make(chan struct{}), closing: make(chan struct{}), hold: 2 * time.Second}
	count := countStage()
	count.Processor = func(sc *StageContext) (Processor, error) {
		sc.OnClose(func() { g.closed.Store(true) }) // runs after the store's close
		st, err := sc.OpenStore("counts")
		if err != nil {
			return nil, err
		}
		sc.OnClose(func() { close(g.closing) }) // runs before it
		p := &countProc{store: state.NewTxStore(st)}
		g.StateStore = p.store
		return p, sc.Attach("counts", g)
	}
	broken := Stage{
		Name:   "broken",
		Doc:    "test: cannot start",
		Inputs: func(Config) []string { return []string{"count.out"} },
		Processor: func(*StageContext) (Processor, error) {
			select {
			case <-g.entered: // the count stage is restoring
			case <-time.After(30 * time.Second):
				t.Error("the count stage never restored its assignment")
			}
			return nil, errors.New("no credentials for the thing")
		},
	}
	p := newTestPipeline(t, ctx, cfg, addrs, "failed-start", WithStage(count), WithStage(broken))
	err := p.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "broken: no credentials for the thing") {
		t.Fatalf("Run = %v, want the broken stage's error", err)
	}
	time.Sleep(500 * time.Millisecond) // a restore still running would reach the store now
	if n := g.late.Load(); n > 0 {
		t.Fatalf("the count stage's store was used %d times after it closed", n)
	}
}
