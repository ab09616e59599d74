package normalize

import (
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
)

// The accessors read a column of a normalized record by name, never by
// position, so readers keep working when a schema gains (promoted) columns.
// A column the record lacks reads as all null.

func column(rec arrow.Record, name string) arrow.Array {
	if rec == nil {
		return nil
	}
	idx := rec.Schema().FieldIndices(name)
	if len(idx) == 0 {
		return nil
	}
	return rec.Column(idx[0])
}

// StringColumn reads a plain or dictionary-encoded string column.
type StringColumn struct {
	plain *array.String
	dict  *array.Dictionary
	vals  *array.String
}

// Strings returns the string column col of rec (plain utf8 or
// dictionary<int32, utf8>); missing or non-string columns read as null.
func Strings(rec arrow.Record, col string) StringColumn {
	switch a := column(rec, col).(type) {
	case *array.String:
		return StringColumn{plain: a}
	case *array.Dictionary:
		if v, ok := a.Dictionary().(*array.String); ok {
			return StringColumn{dict: a, vals: v}
		}
	}
	return StringColumn{}
}

// Value is row i's string ("" when null).
func (c StringColumn) Value(i int) string {
	switch {
	case c.plain != nil:
		return c.plain.Value(i)
	case c.dict != nil:
		if c.dict.IsNull(i) {
			return ""
		}
		return c.vals.Value(c.dict.GetValueIndex(i))
	}
	return ""
}

// IsNull says whether row i is null (always true for a missing column).
func (c StringColumn) IsNull(i int) bool {
	switch {
	case c.plain != nil:
		return c.plain.IsNull(i)
	case c.dict != nil:
		return c.dict.IsNull(i)
	}
	return true
}

// Int64Column reads an int64 or int32 column as int64.
type Int64Column struct {
	i64 *array.Int64
	i32 *array.Int32
}

// Int64s returns the integer column col of rec (int64 or int32).
func Int64s(rec arrow.Record, col string) Int64Column {
	switch a := column(rec, col).(type) {
	case *array.Int64:
		return Int64Column{i64: a}
	case *array.Int32:
		return Int64Column{i32: a}
	}
	return Int64Column{}
}

// Value is row i's value (0 when null).
func (c Int64Column) Value(i int) int64 {
	switch {
	case c.i64 != nil:
		return c.i64.Value(i)
	case c.i32 != nil:
		return int64(c.i32.Value(i))
	}
	return 0
}

// IsNull says whether row i is null.
func (c Int64Column) IsNull(i int) bool {
	switch {
	case c.i64 != nil:
		return c.i64.IsNull(i)
	case c.i32 != nil:
		return c.i32.IsNull(i)
	}
	return true
}

// TimeColumn reads a timestamp column as time.Time in UTC.
type TimeColumn struct {
	ts   *array.Timestamp
	unit arrow.TimeUnit
}

// Times returns the timestamp column col of rec.
func Times(rec arrow.Record, col string) TimeColumn {
	if a, ok := column(rec, col).(*array.Timestamp); ok {
		return TimeColumn{ts: a, unit: a.DataType().(*arrow.TimestampType).Unit}
	}
	return TimeColumn{}
}

// Value is row i's time (the zero time when null).
func (c TimeColumn) Value(i int) time.Time {
	if c.ts == nil || c.ts.IsNull(i) {
		return time.Time{}
	}
	return c.ts.Value(i).ToTime(c.unit)
}

// IsNull says whether row i is null.
func (c TimeColumn) IsNull(i int) bool {
	return c.ts == nil || c.ts.IsNull(i)
}

// BoolColumn reads a boolean column.
type BoolColumn struct{ b *array.Boolean }

// Bools returns the boolean column col of rec.
func Bools(rec arrow.Record, col string) BoolColumn {
	b, _ := column(rec, col).(*array.Boolean)
	return BoolColumn{b: b}
}

// Value is row i's value (false when null).
func (c BoolColumn) Value(i int) bool { return c.b != nil && !c.b.IsNull(i) && c.b.Value(i) }

// IsNull says whether row i is null.
func (c BoolColumn) IsNull(i int) bool { return c.b == nil || c.b.IsNull(i) }
