package httpapi

import (
	"regexp"
	"slices"
	"testing"

	"github.com/stitch-xdr/stitch/internal/view"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// Every entity type's telemetry reads a hunting table that exists, by
// columns it has.
func TestEntityTelemetryNamesRealColumns(t *testing.T) {
	words := regexp.MustCompile(`\b[A-Z][A-Za-z0-9]+\b`)
	for typ, src := range telemetrySource {
		if !slices.Contains(view.EntityTypes, typ) {
			t.Errorf("telemetry of unknown entity type %s", typ)
		}
		s := normalize.Schema(src.table)
		if s == nil {
			t.Errorf("%s: no table %s", typ, src.table)
			continue
		}
		for _, col := range append(words.FindAllString(src.where("'x'"), -1), "Timestamp") {
			if col == "CAST" || col == "AS" || col == "VARCHAR" || col == "OR" || col == "LIKE" {
				continue
			}
			if len(s.FieldIndices(col)) == 0 {
				t.Errorf("%s: table %s has no column %s", typ, src.table, col)
			}
		}
	}
}
