package pipeline

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/operators/correlate"
	"github.com/stitch-xdr/stitch/state"
)

// Changelogs. The correlation store is a local cache of two Kafka topics,
// as a Kafka Streams store is of its changelog: every point write of a
// transaction (state.Batch.Changes) is produced inside that same Kafka
// transaction, to the partition of the facts it belongs to, so the
// changelogs hold exactly the state of committed transactions and a store
// can be rebuilt from them anywhere (restore.go).
//
//   - topics.changelog (cleanup.policy=compact): timeless state (incidents,
//     alert placements, identity links), the facts offsets each transaction
//     covers, and the partition watermarks. Deletions are tombstones.
//   - topics.window_changelog (compact,delete): bucketed state (entity index,
//     prevalence sightings, early evidence). Buckets expire in every replica
//     by the watermark, with no tombstone; the topic deletes by time after
//     the longest a bucket lives.
//
// Key: the Pebble key. Value: 's' then the Pebble value (so an empty value is
// not a tombstone); a tombstone (null value) for a deletion. Both topics
// have the facts topic's partition count, and a change goes to the facts
// partition of its tenant (the producer's partitioner over the tenant, as
// the normalize stage keys facts), so partition p of the changelogs is the
// state of facts partition p.

// changelogValueSet prefixes a changelog value that sets its key.
const changelogValueSet = 's'

// changelogSpecs are the changelog topics, as EnsureTopics creates them.
func (p *Pipeline) changelogSpecs() []kafka.TopicSpec {
	t := p.cfg.Topics
	main := kafka.TopicSpec{Name: t.Changelog, Partitions: t.Partitions, ReplicationFactor: t.ReplicationFactor,
		Configs: map[string]string{
			"cleanup.policy": "compact",
			// A tombstone is kept this long after compaction: a store that was
			// away from a partition for longer may keep a deleted key.
			"delete.retention.ms": strconv.FormatInt((7 * 24 * time.Hour).Milliseconds(), 10),
		}}
	window := kafka.TopicSpec{Name: t.WindowChangelog, Partitions: t.Partitions, ReplicationFactor: t.ReplicationFactor,
		Configs: map[string]string{
			"cleanup.policy": "compact,delete",
			"retention.ms":   strconv.FormatInt(windowRetention(p.cfg.Correlate).Milliseconds(), 10),
		}}
	return []kafka.TopicSpec{main, window}
}

// windowRetention is how long the window changelog keeps a record: the
// longest any bucket lives (its width plus what expiry keeps behind the
// watermark), plus a day for event time running behind wall-clock time.
func windowRetention(c CorrelateConfig) time.Duration {
	late := c.AllowedLateness.D()
	return max(2*c.Window.D()+late, 2*c.Grace.D()+late, c.PrevalenceLookback.D()+late+correlate.PrevalenceBucket) + 24*time.Hour
}

// changelog writes a correlator's transactions to its changelog topics and
// remembers how far it wrote, which the store records when it commits.
type changelog struct {
	topic, window string
	facts         string // the facts topic, whose partitioner places tenants

	mu     sync.Mutex
	nparts int
	part   kgo.TopicPartitioner
	tenant map[string]int32
	last   map[string]*kgo.Record // timeless key → its record in this transaction
	order  []*kgo.Record

	// posMu guards pos apart from mu: produce callbacks record positions
	// while emit (holding mu) may wait for buffer space.
	posMu sync.Mutex
	pos   map[state.TopicPartition]int64 // highest offset produced, per changelog partition
}

func newChangelog(cfg TopicsConfig) *changelog {
	return &changelog{topic: cfg.Changelog, window: cfg.WindowChangelog, facts: cfg.Facts,
		part: kgo.StickyKeyPartitioner(nil).ForTopic(cfg.Facts), tenant: map[string]int32{},
		pos: map[state.TopicPartition]int64{}, last: map[string]*kgo.Record{}}
}

// setPartitions sets the facts topic's partition count, which places tenants.
func (c *changelog) setPartitions(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n != c.nparts {
		c.nparts = n
		clear(c.tenant)
	}
}

