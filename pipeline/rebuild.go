package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/stitch-xdr/stitch/state"
)

// Stale state. A compacted changelog keeps a tombstone only for the topic's
// delete.retention.ms after it was written (and cleaned). A store that
// caught up with a changelog partition at time S has seen every tombstone
// written before S; one written after S is certain to be there only until
// S + delete.retention.ms. So a store that last caught up with partition p
// longer ago than that (its process was away from p meanwhile) may miss a
// deletion, and an incremental restore would keep the deleted key: such a
// partition is rebuilt instead, its keys dropped and the changelog read
// from its start.
//
// When the store last caught up is recorded at every store commit and
// restore, for every input partition the process owns, as the "offset" of
// a pseudo topic beside each changelog (<changelog>@synced, unix ms), in
// the same batch as the state: it never reaches a changelog.

// syncedSuffix names the pseudo topic of a changelog's catch-up times.
const syncedSuffix = "@synced"

// staleMargin is how much sooner than delete.retention.ms a partition counts
// as stale: clock skew, and the time a restore takes.
const staleMargin = time.Hour

// defaultDeleteRetention is Kafka's default delete.retention.ms, assumed
// when the topic's config cannot be read.
const defaultDeleteRetention = 24 * time.Hour

// KeyScanner is implemented by stores that can list their keys, which a
// rebuild of stale partitions needs.
type KeyScanner interface {
	ScanKeys(fn func(key []byte) error) error
}

// stampSynced adds to positions the catch-up time of every changelog
// partition in parts.
func stampSynced(positions map[state.TopicPartition]int64, changelogs []string, parts []int32, now time.Time) {
	for _, t := range changelogs {
		for _, p := range parts {
			positions[state.TopicPartition{Topic: t + syncedSuffix, Partition: p}] = now.UnixMilli()
		}
	}
}

// deleteRetention is the shortest delete.retention.ms of the changelogs.
func deleteRetention(ctx context.Context, adm *kadm.Client, changelogs []string) time.Duration {
	out := time.Duration(0)
	rcs, err := adm.DescribeTopicConfigs(ctx, changelogs...)
	for _, t := range changelogs {
		d := defaultDeleteRetention
		if err == nil {
			if rc, rerr := rcs.On(t, nil); rerr == nil {
				for _, c := range rc.Configs {
					if c.Key == "delete.retention.ms" && c.Value != nil {
						if ms, perr := strconv.ParseInt(*c.Value, 10, 64); perr == nil && ms > 0 {
							d = time.Duration(ms) * time.Millisecond
						}
					}
				}
			}
		}
		if out == 0 || d < out {
			out = d
		}
	}
	return out
}

// staleParts are the partitions whose state the store has but last caught
// up with longer ago than the changelogs keep tombstones.
func staleParts(have map[state.TopicPartition]int64, changelogs []string, parts []int32, retention time.Duration, now time.Time) []int32 {
	var stale []int32
	for _, p := range parts {
		for _, t := range changelogs {
			if _, ok := have[state.TopicPartition{Topic: t, Partition: p}]; !ok {
				continue // nothing of this changelog applied: it is read from its start anyway
			}
			at, ok := have[state.TopicPartition{Topic: t + syncedSuffix, Partition: p}]
			if !ok || now.Sub(time.UnixMilli(at)) > retention-staleMargin {
				stale = append(stale, p)
				break
			}
		}
	}
	return stale
}

// dropPartitions deletes every key of the store that belongs to one of
// parts (its offsets included), in one store transaction.
func dropPartitions(st StateStore, parts []int32, partitionOf func(tenant []byte) int32, log *slog.Logger, name string) error {
	ks, ok := st.(KeyScanner)
	if !ok {
		return fmt.Errorf("restore: store %s is stale but cannot list its keys to rebuild", name)
	}
	drop := map[int32]bool{}
	for _, p := range parts {
		drop[p] = true
	}
	var keys [][]byte
	err := ks.ScanKeys(func(k []byte) error {
		p, _, err := st.ChangelogRoute(k, partitionOf)
		if err != nil {
			return err
		}
		if drop[p] {
			keys = append(keys, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: list keys of %s: %w", name, err)
	}
	if err := st.Begin(); err != nil {
		return err
	}
	for _, k := range keys {
		if err := st.Restore(true, k, nil); err != nil {
			st.Abort()
			return fmt.Errorf("restore: drop stale key: %w", err)
		}
	}
	if err := st.CommitAt(nil); err != nil {
		return fmt.Errorf("restore: drop stale partitions: %w", err)
	}
	log.Warn("state of these partitions was last caught up longer ago than the changelogs keep deletions; rebuilding it from the changelogs",
		"store", name, "partitions", parts, "keys_dropped", len(keys))
	return nil
}
