package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Key layout (documented in LAYOUT.md). Every key starts with a one-byte
// namespace:
//
//	0x01 topic 0x00 partition(u32 BE)                 -> offset (u64 BE)
//	0x02 partition(u32 BE)                            -> watermark (i64 sortable BE)
//	'T' space tenant 0x00 rest...                     -> timeless, per tenant
//	'B' space bucket(i64 sortable BE) tenant 0x00 ... -> expires by bucket
//
// Putting the bucket before the tenant in 'B' keys makes one bucket of one
// space a single contiguous range across all tenants, so expiry is one
// DeleteRange per bucket; within a bucket, keys are still tenant-prefixed.
const (
	nsOffset  = 0x01
	nsMark    = 0x02
	nsTenant  = 'T'
	nsBucketd = 'B'
	sep       = 0x00
)

var offsetPrefix = []byte{nsOffset}

// ErrBadTenant is returned for tenant ids that cannot be used in keys.
var ErrBadTenant = errors.New("state: tenant id empty or contains NUL")

// ValidTenant says whether tenant can prefix keys (non-empty, no NUL byte).
func ValidTenant(tenant string) bool {
	return tenant != "" && !strings.ContainsRune(tenant, sep)
}

// TenantKey appends the prefix of a timeless key of space for tenant to dst;
// callers append the rest of the key.
func TenantKey(dst []byte, space byte, tenant string) []byte {
	dst = append(dst, nsTenant, space)
	dst = append(dst, tenant...)
	return append(dst, sep)
}

// BucketKey appends the prefix of a key of space in time bucket b for tenant.
func BucketKey(dst []byte, space byte, b int64, tenant string) []byte {
	dst = BucketPrefix(dst, space, b)
	dst = append(dst, tenant...)
	return append(dst, sep)
}

// BucketPrefix appends the prefix shared by all keys of space in bucket b.
func BucketPrefix(dst []byte, space byte, b int64) []byte {
	dst = append(dst, nsBucketd, space)
	return AppendInt64(dst, b)
}

// BucketRange returns [start, end) covering buckets from (inclusive) to to
// (exclusive) of space, for all tenants: pass it to DeleteRange.
func BucketRange(space byte, from, to int64) (start, end []byte) {
	return BucketPrefix(nil, space, from), BucketPrefix(nil, space, to)
}

// ParseBucketKey splits a bucketed key into its bucket, tenant and the rest.
func ParseBucketKey(key []byte) (b int64, tenant string, rest []byte, err error) {
	if len(key) < 10 || key[0] != nsBucketd {
		return 0, "", nil, fmt.Errorf("state: not a bucketed key: %q", key)
	}
	b = ReadInt64(key[2:10])
	tail := key[10:]
	for i, c := range tail {
		if c == sep {
			return b, string(tail[:i]), tail[i+1:], nil
		}
	}
	return 0, "", nil, fmt.Errorf("state: bucketed key without tenant: %q", key)
}

// Bucket is the index of the width-wide time bucket holding t.
func Bucket(t time.Time, width time.Duration) int64 {
	ns := t.UnixNano()
	w := int64(width)
	b := ns / w
	if ns < 0 && ns%w != 0 {
		b-- // floor, so buckets are contiguous across the epoch
	}
	return b
}

// BucketStart is the first instant of bucket b.
func BucketStart(b int64, width time.Duration) time.Time {
	return time.Unix(0, b*int64(width)).UTC()
}

// AppendString appends s and a NUL terminator (s must not contain NUL), so a
// string component sorts before longer strings sharing its prefix.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, s...)
	return append(dst, sep)
}

// AppendInt64 appends v so that byte order is numeric order (sign bit flipped).
func AppendInt64(dst []byte, v int64) []byte { return appendUint64(dst, uint64(v)^(1<<63)) }

// ReadInt64 reads a value written by AppendInt64.
func ReadInt64(b []byte) int64 { return int64(readUint64(b) ^ (1 << 63)) }

func appendUint64(dst []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(dst, v) }
func readUint64(b []byte) uint64               { return binary.BigEndian.Uint64(b) }

// PrefixEnd is the smallest key greater than every key starting with prefix.
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // all 0xff: no upper bound
}

// OffsetKey is the key of the committed offset of topic/partition.
func OffsetKey(topic string, partition int32) []byte {
	k := append([]byte{nsOffset}, topic...)
	k = append(k, sep)
	return binary.BigEndian.AppendUint32(k, uint32(partition))
}

// ParseOffsetKey says which topic/partition an offset key records; ok is
// false for any other key (cheap: it runs for every key a changelog routes).
func ParseOffsetKey(k []byte) (tp TopicPartition, ok bool) {
	if len(k) < 6 || k[0] != nsOffset || k[len(k)-5] != sep {
		return TopicPartition{}, false
	}
	return TopicPartition{
		Topic:     string(k[1 : len(k)-5]),
		Partition: int32(binary.BigEndian.Uint32(k[len(k)-4:])),
	}, true
}

// WatermarkPrefix is the prefix of every watermark key.
var WatermarkPrefix = []byte{nsMark}

// WatermarkKey is the key of the event-time watermark of input partition
// partition: how far in event time the state has seen that partition, kept
// beside its offset so a restarted operator has the clock it had. The value
// is AppendInt64 of the time in Unix nanoseconds.
func WatermarkKey(partition int32) []byte {
	return binary.BigEndian.AppendUint32([]byte{nsMark}, uint32(partition))
}

// ParseWatermarkKey says which partition a watermark key is of; ok is false
// for any other key.
func ParseWatermarkKey(k []byte) (partition int32, ok bool) {
	if len(k) != 5 || k[0] != nsMark {
		return 0, false
	}
	return int32(binary.BigEndian.Uint32(k[1:])), true
}

// KeyTenant is the tenant of a timeless or bucketed key; ok is false for keys
// of other namespaces.
func KeyTenant(k []byte) (tenant []byte, bucketed, ok bool) {
	var tail []byte
	switch {
	case len(k) > 2 && k[0] == nsTenant:
		tail = k[2:]
	case len(k) > 10 && k[0] == nsBucketd:
		tail, bucketed = k[10:], true
	default:
		return nil, false, false
	}
	i := bytes.IndexByte(tail, sep)
	if i <= 0 {
		return nil, false, false
	}
	return tail[:i], bucketed, true
}
