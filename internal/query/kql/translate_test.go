package kql

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" driver
)

// A case file under testdata/translate holds "-- kql --" and one of:
// "-- sql --" (the exact translation), "-- error --" (a substring of the
// error), "-- rows --" or "-- ordered rows --" (the answer over the tables of
// testdata/setup.sql, one row a line, cells separated by " | ", compared
// sorted unless ordered). Lines starting with # before the first section
// are comments.
type translateCase struct {
	kql, sql, err string
	rows          []string
	ordered       bool
}

func readCase(t *testing.T, path string) translateCase {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c translateCase
	sections := map[string]*strings.Builder{}
	var cur *strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --") {
			name := strings.TrimSuffix(strings.TrimPrefix(line, "-- "), " --")
			cur = &strings.Builder{}
			sections[name] = cur
			continue
		}
		if cur == nil {
			if line != "" && !strings.HasPrefix(line, "#") {
				t.Fatalf("%s: text before the first section: %q", path, line)
			}
			continue
		}
		cur.WriteString(line + "\n")
	}
	get := func(name string) string {
		if b := sections[name]; b != nil {
			return strings.TrimRight(b.String(), "\n")
		}
		return ""
	}
	c.kql, c.sql, c.err = get("kql"), get("sql"), get("error")
	rows := get("rows")
	if sections["ordered rows"] != nil {
		rows, c.ordered = get("ordered rows"), true
	}
	if rows != "" {
		c.rows = strings.Split(rows, "\n")
	}
	if c.kql == "" || c.sql == "" && c.err == "" && c.rows == nil {
		t.Fatalf("%s: want a kql section and one of sql, error, rows", path)
	}
	return c
}

func TestTranslate(t *testing.T) {
	files, _ := filepath.Glob("testdata/translate/*.txt")
	if len(files) == 0 {
		t.Fatal("no cases under testdata/translate")
	}
	db := setupDB(t)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			c := readCase(t, f)
			got, err := Translate(c.kql)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want it to contain %q (SQL %s)", err, c.err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.sql != "" && got != c.sql {
				t.Errorf("SQL\n got %s\nwant %s", got, c.sql)
			}
			if c.rows == nil {
				return
			}
			rows, err := queryRows(db, got)
			if err != nil {
				t.Fatalf("%v\nSQL %s", err, got)
			}
			want := c.rows
			if !c.ordered {
				slices.Sort(rows)
				want = slices.Sorted(slices.Values(want))
			}
			if !slices.Equal(rows, want) {
				t.Errorf("rows\n got %q\nwant %q\nSQL %s", rows, want, got)
			}
		})
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
	for _, stmt := range strings.Split(string(setup), "\n") {
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
