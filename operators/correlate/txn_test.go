package correlate

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/operators/normalize"
	"github.com/stitch-xdr/stitch/state"
)

// simFacts runs n simulator records (several attack stories, two tenants)
// through the real normalizer and Extract, in chunks as stage 1 would, and
// returns the facts as they arrive at stage 2 (through the wire encoding).
func simFacts(t *testing.T, n int) []*Facts {
	t.Helper()
	sim := simulator.New(simulator.Seed(7), simulator.EventsPerSecond(5), simulator.AttackEvery(400))
	norm := normalize.New()
	var out []*Facts
	var batches []normalize.Batch
	emit := func(b normalize.Batch) { batches = append(batches, b) }
	drain := func() {
		norm.Flush(emit)
		for _, b := range batches {
			if f := wireFacts(t, b); f != nil {
				out = append(out, f)
			}
		}
		batches = batches[:0]
	}
	var buf []byte
	for i := range n {
		_, v := sim.Next(buf[:0])
		norm.Add(normalize.Input{Topic: "signals", Offset: int64(i), Value: append([]byte(nil), v...)}, emit,
			func(d normalize.DeadLetter) { t.Fatalf("simulator record dead-lettered: %s", d.Reason) })
		buf = v
		if i%250 == 249 {
			drain()
		}
	}
	drain()
	var alerts int
	for _, f := range out {
		alerts += len(f.Alerts)
	}
	if alerts < 10 {
		t.Fatalf("only %d alerts in %d facts: not a useful stream", alerts, len(out))
	}
	return out
}

// wireFacts extracts b's facts (nil when none) and passes them through the
// wire encoding, as stage 2 receives them; b is released.
func wireFacts(t testing.TB, b normalize.Batch) *Facts {
	t.Helper()
	f := Extract(b)
	b.Release()
	if f == nil {
		return nil
	}
	wire, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if f, err = UnmarshalFacts(wire); err != nil {
		t.Fatal(err)
	}
	return f
}

// inTx runs fn in one transaction of c and commits it: the one commit path.
func inTx(t testing.TB, c *Correlator, fn func()) {
	t.Helper()
	if err := c.Begin(); err != nil {
		t.Fatal(err)
	}
	fn()
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
}

