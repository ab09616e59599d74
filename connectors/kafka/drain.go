package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Drain reads topic from the start with a read-committed consumer of its own
// (no consumer group, nothing committed) and calls fn for every committed
// record, in order within each partition. It returns once the consumer has
// reached the end offsets and no new record arrived for idle; the end offsets
// are re-listed every idle period, so records produced meanwhile are read
// too, and an open transaction is waited for (it commits or aborts). An error
// from fn stops the drain and is returned. Cancel ctx to bound the wait.
func Drain(ctx context.Context, cfg ClientConfig, topic string, idle time.Duration, fn func(*kgo.Record) error) (int64, error) {
	if idle <= 0 {
		idle = time.Second
	}
	cl, err := cfg.NewClient(
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Commit and abort markers take offsets; seeing them is how we
		// know a partition ending in a marker has been read to its end.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return 0, fmt.Errorf("drain %s: %w", topic, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	next := map[int32]int64{} // per partition: offset after the last one seen
	var n int64
	quiet := 0 // consecutive idle periods without records
	for {
		pctx, cancel := context.WithTimeout(ctx, idle)
		fetches := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("drain %s: %w", topic, err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("drain %s: fetch partition %d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return n, ferr
		}
		got := 0
		var cbErr error
		fetches.EachRecord(func(r *kgo.Record) {
			got++
			next[r.Partition] = r.Offset + 1
			if cbErr != nil || r.Attrs.IsControl() {
				return
			}
			if cbErr = fn(r); cbErr == nil {
				n++
			}
		})
		if cbErr != nil {
			return n, cbErr
		}
		if got > 0 {
			quiet = 0
			continue
		}
		quiet++
		done, err := drained(ctx, adm, topic, next, quiet)
		if err != nil {
			return n, err
		}
		if done {
			return n, nil
		}
	}
}

// drained re-lists the topic's offsets after an idle period and reports
// whether every partition has been read to its end. A partition counts as
// read when we saw its last offset, when it holds nothing (start == end), or,
// after a few quiet periods, when no transaction is open below its end: then
// the missing offsets are gaps a read-committed fetch never returns
// (compacted-away records), not records still to come.
func drained(ctx context.Context, adm *kadm.Client, topic string, next map[int32]int64, quiet int) (bool, error) {
	ctx = fresh(ctx)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return false, fmt.Errorf("drain %s: list end offsets: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return false, fmt.Errorf("drain %s: list start offsets: %w", topic, err)
	}
	var stable kadm.ListedOffsets // last stable offsets, listed only when needed
	done := true
	ends.Each(func(end kadm.ListedOffset) {
		if !done || next[end.Partition] >= end.Offset {
			return
		}
		if s, ok := starts.Lookup(topic, end.Partition); ok && s.Err == nil && s.Offset >= end.Offset {
			return
		}
		if quiet < 3 {
			done = false
			return
		}
		if stable == nil {
			if stable, err = adm.ListCommittedOffsets(ctx, topic); err != nil {
				done = false
				return
			}
		}
		if s, ok := stable.Lookup(topic, end.Partition); !ok || s.Err != nil || s.Offset < end.Offset {
			done = false
		}
	})
	if err != nil {
		return false, fmt.Errorf("drain %s: list stable offsets: %w", topic, err)
	}
	return done, nil
}
