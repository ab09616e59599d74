package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// Restore. The facts topic is the changelog of the correlation store, as a
// source topic can be in Kafka Streams: the store's state for a facts
// partition is a pure function of that partition's records up to an offset,
// and the store records that offset in the same batch as the state. When the
// consumer group's committed offset for a partition is ahead of the store's,
// the records in between were processed and their outputs published by a
// committed transaction whose state never reached this store (a crash
// between the Kafka commit and the Pebble commit, the partition was owned by
// another process, or the store is new). Re-applying them, and publishing
// nothing, brings the store to where the group is. A store with no offset
// for a partition is rebuilt from the earliest retained record, which is
// only complete if the facts topic retains everything the state still
// depends on (see docs/EXACTLY-ONCE.md).

// restoreSpec says which partitions to restore, from where and into what.
type restoreSpec struct {
	Client     *kgo.Client // a client of the group, to read its committed offsets
	Group      string
	Topic      string
	Partitions []int32
	Correlator *correlate.Correlator
	// ClientOpts are the options of the reading client (brokers, TLS, SASL).
	ClientOpts func() ([]kgo.Opt, error)
	Metrics    *Metrics // may be nil
	Log        *slog.Logger
	// BatchRecords is how many records one restore batch commits (default 2000).
	BatchRecords int
}

// committedOffsets are the group's committed offsets of topic, waiting for
// pending transactional commits to settle (an offset that a transaction is
// about to move is not an answer).
func committedOffsets(ctx context.Context, cl *kgo.Client, group, topic string) (map[int32]int64, error) {
	adm := kadm.NewClient(cl) // not closed: that would close cl
	for attempt := 0; ; attempt++ {
		resp, err := adm.FetchOffsets(kadm.RequireStable(ctx), group)
		if err == nil {
			err = resp.Error()
		}
		if err == nil {
			out := map[int32]int64{}
			for p, o := range resp[topic] {
				if o.Err != nil {
					err = o.Err
					break
				}
				out[p] = o.At
			}
			if err == nil {
				return out, nil
			}
		}
		if !errors.Is(err, kerr.UnstableOffsetCommit) && !kerr.IsRetriable(err) || attempt >= 100 {
			return nil, fmt.Errorf("committed offsets of group %s: %w", group, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// restoreFacts brings the correlator's store up to the group's committed
// offsets for spec.Partitions. Outputs of the re-applied facts are dropped:
// the transactions that first produced them committed.
func restoreFacts(ctx context.Context, spec restoreSpec) error {
	committed, err := committedOffsets(ctx, spec.Client, spec.Group, spec.Topic)
	if err != nil {
		return err
	}
	return restoreTo(ctx, spec, committed)
}

// restoreTo is restoreFacts with the committed offsets given.
func restoreTo(ctx context.Context, spec restoreSpec, committed map[int32]int64) error {
	log := spec.Log
	if log == nil {
		log = slog.Default()
	}
	if spec.BatchRecords <= 0 {
		spec.BatchRecords = 2000
	}
	have, err := spec.Correlator.Offsets()
	if err != nil {
		return fmt.Errorf("restore: store offsets: %w", err)
	}
	target := map[int32]int64{} // partition → the group's committed offset
	start := map[int32]kgo.Offset{}
	for _, p := range spec.Partitions {
		c, ok := committed[p]
		if !ok || c <= 0 {
			continue // the group never committed this partition: nothing was published
		}
		s, stored := have[state.TopicPartition{Topic: spec.Topic, Partition: p}]
		switch {
		case stored && s+1 == c:
			continue
		case stored && s+1 > c:
			// Only an offset reset by hand gets here: the facts in between
			// will be seen again and their alerts ignored as repeats.
			log.Warn("correlate: state is ahead of the group's committed offset", "topic", spec.Topic, "partition", p, "state", s+1, "committed", c)
			continue
		case stored:
			start[p] = kgo.NewOffset().At(s + 1)
		default:
			start[p] = kgo.NewOffset().AtStart()
		}
		target[p] = c
	}
	if len(target) == 0 {
		return nil
	}
	opts, err := spec.ClientOpts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{spec.Topic: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return fmt.Errorf("restore: client: %w", err)
	}
	defer cl.Close()

	began := time.Now()
	for p, c := range target {
		from := "earliest"
		if o, ok := have[state.TopicPartition{Topic: spec.Topic, Partition: p}]; ok {
			from = fmt.Sprint(o + 1)
		}
		log.Info("correlate: restoring state from the facts topic", "topic", spec.Topic, "partition", p, "from", from, "to", c)
	}
	if spec.Metrics != nil {
		spec.Metrics.Restoring.Add(float64(len(target)))
		defer func() { spec.Metrics.Restoring.Sub(float64(len(target))) }()
	}
	cor := spec.Correlator
	if err := cor.Begin(); err != nil {
		return err
	}
	defer cor.Abort() // whatever a failure left uncommitted
	var n, inBatch int64
	lastLog := time.Now()
	remaining := len(target)
	done := map[int32]bool{}
	for remaining > 0 {
		fetches := cl.PollRecords(ctx, 10000)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fetches.EachError(func(_ string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				ferr = fmt.Errorf("restore: fetch partition %d: %w", p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		var aerr error
		fetches.EachRecord(func(r *kgo.Record) {
			c, ok := target[r.Partition]
			if aerr != nil || !ok || done[r.Partition] || r.Offset >= c {
				return
			}
			if !r.Attrs.IsControl() {
				if f, err := correlate.UnmarshalFacts(r.Value); err != nil {
					aerr = cor.Skip(r.Topic, r.Partition, r.Offset) // it was dead-lettered when first seen
				} else if _, err := cor.ApplyOffset(r.Partition, f, r.Topic, r.Offset); err != nil {
					aerr = fmt.Errorf("restore: apply %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
				}
				n++
				inBatch++
				if spec.Metrics != nil {
					spec.Metrics.RestoreRecords.Inc()
				}
			}
			if r.Offset >= c-1 {
				done[r.Partition] = true
				remaining--
				cl.PauseFetchPartitions(map[string][]int32{spec.Topic: {r.Partition}})
			}
		})
		if aerr != nil {
			return aerr
		}
		if inBatch >= int64(spec.BatchRecords) || remaining == 0 {
			if err := cor.Commit(); err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			inBatch = 0
			if remaining > 0 {
				if err := cor.Begin(); err != nil {
					return err
				}
			}
		}
		if time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			log.Info("correlate: restoring", "records", n, "partitions_left", remaining)
		}
	}
	parts := make([]int32, 0, len(target))
	for p := range target {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	log.Info("correlate: state restored", "topic", spec.Topic, "partitions", parts, "records", n, "seconds", time.Since(began).Seconds())
	return nil
}
