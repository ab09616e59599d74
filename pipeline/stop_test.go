package pipeline

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/stitch-xdr/stitch/connectors/kafka"
)

// A stop that cuts a transaction short (its later produce fails with the
// cancelled context, as a respond stage's actions can) aborts it before
// the process goes: left open, it would hold back the last stable offset
// of every partition it wrote, and so every read-committed consumer of
// them, until the broker's transaction timeout (15 s), which is what an
// instance leaving a scaled-out group did to the respond stage's actions.
func TestStopAbortsAFailedTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, addrs, cfg := countingSetup(t, 1)
	cfg.Kafka.CommitInterval = Duration(10 * time.Second) // the stop ends the transaction, not the interval
	cfg.State.Dir = t.TempDir()
	const in, out = "stopper.in", "stopper.out"
	reached := make(chan struct{})
	stage := copyStage("stopper", in, out, &stopperProc{copyProc: copyProc{out: out}, reached: reached})
	p := newTestPipeline(t, ctx, cfg, addrs, "stop-test", WithStage(stage))
	p.produce(ctx, &kgo.Record{Topic: in, Value: []byte("1")}, &kgo.Record{Topic: in, Value: []byte("2")})
	p.start(ctx)
	p.waitFor(ctx, reached, "the stage read its input")
	if err := p.halt(); err != nil {
		t.Fatal(err)
	}

	// A record written after the stop is readable by a read-committed
	// consumer at once only if nothing before it is still open: the
	// stopped transaction's output is not (aborted).
	if got := p.afterStop(ctx, out, 1); got[0] != "after" {
		t.Fatalf("read committed %q: the stopped transaction's output was committed", got)
	}
}

// A stop that comes while a transaction is ending (here: while its offsets
// are being committed) lets the end finish instead of cutting it short:
// cut short, franz-go's End returns at once and leaves the transaction
// open on the broker until its timeout, holding back the last stable
// offset of every partition it wrote, as above.
func TestStopWhileEndingFinishesTheTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.TxnOffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		once.Do(func() {
			close(arrived)
			c.SleepControl(func() { <-release }) // the other connections go on
		})
		return nil, nil, false
	})
	addrs := c.ListenAddrs()
	cfg := Default()
	cfg.Hunting.Enabled = false
	cfg.Correlate.Enabled = false
	cfg.Topics.Partitions = 1
	cfg.Kafka.CommitInterval = Duration(100 * time.Millisecond)
	cfg.State.Dir = t.TempDir()
	const in, out = "ender.in", "ender.out"
	p := newTestPipeline(t, ctx, cfg, addrs, "ender-test", WithStage(copyStage("ender", in, out, &copyProc{out: out})))
	p.produce(ctx, &kgo.Record{Topic: in, Value: []byte("1")})
	p.start(ctx)
	p.waitFor(ctx, arrived, "the stage ended a transaction")
	halted := make(chan error, 1)
	go func() { halted <- p.halt() }()
	time.Sleep(300 * time.Millisecond) // the stop is under way, the offsets not committed
	close(release)
	if err := <-halted; err != nil {
		t.Fatal(err)
	}

	// The record the stage produced is committed, and one written after
	// the stop is readable at once.
	if got := p.afterStop(ctx, out, 2); got[0] != "1" || got[1] != "after" {
		t.Fatalf("read committed %q, want [1 after]", got)
	}
}

// afterStop produces "after" to topic and reads it back read-committed
// from the start, with the want-1 records before it: it is readable at
// once (within 5 s; the transaction timeout is 15 s) only if no
// transaction before it is still open.
func (p *testPipeline) afterStop(ctx context.Context, topic string, want int) []string {
	p.t.Helper()
	p.produce(ctx, &kgo.Record{Topic: topic, Value: []byte("after")})
	cons, err := kgo.NewClient(kgo.SeedBrokers(p.addrs...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		p.t.Fatal(err)
	}
	defer cons.Close()
	const within = 5 * time.Second
	pctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var got []string
	for len(got) < want {
		fs := cons.PollFetches(pctx)
		if pctx.Err() != nil {
			p.t.Fatalf("read committed %q within %s, want %d records ending in the one produced after the stop: a transaction of the stopped stage is still open", got, within, want)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

// copyStage is a test stage reading in, producing to out through proc.
func copyStage(name, in, out string, proc Processor) Stage {
	return Stage{
		Name:      name,
		Doc:       "test: produces to " + out + " what it reads",
		Inputs:    func(Config) []string { return []string{in} },
		Outputs:   func(Config) []Output { return []Output{{Topic: kafka.TopicSpec{Name: out}}} },
		Processor: func(*StageContext) (Processor, error) { return proc, nil },
	}
}

// waitFor waits for ch to close, failing the test if the started pipeline
// stops or ctx ends first.
func (p *testPipeline) waitFor(ctx context.Context, ch <-chan struct{}, what string) {
	p.t.Helper()
	select {
	case <-ch:
	case err := <-p.done:
		p.t.Fatalf("the pipeline stopped before %s: %v", what, err)
	case <-ctx.Done():
		p.t.Fatalf("not in time: %s", what)
	}
}

// copyProc produces every record it reads.
type copyProc struct{ out string }

func (c *copyProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	tx.Produce(ctx, &kgo.Record{Topic: c.out, Value: r.Value})
	return nil
}

func (c *copyProc) Flush(context.Context, Txn) error           { return nil }
func (c *copyProc) Tick(context.Context, time.Time, Txn) error { return nil }
func (c *copyProc) Aborted()                                   {}
func (c *copyProc) Committed()                                 {}

// stopperProc produces every record it reads; at the second, once the
// first is acknowledged (so the transaction is open on the broker), it
// signals, waits for the stop and produces it with the cancelled context,
// which fails the transaction.
type stopperProc struct {
	copyProc // its no-op Flush, Tick, Aborted, Committed
	reached  chan struct{}
	acked    chan struct{}
	n        int
}

func (s *stopperProc) Process(ctx context.Context, r *kgo.Record, tx Txn) error {
	s.n++
	switch s.n {
	case 1:
		s.acked = make(chan struct{})
		tx.(*txn).produceThen(ctx, &kgo.Record{Topic: s.out, Value: r.Value}, func(*kgo.Record) { close(s.acked) })
		return nil
	case 2:
		<-s.acked
		close(s.reached)
		<-ctx.Done()
	}
	tx.Produce(ctx, &kgo.Record{Topic: s.out, Value: r.Value})
	return nil
}