func (c *changelog) partitionOf(tenant []byte) int32 {
	if p, ok := c.tenant[string(tenant)]; ok {
		return p
	}
	p := int32(c.part.Partition(&kgo.Record{Key: tenant}, c.nparts))
	c.tenant[string(tenant)] = p
	return p
}

// emit produces the changelog records of the correlator's open transaction
// through produce and says how many. Windowed changes stream out as they
// come (a transaction can hold a sighting for every telemetry record it
// consumed: they are never collected); timeless ones go last, only the
// last write of each key (an incident is rewritten by every alert that
// touches it). The facts offsets a transaction covers go to both topics, so
// that a restore can tell that each holds the transaction.
func (c *changelog) emit(cor *correlate.Correlator, produce func(*kgo.Record)) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nparts <= 0 {
		return 0, fmt.Errorf("changelog: the partition count of %s is not known yet", c.facts)
	}
	clear(c.last)
	order := c.order[:0]
	n := 0
	err := cor.Changes(func(del bool, k, v []byte) error {
		p, windowed, err := correlate.ChangelogRoute(k, c.partitionOf)
		if err != nil {
			return err
		}
		if p < 0 || int(p) >= c.nparts {
			return fmt.Errorf("changelog: key %q routes to partition %d of %d", k, p, c.nparts)
		}
		if windowed {
			produce(changelogRecord(c.window, p, del, k, v))
			n++
			return nil
		}
		r := changelogRecord(c.topic, p, del, k, v)
		if prev, ok := c.last[string(k)]; ok {
			*prev = *r
		} else {
			c.last[string(r.Key)] = r
			order = append(order, r)
		}
		if tp, ok := state.ParseOffsetKey(k); ok && tp.Topic == c.facts {
			produce(changelogRecord(c.window, p, del, k, v))
			n++
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("changelog: %w", err)
	}
	for _, r := range order {
		produce(r)
	}
	n += len(order)
	clear(order)
	c.order = order[:0]
	return n, nil
}

// changelogRecord is the record of one change, in an allocation of its own
// (the batch it comes from is released when the store commits).
func changelogRecord(topic string, p int32, del bool, k, v []byte) *kgo.Record {
	n := len(k)
	if !del {
		n += 1 + len(v)
	}
	buf := make([]byte, 0, n)
	buf = append(buf, k...)
	r := &kgo.Record{Topic: topic, Partition: p, Key: buf[:len(k):len(k)]}
	if !del {
		buf = append(buf, changelogValueSet)
		buf = append(buf, v...)
		r.Value = buf[len(k):]
	}
	return r
}

// produced records where a changelog record landed.
func (c *changelog) produced(r *kgo.Record) {
	c.posMu.Lock()
	defer c.posMu.Unlock()
	tp := state.TopicPartition{Topic: r.Topic, Partition: r.Partition}
	if cur, ok := c.pos[tp]; !ok || r.Offset > cur {
		c.pos[tp] = r.Offset
	}
}

// positions hands over (and forgets) the offsets produced since the last
// call: what the store records with the transaction's state.
func (c *changelog) positions() map[state.TopicPartition]int64 {
	c.posMu.Lock()
	defer c.posMu.Unlock()
	out := c.pos
	c.pos = map[state.TopicPartition]int64{}
	return out
}

// changelogPartitioner places changelog records on the partition they name
// and every other record as the default partitioner would.
type changelogPartitioner struct {
	manual map[string]bool
	def    kgo.Partitioner
}

func (c changelogPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if c.manual[topic] {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return c.def.ForTopic(topic)
}

// decodeChange reads a changelog record back into a store write.
func decodeChange(r *kgo.Record) (del bool, val []byte, err error) {
	if r.Value == nil {
		return true, nil, nil
	}
	if len(r.Value) == 0 || r.Value[0] != changelogValueSet {
		return false, nil, fmt.Errorf("changelog record %s/%d@%d: value is not a stitch state change", r.Topic, r.Partition, r.Offset)
	}
	return false, r.Value[1:], nil
}
