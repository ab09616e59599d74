package parquet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Bounds of the hunting layout.
const (
	// DefaultMaxOpenFiles and DefaultMaxBufferedBytes are the defaults of
	// MaxOpenFiles and MaxBufferedBytes.
	DefaultMaxOpenFiles     = 128
	DefaultMaxBufferedBytes = 64 << 20

	// MaxTenantElement is the longest tenant path element kept as the
	// escaped id; longer ones take the hashed form. File names may be 255
	// bytes; this leaves room for "tenant=" and for every file system.
	MaxTenantElement = 128

	// maxSegmentFiles makes Due report true once a segment has finished
	// this many files, so that a replay over many hours commits (and its
	// manifest stays small) instead of gathering files without end.
	maxSegmentFiles = 1024

	hashedPrefixLen = 24
	hashedHexLen    = 32 // 128 bits of SHA-256
)

// TenantElement is the path element of a tenant's partitions (after
// "tenant="): the id escaped Hive style (bytes outside [A-Za-z0-9._-] as
// %XX) when that is at most MaxTenantElement bytes and the id is valid
// UTF-8 without control characters; otherwise the hashed form
//
//	<up to 24 of the id's [A-Za-z0-9._-] characters>~<32 hex digits of its SHA-256>
//
// which no escaped id can be ('~' is always escaped). The mapping is
// stable: the same id always lands in the same directory.
func TenantElement(tenant string) string {
	if e := escape(tenant); len(e) <= MaxTenantElement && plainText(tenant) {
		return e
	}
	return hashedElement(tenant)
}

// IsHashedTenant reports whether s has the shape of a hashed tenant element
// (TenantElement of an id that could not be a path element as it is).
func IsHashedTenant(s string) bool {
	prefix, sum, ok := strings.Cut(s, "~")
	if !ok || len(prefix) > hashedPrefixLen || len(sum) != hashedHexLen || strings.HasPrefix(prefix, ".") {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if !safeByte(prefix[i]) {
			return false
		}
	}
	for i := 0; i < len(sum); i++ {
		if c := sum[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func hashedElement(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < hashedPrefixLen; i++ {
		if c := s[i]; safeByte(c) && !(b.Len() == 0 && c == '.') {
			b.WriteByte(c)
		}
	}
	sum := sha256.Sum256([]byte(s))
	b.WriteByte('~')
	b.WriteString(hex.EncodeToString(sum[:])[:hashedHexLen])
	return b.String()
}

// plainText reports whether s is valid UTF-8 without control characters.
func plainText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return false
		}
	}
	return true
}

// safeName is escape for names the writer makes itself (segments), bounded
// like a tenant element.
func safeName(s string) string {
	if e := escape(s); len(e) <= MaxTenantElement {
		return e
	}
	return hashedElement(s)
}

// ErrInvalidBatch is wrapped by Write's error for a batch that cannot be
// written whatever is retried (a table name that is not a plain
// identifier, no tenant, a column of a type the normalizer never makes).
// Nothing of it was written and the writer stays usable: skip it.
var ErrInvalidBatch = errors.New("invalid batch")

// checkBatch refuses, before anything is written, what a hunting record
// from a careless or hostile producer may hold and the files cannot.
func checkBatch(b normalize.Batch) error {
	if err := checkName("table", b.Table); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidBatch, err)
	}
	if b.Tenant == "" {
		return fmt.Errorf("%w: parquet: batch without tenant", ErrInvalidBatch)
	}
	for _, f := range b.Record.Schema().Fields() {
		if !writableType(f.Type) {
			return fmt.Errorf("%w: parquet: column %q of %s is %s, not a type of the normalized tables", ErrInvalidBatch, f.Name, b.Table, f.Type)
		}
	}
	return nil
}

// writableType reports whether t is one of the column types the normalizer
// makes (schema.go).
func writableType(t arrow.DataType) bool {
	switch t := t.(type) {
	case *arrow.StringType, *arrow.Int64Type, *arrow.Int32Type, *arrow.BooleanType, *arrow.TimestampType:
		return true
	case *arrow.DictionaryType:
		return t.IndexType.ID() == arrow.INT32 && t.ValueType.ID() == arrow.STRING
	}
	return false
}

// partitionColumns are the Hive partition columns readers add from the
// path; a data column of the same name (in any case) would be shadowed.
var partitionColumns = []string{"tenant", "date", "hour"}

// RenamedSuffix is appended to a column whose name a reader could not tell
// from a partition column (tenant, date, hour) or from an earlier column
// of the same file, compared without case as DuckDB and Spark compare
// them: "tenant" is written as "tenant_property", the second of
// "ProcessId"/"processid" as "processid_property" (then "_property2", ...).
const RenamedSuffix = "_property"

// safeColumns returns rec with the columns renamed that readers would
// shadow or merge (see RenamedSuffix), and whether it renamed any; the
// caller releases a renamed record.
func safeColumns(rec arrow.Record) (arrow.Record, bool) {
	fields := rec.Schema().Fields()
	clash := false
	for i, f := range fields {
		if isPartitionColumn(f.Name) {
			clash = true
			break
		}
		for _, g := range fields[:i] {
			if strings.EqualFold(f.Name, g.Name) {
				clash = true
				break
			}
		}
		if clash {
			break
		}
	}
	if !clash {
		return rec, false
	}
	seen := map[string]bool{}
	for _, p := range partitionColumns {
		seen[p] = true
	}
	out := make([]arrow.Field, len(fields))
	for i, f := range fields {
		name := f.Name
		if seen[strings.ToLower(name)] {
			base := name + RenamedSuffix
			name = base
			for n := 2; seen[strings.ToLower(name)]; n++ {
				name = fmt.Sprintf("%s%d", base, n)
			}
		}
		seen[strings.ToLower(name)] = true
		f.Name = name
		out[i] = f
	}
	md := rec.Schema().Metadata()
	schema := arrow.NewSchema(out, &md)
	return array.NewRecord(schema, rec.Columns(), rec.NumRows()), true
}

func isPartitionColumn(name string) bool {
	for _, p := range partitionColumns {
		if strings.EqualFold(name, p) {
			return true
		}
	}
	return false
}
