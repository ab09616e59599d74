package query

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/stitch-xdr/stitch/internal/query/kql"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// views makes the view of each table a statement names, once, on the
// locked-down connection (the lockdown allows exactly the directories
// the views read).
type views struct {
	ctx    context.Context
	conn   *sql.Conn
	dir    string
	cfg    config
	tables []string // with data under dir
	made   map[string]bool
}

// ensure makes the views of the tables stmt names.
func (v *views) ensure(stmt string) error {
	referenced := map[string]bool{}
	for _, id := range identRE.FindAllString(stmt, -1) {
		referenced[strings.ToLower(id)] = true
	}
	for _, t := range v.tables {
		if !referenced[strings.ToLower(t)] || v.made[t] {
			continue
		}
		v.made[t] = true
		view := viewSQL(v.dir, t, v.cfg)
		if td := filepath.Join(v.dir, t, "tenant="+v.cfg.element); v.cfg.element != "" && !hasParquet(td) {
			var ok bool
			if view, ok = emptyViewSQL(t); !ok {
				continue
			}
		} else if v.cfg.lang == KQL {
			var err error
			if view, err = v.kqlView(t, view); err != nil {
				return err
			}
		}
		if _, err := v.conn.ExecContext(v.ctx, view); err != nil {
			return fmt.Errorf("hunting: view %s: %w", t, err)
		}
	}
	return nil
}

// kqlView gives a view Kusto's strings: an absent string is "", never
// null, so that !=, !in and == "" match it as they do in Kusto. Dynamic
// columns stay null when absent.
func (v *views) kqlView(table, view string) (string, error) {
	schema := normalize.Schema(table)
	if schema == nil {
		return view, nil
	}
	sel := view[strings.Index(view, " AS SELECT ")+len(" AS "):]
	cols, err := v.columns(sel)
	if err != nil {
		return "", fmt.Errorf("hunting: view %s: %w", table, err)
	}
	present := map[string]bool{}
	for _, c := range cols {
		present[c.Name] = true
	}
	var repl []string
	for _, f := range schema.Fields() {
		if typ, _ := f.Metadata.GetValue(normalize.MetaColumnType); typ == "string" && present[f.Name] {
			repl = append(repl, "coalesce("+quoteIdent(f.Name)+", '') AS "+quoteIdent(f.Name))
		}
	}
	if len(repl) == 0 {
		return view, nil
	}
	return "CREATE VIEW " + quoteIdent(table) + " AS SELECT * REPLACE (" + strings.Join(repl, ", ") + ") FROM (" + sel + ")", nil
}

// columns are a query's columns, bound but not run.
func (v *views) columns(q string) ([]kql.Column, error) {
	rows, err := v.conn.QueryContext(v.ctx, "DESCRIBE "+q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []kql.Column
	for rows.Next() {
		var name, typ string
		var null, key, def, extra sql.NullString
		if err := rows.Scan(&name, &typ, &null, &key, &def, &extra); err != nil {
			return nil, err
		}
		out = append(out, kql.Column{Name: name, Type: typ})
	}
	return out, rows.Err()
}

// describe is kql.Describe's function: the columns of a translation so
// far, over the views it names.
func (v *views) describe(q string) ([]kql.Column, error) {
	if err := v.ensure(q); err != nil {
		return nil, err
	}
	cols, err := v.columns(q)
	if err != nil {
		return nil, v.explain(duckErr(err))
	}
	return cols, nil
}

// values is kql.Values's function: the first column of a query, as text.
func (v *views) values(q string) ([]string, error) {
	if err := v.ensure(q); err != nil {
		return nil, err
	}
	rows, err := v.conn.QueryContext(v.ctx, q)
	if err != nil {
		return nil, v.explain(duckErr(err))
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("hunting: %w", err)
		}
		if s.Valid {
			out = append(out, s.String)
		}
	}
	return out, rows.Err()
}

var missingTableRE = regexp.MustCompile(`Table with name (\S+) does not exist`)

// explain turns DuckDB's "Table with name X does not exist" (with its
// guesses at catalog tables) into what is true of the hunting directory:
// X is no table stitch writes, or one with no data there yet.
func (v *views) explain(err error) error {
	m := missingTableRE.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	name := strings.Trim(m[1], `"!`)
	have := "none"
	if len(v.tables) > 0 {
		have = strings.Join(v.tables, ", ")
	}
	if normalize.Schema(name) != nil {
		return fmt.Errorf("hunting: table %s has no data under %s yet (tables with data: %s)", name, v.dir, have)
	}
	return fmt.Errorf("hunting: unknown table %s: stitch writes the advanced-hunting tables %s (with data under %s: %s)", name, strings.Join(normalize.Tables(), ", "), v.dir, have)
}
