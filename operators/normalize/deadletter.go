package normalize

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"
	"unicode/utf8"
)

// deadLetter reports one record that could not be normalized. value is the
// record's original bytes (the Kafka value, or one envelope element re-encoded).
func (n *Normalizer) deadLetter(in Input, index int, value []byte, reason Reason, msg string, dead func(DeadLetter)) {
	n.dead[reason]++
	if dead == nil {
		return
	}
	in.Timestamp = deadLetterTime(in.Timestamp, n.cfg.clock)
	dead(NewDeadLetter(in, index, value, reason, msg, n.cfg.dlLimit))
}

// deadLetterTime is the time a dead letter gives: its record's timestamp,
// or now when the record has none, or one outside the years JSON can write
// (0-9999). A producer may set any timestamp, and a dead letter that
// cannot be encoded would fail its stage's transaction on every retry.
func deadLetterTime(t time.Time, now func() time.Time) time.Time {
	if t.IsZero() || t.Year() < 0 || t.Year() > 9999 {
		return now()
	}
	return t
}

// NewDeadLetter describes a record that could not be read, for the
// dead-letter topic: where it was (index: its position in an envelope, -1
// for a whole Kafka record), when (its timestamp, or now: deadLetterTime),
// why, its size and SHA-256, and its bytes
// (as text when they are valid UTF-8, else as base64) up to keep bytes,
// Truncated saying when there were more. Every stage's dead letters have
// this one shape.
func NewDeadLetter(in Input, index int, value []byte, reason Reason, msg string, keep int) DeadLetter {
	sum := sha256.Sum256(value)
	d := DeadLetter{
		Reason: reason, Error: msg,
		Topic: in.Topic, Partition: in.Partition, Offset: in.Offset,
		Time: deadLetterTime(in.Timestamp, time.Now), Index: index,
		Size: len(value), SHA256: hex.EncodeToString(sum[:]),
	}
	v := value
	if len(v) > keep {
		v = v[:keep]
		d.Truncated = true
	}
	if utf8.Valid(value) {
		// Cut on a rune boundary so the kept prefix is still valid text.
		for len(v) > 0 && !utf8.Valid(v) {
			v = v[:len(v)-1]
		}
		d.Value = string(v)
	} else {
		d.ValueBase64 = base64.StdEncoding.EncodeToString(v)
	}
	return d
}
