package pipeline

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/stitch-xdr/stitch/connectors/kafka"
	"github.com/stitch-xdr/stitch/state"
)

// Changelogs. A stage's state store is a local cache of its changelog
// topics, as a Kafka Streams store is: every point write of a transaction
// (StateStore.Changes) is produced inside that same Kafka transaction, to the
// partition of the input it belongs to, so the changelogs hold exactly the
// state of committed transactions and a store can be rebuilt from them
// anywhere (restore.go).
//
// A store has one or two changelogs. The first takes timeless state (and
// deletions as tombstones; cleanup.policy=compact); the second, if declared,
// windowed state (compact,delete): buckets expire in every replica by the
// watermark, with no tombstone, and the topic deletes by time after the
// longest a bucket lives. The correlation store has both
// (topics.changelog, topics.window_changelog).
//
// Key: the store key. Value: 's' then the store value (so an empty value is
// not a tombstone); a tombstone (null value) for a deletion. Changelogs have
// the input topic's partition count, and a change goes to the partition
// StateStore.ChangelogRoute names (for tenant keys, the input partition of
// the tenant: the producer's partitioner over the tenant, as the facts are
// keyed), so partition p of the changelogs is the state of input partition p.

// changelogValueSet prefixes a changelog value that sets its key.
const changelogValueSet = 's'

// changelogValueGroup prefixes the value of a grouped record: windowed
// keys with empty values that share a prefix (a store says which:
// changelogGrouper), written by one transaction, at most
// maxGroupBytes of them a record. Its key is the prefix, 0xff, the input
// offset the transaction reached on the partition (8 bytes, big-endian;
// unique per committed transaction) and the record's number within the
// group (4 bytes), so that compaction never drops one record for another;
// its value is changelogValueGroup then each key's rest, uvarint length
// first. A restore sets prefix+rest to the empty value for each: the store
// is the same as if every key had had its own record.
const changelogValueGroup = 'g'

// maxGroupBytes bounds the keys' rests one grouped record carries (well
// under a broker's default message size).
const maxGroupBytes = 64 << 10

// groupKeySuffix is what a grouped record's key adds to the prefix.
const groupKeySuffix = 1 + 8 + 4

// changelogGrouper is a store whose windowed changes may travel grouped:
// ChangelogGroup returns the length of the prefix a change shares with
// the others of its group, or 0 for one that travels alone.
type changelogGrouper interface {
	ChangelogGroup(key, val []byte) int
}

// changelogGroup is one group of a transaction's windowed changes.
type changelogGroup struct {
	part   int32
	prefix string
	chunk  uint32 // the record's number within its group
	rests  []byte // uvarint length, rest; per key
	n      int
}

// changelogWriter writes a store's transactions to its changelog topics
// and remembers how far it wrote, which the store records when it commits.
type changelogWriter struct {
	topic, window string
	input         string // the input topic, whose partitioner places tenants

	mu      sync.Mutex
	nparts  int
	part    kgo.TopicPartitioner
	tenant  map[string]int32
	last    map[string]*kgo.Record // timeless key → its record in this transaction
	order   []*kgo.Record
	groups  map[string]int // partition and prefix → index in grouped
	grouped []changelogGroup
	reached map[int32][]byte // input partition → the offset the transaction reached (8 bytes)

	// posMu guards pos apart from mu: produce callbacks record positions
	// while emit (holding mu) may wait for buffer space.
	posMu sync.Mutex
	pos   map[state.TopicPartition]int64 // highest offset produced, per changelog partition
}

// newChangelogWriter writes to topics[0] (timeless) and topics[1]
// (windowed; topics[0] too if there is no second).
func newChangelogWriter(topics []string, input string) *changelogWriter {
	c := &changelogWriter{topic: topics[0], window: topics[0], input: input,
		part: kgo.StickyKeyPartitioner(nil).ForTopic(input), tenant: map[string]int32{},
		pos: map[state.TopicPartition]int64{}, last: map[string]*kgo.Record{}}
	if len(topics) > 1 {
		c.window = topics[1]
	}
	return c
}

func (c *changelogWriter) partitionOf(tenant []byte) int32 {
	if p, ok := c.tenant[string(tenant)]; ok {
		return p
	}
	p := int32(c.part.Partition(&kgo.Record{Key: tenant}, c.nparts))
	c.tenant[string(tenant)] = p
	return p
}