// applyAll applies facts (offsets from 0, partition 0) in the open
// transaction and returns the encoded outputs.
func applyAll(t *testing.T, c *Correlator, facts []*Facts) []string {
	t.Helper()
	var out []string
	for i, f := range facts {
		incs, err := c.ApplyOffset(0, f, "facts", int64(i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, encode(t, incs)...)
	}
	return out
}

func openCorrelator(t *testing.T, dir string, opts ...Option) (*Correlator, *state.Store) {
	t.Helper()
	st, err := state.Open(dir, state.WithCacheSize(1<<20), state.WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, st
}

func encode(t *testing.T, incs []Incident) []string {
	t.Helper()
	var out []string
	for _, inc := range incs {
		b, err := json.Marshal(inc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func sameOutputs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d incident versions, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: output %d differs:\n got %s\nwant %s", what, i, got[i], want[i])
		}
	}
}

// reference applies every fact in a transaction of its own (the
// uninterrupted run) and returns the outputs of each.
func reference(t *testing.T, facts []*Facts) [][]string {
	c, st := openCorrelator(t, t.TempDir())
	defer st.Close()
	out := make([][]string, len(facts))
	for i, f := range facts {
		inTx(t, c, func() {
			incs, err := c.ApplyOffset(int32(i%2), f, "facts", int64(i))
			if err != nil {
				t.Fatal(err)
			}
			out[i] = encode(t, incs)
		})
	}
	return out
}

// TestTransactionsMatchUninterrupted: facts applied in transactions of a
// few records each give exactly the outputs of one commit per record, and a
// transaction that aborts and is redone changes nothing: no state, counter,
// watermark or offset of the aborted attempt survives.
func TestTransactionsMatchUninterrupted(t *testing.T) {
	facts := simFacts(t, 6000)
	want := reference(t, facts)

	dir := t.TempDir()
	c, st := openCorrelator(t, dir)
	defer func() { st.Close() }()
	for i := 0; i < len(facts); i += 3 {
		end := min(i+3, len(facts))
		// Every other transaction first runs and aborts: a crash or rebalance
		// after the records were processed and their outputs produced.
		if (i/3)%2 == 1 {
			before := c.Stats()
			offs, _ := c.Offsets()
			if err := c.Begin(); err != nil {
				t.Fatal(err)
			}
			for j := i; j < end; j++ {
				if _, err := c.ApplyOffset(int32(j%2), facts[j], "facts", int64(j)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.Tick(facts[end-1].MaxTime); err != nil {
				t.Fatal(err)
			}
			c.Abort()
			if got := c.Stats(); got != before {
				t.Fatalf("abort kept counters: %+v, want %+v", got, before)
			}
			if got, _ := c.Offsets(); len(got) != len(offs) || got[state.TopicPartition{Topic: "facts", Partition: 0}] != offs[state.TopicPartition{Topic: "facts", Partition: 0}] {
				t.Fatalf("abort moved offsets: %v, want %v", got, offs)
			}
		}
		if err := c.Begin(); err != nil {
			t.Fatal(err)
		}
		for j := i; j < end; j++ {
			incs, err := c.ApplyOffset(int32(j%2), facts[j], "facts", int64(j))
			if err != nil {
				t.Fatal(err)
			}
			sameOutputs(t, "transactional", encode(t, incs), want[j])
		}
		if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	offs, err := c.Offsets()
	if err != nil {
		t.Fatal(err)
	}
	last := int64(len(facts) - 1)
	for p := int32(0); p < 2; p++ {
		wantOff := last
		if int32(last%2) != p {
			wantOff = last - 1
		}
		if got := offs[state.TopicPartition{Topic: "facts", Partition: p}]; got != wantOff {
			t.Errorf("offset of partition %d = %d, want %d", p, got, wantOff)
		}
	}
	// The watermarks survive a restart with the state.
	clk := c.clock.now()
	st.Close()
	c2, st2 := openCorrelator(t, dir)
	st = st2
	if got := c2.clock.now(); !got.Equal(clk) {
		t.Errorf("clock after reopen = %v, want %v", got, clk)
	}
}

// TestAbortDiscardsEverything: the aborted transaction's alerts are not in
// the store, so redoing it publishes them again (nothing is lost).
func TestAbortDiscardsEverything(t *testing.T) {
	facts := simFacts(t, 3000)
	c, st := openCorrelator(t, t.TempDir())
	defer st.Close()
	if err := c.Begin(); err != nil {
		t.Fatal(err)
	}
	first := applyAll(t, c, facts)
	if len(first) == 0 {
		t.Fatal("no incidents")
	}
	c.Abort()
	if offs, _ := c.Offsets(); len(offs) != 0 {
		t.Fatalf("offsets after abort: %v", offs)
	}
	if err := c.Begin(); err != nil {
		t.Fatal(err)
	}
	again := applyAll(t, c, facts)
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	sameOutputs(t, "redo after abort", again, first)
	if err := c.Begin(); err == nil {
		if err := c.Begin(); err == nil {
			t.Error("nested Begin accepted")
		}
		c.Abort()
	}
}

// TestOnlyInTransactions: there is one commit path; work outside a
// transaction is refused, not committed on its own.
func TestOnlyInTransactions(t *testing.T) {
	c, st := openCorrelator(t, t.TempDir())
	defer st.Close()
	f := alertFact("t1", "A", t0)
	if _, err := c.ApplyOffset(0, f, "facts", 0); err == nil {
		t.Error("ApplyOffset outside a transaction accepted")
	}
	if err := c.Skip("facts", 0, 0); err == nil {
		t.Error("Skip outside a transaction accepted")
	}
	if _, err := c.Tick(time.Time{}); err == nil {
		t.Error("Tick outside a transaction accepted")
	}
	if err := c.Commit(); err == nil {
		t.Error("Commit without a transaction accepted")
	}
	if offs, _ := c.Offsets(); len(offs) != 0 {
		t.Errorf("refused work moved offsets: %v", offs)
	}
}

// TestQuietCommitReportsAFailedStore: once the store has failed (a full
// disk under a log write, possibly found in the background), a transaction
// that writes nothing still fails its commit: the correlate stage ticks
// such transactions and must stop, not go on as if the state were safe.
func TestQuietCommitReportsAFailedStore(t *testing.T) {
	var full atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if full.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			return syscall.ENOSPC
		}
		return nil
	}))
	st, err := state.Open(t.TempDir(), state.WithFS(fs), state.WithCacheSize(1<<20), state.WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := New(st)
	if err != nil {
		t.Fatal(err)
	}
	full.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; st.Failed() == nil; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the store never failed on a full disk")
		}
		if err := c.Begin(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ApplyOffset(0, alertFact("t1", fmt.Sprint("A", i), t0), "facts", int64(i)); err != nil {
			t.Fatal(err)
		}
		if err := c.Commit(); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(); !errors.Is(err, state.ErrFailed) {
		t.Fatalf("empty commit on a failed store: %v, want state.ErrFailed", err)
	}
}

// TestStateOpsCountEveryTransaction: StateOps adds up the store work of
// committed and aborted transactions alike (what BenchmarkCorrelate
// reports an alert costs).
func TestStateOpsCountEveryTransaction(t *testing.T) {
	c := smallCorrelator(t)
	at := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	alert := func(id string) *Facts {
		return &Facts{Tenant: "t1", MaxTime: at, Alerts: []AlertFact{{ID: id, Time: at}},
			Evidence: []EvidenceFact{{AlertID: id, Time: at, Entities: []string{"device:name:h1"}}}}
	}
	// The first alert is committed; the second, aborted, shares its
	// device, so it reads the index the first wrote.
	var ends []StateOps
	for _, commit := range []bool{true, false} {
		if err := c.Begin(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(0, alert(fmt.Sprint("a-", commit))); err != nil {
			t.Fatal(err)
		}
		if !commit {
			c.Abort()
		} else if err := c.Commit(); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, c.StateOps())
	}
	committed, both := ends[0], ends[1]
	if committed.Writes == 0 {
		t.Fatalf("a committed alert wrote nothing: %+v", committed)
	}
	if both.Writes <= committed.Writes || both.Seeks <= committed.Seeks {
		t.Fatalf("the aborted transaction added no writes or seeks: %+v after %+v", both, committed)
	}
}

// smallCorrelator is a correlator with opts over a store with a small
// cache and memtable, closed when the test ends.
func smallCorrelator(t *testing.T, opts ...Option) *Correlator {
	t.Helper()
	st, err := state.Open(t.TempDir(), state.WithCacheSize(1<<20), state.WithMemTableSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := New(st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
