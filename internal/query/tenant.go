package query

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow/go/v17/arrow"

	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// tenantElement is the directory element (after "tenant=") that holds the
// partitions of tenant, which may be given either as the tenant id or, for
// an id the writer had to hash (parquet.TenantElement), as its hashed form.
// An id that merely looks like a hashed form keeps its own partitions when
// it has any; exact (TenantID): it is only ever an id.
func tenantElement(dir, tenant string, exact bool) string {
	e := parquet.TenantElement(tenant)
	if !exact && parquet.IsHashedTenant(tenant) && !tenantHasPartitions(dir, e) {
		return tenant
	}
	return e
}

func tenantHasPartitions(dir, element string) bool {
	tables, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, t := range tables {
		if st, err := os.Stat(filepath.Join(dir, t.Name(), "tenant="+element)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// tableGlob is what a table's view reads: every tenant's files, or only the
// files under one tenant's directory, so that neither the rows nor the
// columns of other tenants (read_parquet unions the schemas of every file
// it reads) reach the view.
func tableGlob(dir, table, element string) string {
	p := filepath.Join(dir, table)
	if element != "" {
		p = filepath.Join(p, "tenant="+element)
	}
	return filepath.ToSlash(p) + "/**/*.parquet"
}

// emptyViewSQL is the view of a table the tenant has no files in: no rows,
// and the table's defined columns only.
func emptyViewSQL(table string) (string, bool) {
	s := normalize.Schema(table)
	if s == nil {
		return "", false
	}
	cols := make([]string, 0, s.NumFields()+1)
	for _, f := range s.Fields() {
		cols = append(cols, fmt.Sprintf("CAST(NULL AS %s) AS %s", duckType(f.Type), quoteIdent(f.Name)))
	}
	cols = append(cols, "CAST(NULL AS VARCHAR) AS tenant")
	return fmt.Sprintf("CREATE VIEW %s AS SELECT %s WHERE false", quoteIdent(table), strings.Join(cols, ", ")), true
}

func duckType(t arrow.DataType) string {
	switch t.ID() {
	case arrow.INT64:
		return "BIGINT"
	case arrow.INT32:
		return "INTEGER"
	case arrow.BOOL:
		return "BOOLEAN"
	case arrow.TIMESTAMP:
		return "TIMESTAMPTZ"
	}
	return "VARCHAR"
}
