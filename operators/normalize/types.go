// Package normalize turns Microsoft 365 Defender streaming-API records (and
// advanced-hunting export rows) into typed Apache Arrow batches, one schema per
// advanced-hunting table, and turns everything it cannot normalize into a
// DeadLetter with a machine-readable Reason.
//
// This file is the contract other packages build on: Input (a raw record and
// where it came from), Batch (an Arrow record of one table and one tenant) and
// DeadLetter (a record that could not be normalized, and why).
package normalize

import (
	"time"

	"github.com/apache/arrow/go/v17/arrow"
)

// Input is one raw record as read from a source: a Kafka record or a line of a
// replay file. Value is not retained after Normalizer.Add returns.
type Input struct {
	Topic     string
	Partition int32
	Offset    int64
	Value     []byte
	// Timestamp is the broker/append time; event time comes from the record.
	Timestamp time.Time
}

// Batch is a run of normalized rows of one table and one tenant.
//
// Record follows Schema(Table) (or a superset of it after schema evolution:
// columns are matched by name, never by position). The receiver owns one
// reference and must call Release when done.
type Batch struct {
	Table  string
	Tenant string
	Record arrow.Record
	// Bytes is the approximate size of the input that produced the batch.
	Bytes int64
	// MinTime and MaxTime bound the rows' Timestamp column (event time).
	MinTime, MaxTime time.Time
}

// Release drops the batch's reference to its Arrow record.
func (b Batch) Release() {
	if b.Record != nil {
		b.Record.Release()
	}
}

// Reason says, in a stable machine-readable word, why a record was dead-lettered.
type Reason string

// The dead-letter reasons. They are part of stitch's output contract (the
// deadletter topic, deadletter.jsonl, metrics labels): add, never rename.
const (
	ReasonNotJSON         Reason = "not_json"           // not parsable as JSON
	ReasonNotObject       Reason = "not_object"         // JSON, but not an object
	ReasonMissingCategory Reason = "missing_category"   // no category field
	ReasonUnknownCategory Reason = "unknown_category"   // category names no known table
	ReasonMissingTenant   Reason = "missing_tenant"     // no tenantId
	ReasonBadTimestamp    Reason = "bad_timestamp"      // time/Timestamp missing or unparsable
	ReasonWrongType       Reason = "wrong_type"         // a typed column holds a value of another type
	ReasonTooLarge        Reason = "too_large"          // over the configured record size limit
	ReasonInvalidUTF8     Reason = "invalid_utf8"       // bytes that are not UTF-8
	ReasonTooDeep         Reason = "too_deep"           // nesting deeper than the configured limit
	ReasonMissingProps    Reason = "missing_properties" // streaming record without a properties object
	ReasonUnknownTable    Reason = "unknown_table"      // export row whose table could not be inferred
	ReasonBlocked         Reason = "blocked_indicator"  // reserved: dropped by block-on-sight policy
	ReasonOutOfRange      Reason = "out_of_range"       // a whole number the integer column cannot hold
	ReasonBadTenant       Reason = "bad_tenant"         // a tenantId that cannot name a tenant (holds a NUL byte)
	ReasonDuplicateKey    Reason = "duplicate_key"      // a key the normalizer reads appears twice in its object
	ReasonNoTable         Reason = "no_table"           // a Windows event that no table expresses (which event is in the error)
	ReasonBadEvent        Reason = "bad_event"          // a Windows event without a usable EventID or host
)

// DeadLetter is a record that could not be normalized. It is written as JSON
// to the deadletter topic and to deadletter.jsonl.
type DeadLetter struct {
	Reason    Reason    `json:"reason"`
	Error     string    `json:"error"`
	Topic     string    `json:"topic,omitempty"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`
	// Index is the position of the record inside an Event Hubs envelope
	// ({"records": [...]}) or -1 when the Kafka record was a single record.
	Index int `json:"index"`
	// Size is the original size in bytes and SHA256 its hash; Value holds the
	// original bytes as text, truncated to the configured limit when larger
	// (Truncated says so). ValueBase64 is used instead when the bytes are not
	// valid UTF-8.
	Size        int    `json:"size"`
	SHA256      string `json:"sha256"`
	Truncated   bool   `json:"truncated"`
	Value       string `json:"value,omitempty"`
	ValueBase64 string `json:"value_base64,omitempty"`
}