// emit produces the changelog records of the store's open transaction
// through produce and says how many; nparts is the input's partition count.
// Windowed changes stream out as they come (a transaction can hold a
// sighting for every telemetry record it consumed: they are never
// collected); timeless ones go last, only the last write of each key (an
// incident is rewritten by every alert that touches it). The input offsets
// a transaction covers go to both topics, so that a restore can tell that
// each holds the transaction.
func (c *changelogWriter) emit(st StateStore, nparts int, produce func(*kgo.Record)) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nparts <= 0 {
		return 0, fmt.Errorf("changelog: the partition count of %s is not known yet", c.input)
	}
	if nparts != c.nparts {
		c.nparts = nparts
		clear(c.tenant)
	}
	clear(c.last)
	order := c.order[:0]
	n := 0
	grouper, _ := st.(changelogGrouper)
	if c.groups == nil {
		c.groups, c.reached = map[string]int{}, map[int32][]byte{}
	}
	clear(c.groups)
	clear(c.reached)
	c.grouped = c.grouped[:0]
	err := st.Changes(func(del bool, k, v []byte) error {
		p, windowed, err := st.ChangelogRoute(k, c.partitionOf)
		if err != nil {
			return err
		}
		if p < 0 || int(p) >= c.nparts {
			return fmt.Errorf("changelog: key %q routes to partition %d of %d", k, p, c.nparts)
		}
		if windowed {
			if grouper != nil && !del {
				if pl := grouper.ChangelogGroup(k, v); pl > 0 {
					c.group(p, k, pl)
					return nil
				}
			}
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
		if c.window != c.topic {
			if tp, ok := state.ParseOffsetKey(k); ok && tp.Topic == c.input {
				if !del && len(v) == 8 {
					c.reached[p] = append(c.reached[p][:0], v...)
				}
				produce(changelogRecord(c.window, p, del, k, v))
				n++
			}
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("changelog: %w", err)
	}
	// Groups go after the other windowed changes and before the timeless
	// ones (a sighting is never deleted but with its whole bucket, by the
	// watermark, which is timeless).
	for i := range c.grouped {
		g := &c.grouped[i]
		reached, ok := c.reached[g.part]
		if (g.n == 1 && g.chunk == 0) || !ok {
			// One key, or (never expected) no input offset to name the
			// group by: every key its own record.
			for rest, off := []byte(nil), 0; off < len(g.rests); {
				l, w := binary.Uvarint(g.rests[off:])
				rest, off = g.rests[off+w:off+w+int(l)], off+w+int(l)
				produce(changelogRecord(c.window, g.part, false, append([]byte(g.prefix), rest...), nil))
				n++
			}
			continue
		}
		produce(groupRecord(c.window, g, reached))
		n++
	}
	for _, r := range order {
		produce(r)
	}
	n += len(order)
	clear(order)
	c.order = order[:0]
	return n, nil
}

// group adds a windowed change (key k, empty value, prefix length pl) to
// its group.
func (c *changelogWriter) group(p int32, k []byte, pl int) {
	var pb [4]byte
	binary.BigEndian.PutUint32(pb[:], uint32(p))
	id := string(pb[:]) + string(k[:pl])
	i, ok := c.groups[id]
	if !ok {
		i = len(c.grouped)
		c.groups[id] = i
		c.grouped = append(c.grouped, changelogGroup{part: p, prefix: string(k[:pl])})
	}
	if g := &c.grouped[i]; len(g.rests) >= maxGroupBytes {
		chunk := g.chunk + 1
		i = len(c.grouped)
		c.groups[id] = i
		c.grouped = append(c.grouped, changelogGroup{part: p, prefix: string(k[:pl]), chunk: chunk})
	}
	g := &c.grouped[i]
	g.rests = binary.AppendUvarint(g.rests, uint64(len(k)-pl))
	g.rests = append(g.rests, k[pl:]...)
	g.n++
}

// groupRecord is the record of a group of changes (changelogValueGroup).
func groupRecord(topic string, g *changelogGroup, reached []byte) *kgo.Record {
	buf := make([]byte, 0, len(g.prefix)+groupKeySuffix+1+len(g.rests))
	buf = append(buf, g.prefix...)
	buf = append(buf, 0xff)
	buf = append(buf, reached...)
	buf = binary.BigEndian.AppendUint32(buf, g.chunk)
	kl := len(buf)
	buf = append(buf, changelogValueGroup)
	buf = append(buf, g.rests...)
	return &kgo.Record{Topic: topic, Partition: g.part, Key: buf[:kl:kl], Value: buf[kl:]}
}

// expandGroup calls set for every key of a grouped record.
func expandGroup(r *kgo.Record, set func(key []byte) error) error {
	if len(r.Key) < groupKeySuffix || r.Key[len(r.Key)-groupKeySuffix] != 0xff || len(r.Value) == 0 || r.Value[0] != changelogValueGroup {
		return fmt.Errorf("changelog record %s/%d@%d: not a group of changes", r.Topic, r.Partition, r.Offset)
	}
	prefix := r.Key[:len(r.Key)-groupKeySuffix]
	rests := r.Value[1:]
	var k []byte
	for len(rests) > 0 {
		l, w := binary.Uvarint(rests)
		if w <= 0 || uint64(len(rests)-w) < l {
			return fmt.Errorf("changelog record %s/%d@%d: truncated group", r.Topic, r.Partition, r.Offset)
		}
		k = append(append(k[:0], prefix...), rests[w:w+int(l)]...)
		if err := set(k); err != nil {
			return err
		}
		rests = rests[w+int(l):]
	}
	return nil
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
func (c *changelogWriter) produced(r *kgo.Record) {
	c.posMu.Lock()
	defer c.posMu.Unlock()
	tp := state.TopicPartition{Topic: r.Topic, Partition: r.Partition}
	if cur, ok := c.pos[tp]; !ok || r.Offset > cur {
		c.pos[tp] = r.Offset
	}
}

// positions hands over (and forgets) the offsets produced since the last
// call: what the store records with the transaction's state.
func (c *changelogWriter) positions() map[state.TopicPartition]int64 {
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

// ChangelogTopic is the spec of a store's timeless changelog: compacted,
// deletions kept as tombstones for a week.
func ChangelogTopic(name string) kafka.TopicSpec {
	return kafka.TopicSpec{Name: name, Configs: map[string]string{
		"cleanup.policy": "compact",
		// A tombstone is kept this long after compaction: a store that was
		// away from a partition for longer may keep a deleted key.
		"delete.retention.ms": strconv.FormatInt((7 * 24 * time.Hour).Milliseconds(), 10),
	}}
}

// WindowChangelogTopic is the spec of a store's windowed changelog:
// compacted, and deleted after retention (the longest a bucket lives).
func WindowChangelogTopic(name string, retention time.Duration) kafka.TopicSpec {
	return kafka.TopicSpec{Name: name, Configs: map[string]string{
		"cleanup.policy": "compact,delete",
		"retention.ms":   strconv.FormatInt(retention.Milliseconds(), 10),
	}}
}
