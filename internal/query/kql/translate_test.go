package kql

import (
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" driver
)

// The files under testdata/translate are datadriven cases (go test -rewrite
// rewrites their expectations). Two commands:
//
//	translate: the KQL input's exact SQL, or "error: <message>";
//	query [ordered] [columns]: the answer of the KQL input over the tables
//	of testdata/setup.sql, one row a line, cells separated by " | ", sorted
//	unless ordered, after a line of the column names with columns, and
//	the translation's notes last.
func TestTranslate(t *testing.T) {
	db := setupDB(t)
	datadriven.Walk(t, "testdata/translate", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			// query translates as stitch hunt does, asking DuckDB for
			// columns; translate shows the SQL without them.
			var notes []string
			opts := []Option{Tables("Proc", "Net", "Users"), Notes(&notes)}
			if td.Cmd == "query" {
				opts = append(opts, Describe(describer(db)), Values(func(q string) ([]string, error) { return queryRows(db, q) }))
			}
			got, err := Translate(td.Input, opts...)
			if err != nil {
				return "error: " + err.Error()
			}
			switch td.Cmd {
			case "translate":
				return got
			case "query":
				rows, err := queryRows(db, got)
				if err != nil {
					t.Fatalf("%s: %v\nSQL %s", td.Pos, err, got)
				}
				if !td.HasArg("ordered") {
					slices.Sort(rows)
				}
				if td.HasArg("columns") {
					cols, err := describer(db)(got)
					if err != nil {
						t.Fatal(err)
					}
					names := make([]string, len(cols))
					for i, c := range cols {
						names[i] = c.Name
					}
					rows = append([]string{strings.Join(names, " | ")}, rows...)
				}
				for _, n := range notes {
					rows = append(rows, "note: "+n)
				}
				return strings.Join(rows, "\n")
			}
			t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
			return ""
		})
	})
}

// describer is Describe over the test tables.
func describer(db *sql.DB) func(string) ([]Column, error) {
	return func(q string) ([]Column, error) {
		rows, err := db.Query("DESCRIBE " + q)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []Column
		for rows.Next() {
			var c Column
			var null, key, def, extra sql.NullString
			if err := rows.Scan(&c.Name, &c.Type, &null, &key, &def, &extra); err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, rows.Err()
	}
}

func setupDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	setup, err := os.ReadFile("testdata/setup.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range append(Prelude, strings.Split(string(setup), "\n")...) {
		if strings.TrimSpace(stmt) == "" || strings.HasPrefix(stmt, "--") {
			continue
		}
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("setup: %v\n%s", err, stmt)
		}
	}
	return db
}

func queryRows(db *sql.DB, q string) ([]string, error) {
	rows, err := db.Query(q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case time.Time:
				cells[i] = v.UTC().String()
			case []byte:
				cells[i] = string(v)
			default:
				cells[i] = fmt.Sprint(v)
			}
		}
		out = append(out, strings.Join(cells, " | "))
	}
	return out, rows.Err()
}
