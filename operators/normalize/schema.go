package normalize

//go:generate go run ./gen ../../../shared/data/m365d/advanced-hunting-tables/columns.tsv tables_gen.go

import (
	"strconv"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"
)

// SchemaVersion is the version of the generated table schemas. A Normalizer
// bumps its per-(table, tenant) version each time it promotes an undefined
// column for that tenant.
const SchemaVersion = 1

// Schema metadata keys.
const (
	MetaTable         = "stitch.table"
	MetaSchemaVersion = "stitch.schema_version"
	// MetaColumnType is field metadata naming the advanced-hunting type of a
	// column ("dynamic" for JSON text, "extra" for a promoted column).
	MetaColumnType = "stitch.type"
)

// CategoryPrefix starts the category of every advanced-hunting streaming record.
const CategoryPrefix = "AdvancedHunting-"

// ExtraFieldsColumn holds, as one JSON object, the undefined columns of a row
// once a table has promoted MaxExtraColumns columns for the row's tenant.
const ExtraFieldsColumn = "ExtraFields"

// MaxExtraColumns bounds how many undefined columns a table promotes to real
// columns for one tenant (promotion is per tenant), so a producer that
// invents keys cannot grow a schema without end, nor use up another
// tenant's budget.
const MaxExtraColumns = 64

type kind uint8

const (
	kindString kind = iota
	kindDict        // low-cardinality string, dictionary<int32, utf8>
	kindLong
	kindInt
	kindBool
	kindTime
	kindDynamic // JSON text in a utf8 column
)

var kindNames = [...]string{"string", "string", "long", "int", "bool", "datetime", "dynamic"}

type columnDef struct {
	name string
	kind kind
}

type tableDef struct {
	name    string
	columns []columnDef
}

// dictColumns are the string columns stored as dictionaries. Dictionaries cost
// throughput on the build side, so only columns with a handful of distinct
// values that queries group and filter by are chosen.
var dictColumns = map[string]bool{
	"ActionType": true, "Application": true, "Protocol": true, "ServiceSource": true,
	"DetectionSource": true, "Severity": true, "Category": true, "EntityType": true,
	"EvidenceRole": true, "LogonType": true, "DeliveryAction": true, "DeliveryLocation": true,
	"EmailDirection": true, "OSPlatform": true, "DeviceType": true, "CountryCode": true,
}

var (
	timestampType  = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	dictStringType = &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}
)

// table is the run-time form of a table definition.
type table struct {
	name    string
	columns []columnDef
	index   map[string]int
	schema  *arrow.Schema
	ts      int // index of the Timestamp column
	pos     int // position in tables
	bit     uint32
}

var (
	tables     []*table
	tableIndex = map[string]*table{}
	tableNames []string
	// columnTables maps a column name to the set (bit per table) of tables
	// defining it; import-mode inference scores tables with it.
	columnTables = map[string]uint32{}
)

func init() {
	for i, d := range tableDefs {
		t := &table{name: d.name, index: make(map[string]int, len(d.columns)), ts: -1, pos: i, bit: 1 << uint(i)}
		for _, c := range d.columns {
			if c.kind == kindString && dictColumns[c.name] {
				c.kind = kindDict
			}
			if c.name == "Timestamp" {
				t.ts = len(t.columns)
			}
			t.index[c.name] = len(t.columns)
			t.columns = append(t.columns, c)
			columnTables[c.name] |= t.bit
		}
		t.schema = buildSchema(t.name, t.columns, SchemaVersion)
		tables = append(tables, t)
		tableIndex[t.name] = t
		tableNames = append(tableNames, t.name)
	}
}

func arrowType(k kind) arrow.DataType {
	switch k {
	case kindDict:
		return dictStringType
	case kindLong:
		return arrow.PrimitiveTypes.Int64
	case kindInt:
		return arrow.PrimitiveTypes.Int32
	case kindBool:
		return arrow.FixedWidthTypes.Boolean
	case kindTime:
		return timestampType
	default:
		return arrow.BinaryTypes.String
	}
}

func field(c columnDef, extra bool) arrow.Field {
	typ := kindNames[c.kind]
	if extra {
		typ = "extra"
	}
	return arrow.Field{
		Name: c.name, Type: arrowType(c.kind), Nullable: true,
		Metadata: arrow.NewMetadata([]string{MetaColumnType}, []string{typ}),
	}
}

// buildSchema makes the Arrow schema of a table's columns; columns past the
// table's defined ones are promoted extras.
func buildSchema(name string, cols []columnDef, version int) *arrow.Schema {
	def := len(cols)
	if t := tableIndex[name]; t != nil {
		def = len(t.columns)
	}
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = field(c, i >= def)
	}
	md := arrow.NewMetadata([]string{MetaTable, MetaSchemaVersion}, []string{name, strconv.Itoa(version)})
	return arrow.NewSchema(fields, &md)
}

// Tables lists the advanced-hunting tables stitch normalizes, sorted by name.
func Tables() []string {
	return append([]string(nil), tableNames...)
}

// Schema is the Arrow schema of an advanced-hunting table (version
// SchemaVersion, before any promoted column), or nil for an unknown table.
func Schema(table string) *arrow.Schema {
	if t := tableIndex[table]; t != nil {
		return t.schema
	}
	return nil
}

// TableOf maps a streaming-API category ("AdvancedHunting-DeviceProcessEvents")
// to its table ("DeviceProcessEvents").
func TableOf(category string) (string, bool) {
	name, ok := strings.CutPrefix(category, CategoryPrefix)
	if !ok {
		return "", false
	}
	if t := tableIndex[name]; t != nil {
		return t.name, true
	}
	return "", false
}
