package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/state"
)

// Restore. A stage's state store is a cache of its changelogs
// (changelog.go). On every assignment of input partitions, before any of
// their records is processed, the store reads partition p of each changelog
// from the offset after the one it last recorded (or from the earliest)
// up to the last stable offset, applying each write as it is, and
// publishing nothing. That is the committed state wherever it was built:
// by this process before a crash between the Kafka commit and the Pebble
// commit, by another process that owned the partition meanwhile, or by
// anyone for a new state directory.
//
// A committed transaction may not be readable at once (Kafka writes its
// markers to each partition after the group's offsets are stable). The
// group's committed input offset says what must be there: every
// transaction that consumed input of p wrote the offset it reached to both
// changelogs, so a changelog partition is complete when it showed that
// offset, or when it has no undecided transaction left (high watermark =
// last stable offset) and the other one showed it. A changelog that ends
// before the group's offset (deleted or recreated by hand) is an error:
// its state is lost, and going on would work against an empty state.

// restoreSpec says which partitions to restore, from where and into what.
type restoreSpec struct {
	Client *kgo.Client // a client of the group, to read its committed offsets
	Group  string
	// Input is the group's input topic; Changelogs are the store's
	// changelog topics, partitioned like it.
	Input      string
	Changelogs []string
	Partitions []int32
	Store      StateStore
	// Name names the store in logs (stage/store).
	Name string
	// PartitionOf places a tenant on an input partition (the producer's
	// partitioner); with it, partitions whose state is stale are rebuilt
	// (rebuild.go). Nil: never.
	PartitionOf func(tenant []byte) int32
	// ClientOpts are the options of the reading client (brokers, TLS, SASL).
	ClientOpts func() ([]kgo.Opt, error)
	Metrics    *Metrics // may be nil
	Log        *slog.Logger
	// BatchRecords is how many records one restore batch commits (default 5000).
	BatchRecords int
	// Settle bounds the wait for a committed transaction to become readable
	// (default 30s).
	Settle time.Duration
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

// restoreChangelogs brings the store up to the committed state
// of spec.Partitions.
func restoreChangelogs(ctx context.Context, spec restoreSpec) error {
	committed, err := committedOffsets(ctx, spec.Client, spec.Group, spec.Input)
	if err != nil {
		return err
	}
	return restoreTo(ctx, spec, committed)
}

// restoreTo is restoreChangelogs with the group's committed offsets given.
func restoreTo(ctx context.Context, spec restoreSpec, committed map[int32]int64) error {
	log := spec.Log
	if log == nil {
		log = slog.Default()
	}
	if spec.BatchRecords <= 0 {
		spec.BatchRecords = 5000
	}
	if spec.Settle <= 0 {
		spec.Settle = 30 * time.Second
	}
	if len(spec.Partitions) == 0 {
		return nil
	}
	cor := spec.Store
	have, err := cor.Offsets()
	if err != nil {
		return fmt.Errorf("restore: store offsets: %w", err)
	}
	if spec.PartitionOf != nil {
		if stale := staleParts(have, spec.Changelogs, spec.Partitions, deleteRetention(ctx, kadm.NewClient(spec.Client), spec.Changelogs), time.Now()); len(stale) > 0 {
			if err := dropPartitions(cor, stale, spec.PartitionOf, log, spec.Name); err != nil {
				return err
			}
			if have, err = cor.Offsets(); err != nil {
				return fmt.Errorf("restore: store offsets: %w", err)
			}
		}
	}
	type tp = state.TopicPartition
	before := map[int32]int64{} // input offset the store reflects now; -1: none
	next := map[tp]int64{}      // next changelog offset to apply
	start := map[string]map[int32]kgo.Offset{}
	for _, t := range spec.Changelogs {
		start[t] = map[int32]kgo.Offset{}
	}
	for _, p := range spec.Partitions {
		before[p] = -1
		if o, ok := have[tp{Topic: spec.Input, Partition: p}]; ok {
			before[p] = o
		}
		for _, t := range spec.Changelogs {
			if o, ok := have[tp{Topic: t, Partition: p}]; ok {
				next[tp{Topic: t, Partition: p}] = o + 1
				start[t][p] = kgo.NewOffset().At(o + 1)
			} else {
				next[tp{Topic: t, Partition: p}] = 0
				start[t][p] = kgo.NewOffset().AtStart()
			}
		}
	}
	opts, err := spec.ClientOpts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts,
		kgo.ConsumePartitions(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return fmt.Errorf("restore: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := samePartitionCount(ctx, adm, spec.Input, spec.Changelogs); err != nil {
		return err
	}

	began := time.Now()
	if spec.Metrics != nil {
		spec.Metrics.Restoring.Add(float64(len(spec.Partitions)))
		defer spec.Metrics.Restoring.Sub(float64(len(spec.Partitions)))
	}
	shown := map[tp]int64{} // highest input offset each changelog partition carried
	if err := cor.Begin(); err != nil {
		return err
	}
	defer cor.Abort() // whatever a failure left uncommitted
	var n, inBatch int64
	commit := func(final bool) error {
		pos := map[tp]int64{}
		for k, o := range next {
			if o > 0 {
				pos[k] = o - 1
			}
		}
		if final {
			// The input offset is recorded only once every changelog is
			// in: it is what says that the store is complete.
			for _, p := range spec.Partitions {
				f := before[p]
				for _, t := range spec.Changelogs {
					f = max(f, shown[tp{Topic: t, Partition: p}])
				}
				if f >= 0 {
					pos[tp{Topic: spec.Input, Partition: p}] = f
				}
			}
			stampSynced(pos, spec.Changelogs, spec.Partitions, time.Now())
		}
		if err := cor.CommitAt(pos); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		inBatch = 0
		if final {
			return nil
		}
		return cor.Begin()
	}
	for k := range next {
		shown[k] = -1
	}
	lastLog := time.Now()
	settleBy := time.Now().Add(spec.Settle)
	for {
		// Read every partition to its last stable offset as of now.
		lso, err := adm.ListCommittedOffsets(ctx, spec.Changelogs...)
		if err == nil {
			err = lso.Error()
		}
		if err != nil {
			return fmt.Errorf("restore: stable offsets of %v: %w", spec.Changelogs, err)
		}
		hw, err := adm.ListEndOffsets(ctx, spec.Changelogs...)
		if err == nil {
			err = hw.Error()
		}
		if err != nil {
			return fmt.Errorf("restore: end offsets of %v: %w", spec.Changelogs, err)
		}
		target := map[tp]int64{}
		for k := range next {
			o, _ := lso.Lookup(k.Topic, k.Partition)
			target[k] = o.Offset
		}
		behind := func() bool {
			for k, t := range target {
				if next[k] < t {
					return true
				}
			}
			return false
		}
		for behind() {
			fetches := cl.PollRecords(ctx, 10000)
			if err := ctx.Err(); err != nil {
				return err
			}
			var ferr error
			fetches.EachError(func(t string, p int32, err error) {
				if ferr == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					ferr = fmt.Errorf("restore: fetch %s/%d: %w", t, p, err)
				}
			})
			if ferr != nil {
				return ferr
			}
			var aerr error
			fetches.EachRecord(func(r *kgo.Record) {
				k := tp{Topic: r.Topic, Partition: r.Partition}
				if aerr != nil || r.Offset < next[k] {
					return
				}
				next[k] = r.Offset + 1
				if r.Attrs.IsControl() {
					return
				}
				aerr = applyChange(cor, spec.Input, r, shown)
				n++
				inBatch++
				if spec.Metrics != nil {
					spec.Metrics.RestoreRecords.Inc()
				}
			})
			if aerr != nil {
				return aerr
			}
			if inBatch >= int64(spec.BatchRecords) {
				if err := commit(false); err != nil {
					return err
				}
			}
			if time.Since(lastLog) > 5*time.Second {
				lastLog = time.Now()
				log.Info("restoring state from the changelogs", "store", spec.Name, "records", n)
			}
		}
		// Is every committed transaction in?
		var missing []string
		for _, p := range spec.Partitions {
			c := committed[p]
			if c <= 0 || before[p] >= c-1 {
				continue
			}
			for _, t := range spec.Changelogs {
				k := tp{Topic: t, Partition: p}
				if shown[k] >= c-1 {
					continue
				}
				h, _ := hw.Lookup(t, p)
				other := false
				for _, u := range spec.Changelogs {
					other = other || shown[tp{Topic: u, Partition: p}] >= c-1
				}
				if h.Offset == target[k] && other {
					continue // nothing undecided, and the transaction is in the other
				}
				missing = append(missing, fmt.Sprintf("%s/%d shows input offset %d, the group committed %d", t, p, shown[k], c-1))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(settleBy) {
			return fmt.Errorf("restore: the changelogs do not reach the group's committed offsets (%s): "+
				"were they deleted or recreated? The state of these partitions is lost; "+
				"reset the group %s to reprocess its input, or restore the topics", strings.Join(missing, "; "), spec.Group)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := commit(true); err != nil {
		return err
	}
	log.Info("state restored", "store", spec.Name, "partitions", spec.Partitions, "records", n, "seconds", time.Since(began).Seconds())
	return nil
}

// applyChange applies one changelog record to the open transaction. Facts
// offsets are not applied as writes (they reach the store only with a
// complete restore) but noted in shown, highest first.
func applyChange(cor StateStore, facts string, r *kgo.Record, shown map[state.TopicPartition]int64) error {
	if len(r.Value) > 0 && r.Value[0] == changelogValueGroup {
		return expandGroup(r, func(k []byte) error {
			if err := cor.Restore(false, k, []byte{}); err != nil {
				return fmt.Errorf("restore: apply %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			return nil
		})
	}
	del, val, err := decodeChange(r)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if tp, ok := state.ParseOffsetKey(r.Key); ok {
		if tp.Topic != facts || del || len(val) != 8 {
			return nil // another topic's offset: not state
		}
		k := state.TopicPartition{Topic: r.Topic, Partition: r.Partition}
		shown[k] = max(shown[k], int64(binary.BigEndian.Uint64(val)))
		return nil
	}
	if err := cor.Restore(del, r.Key, val); err != nil {
		return fmt.Errorf("restore: apply %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	return nil
}

// samePartitionCount checks that the changelogs are partitioned like the
// input topic: partition p of each holds the state of input partition p.
func samePartitionCount(ctx context.Context, adm *kadm.Client, facts string, changelogs []string) error {
	tds, err := adm.ListTopics(ctx, append([]string{facts}, changelogs...)...)
	if err != nil {
		return fmt.Errorf("restore: describe topics: %w", err)
	}
	want := -1
	if td, ok := tds[facts]; ok && td.Err == nil {
		want = len(td.Partitions)
	}
	for _, t := range changelogs {
		td, ok := tds[t]
		if !ok || td.Err != nil {
			return fmt.Errorf("restore: changelog topic %s is missing (create it with %d partitions, or let stitch create it with topics.create)", t, want)
		}
		if want >= 0 && len(td.Partitions) != want {
			return fmt.Errorf("restore: changelog topic %s has %d partitions, %s has %d: they must be equal", t, len(td.Partitions), facts, want)
		}
	}
	return nil
}
