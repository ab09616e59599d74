package normalize

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"unicode/utf8"
)

// deadLetter reports one record that could not be normalized. value is the
// record's original bytes (the Kafka value, or one envelope element re-encoded).
func (n *Normalizer) deadLetter(in Input, index int, value []byte, reason Reason, msg string, dead func(DeadLetter)) {
	n.dead[reason]++
	if dead == nil {
		return
	}
	sum := sha256.Sum256(value)
	d := DeadLetter{
		Reason: reason, Error: msg,
		Topic: in.Topic, Partition: in.Partition, Offset: in.Offset,
		Time: in.Timestamp, Index: index,
		Size: len(value), SHA256: hex.EncodeToString(sum[:]),
	}
	if d.Time.IsZero() {
		d.Time = n.cfg.clock()
	}
	v := value
	if len(v) > n.cfg.dlLimit {
		v = v[:n.cfg.dlLimit]
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
	dead(d)
}
