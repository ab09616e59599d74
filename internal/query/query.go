// Package query answers queries over the hunting partitions written by
// connectors/parquet, with DuckDB, the way advanced hunting answers them
// over the Defender tables: SQL or a KQL subset, a row limit and a time
// limit. Each table with files becomes a view of the same name over
// read_parquet(<dir>/<Table>/**/*.parquet, hive_partitioning, union_by_name),
// so files of older and newer schema versions read as one table.
package query

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" driver

	"github.com/stitch-xdr/stitch/internal/query/kql"
)

// Defaults as in Microsoft 365 Defender advanced hunting.
const (
	DefaultLimit   = 30000
	DefaultTimeout = 10 * time.Minute
)

// Language is the query language.
type Language int

const (
	SQL Language = iota // DuckDB SQL
	KQL                 // the KQL subset of package kql
)

// Result is a query's answer. Truncated says rows were cut at the limit.
type Result struct {
	Columns   []string
	Types     []string
	Rows      [][]any
	Truncated bool
	Elapsed   time.Duration
	// SQL is the statement DuckDB ran (the translation, for KQL).
	SQL string
	// Notes say what a KQL translation left out (render's chart).
	Notes []string
}

type config struct {
	tenant  string
	exact   bool   // tenant is an id only, never a hashed form (TenantID)
	element string // the tenant's directory element (tenant.go)
	since   time.Time
	limit   int
	timeout time.Duration
	lang    Language
}

// Option configures Run.
type Option func(*config)

// Tenant restricts every table to one tenant: only the files under its
// directory are read, so neither the rows nor the columns of other tenants
// are seen. t is the tenant id, or the hashed form the writer gives ids that
// cannot be a path element (parquet.TenantElement).
func Tenant(t string) Option { return func(c *config) { c.tenant, c.exact = t, false } }

// TenantID is Tenant for a tenant id only: a string that looks like a
// hashed form is the id it is, never another tenant's directory. Callers
// whose tenant comes from someone else's credentials (the API's tokens)
// use it: a tenant whose id happens to be another's hashed form must not
// read that tenant's rows while it has none of its own.
func TenantID(t string) Option { return func(c *config) { c.tenant, c.exact = t, true } }

// Since restricts every table to rows with Timestamp >= t (older date
// partitions are not read).
func Since(t time.Time) Option { return func(c *config) { c.since = t } }

// Limit sets the row limit (default 30000).
func Limit(n int) Option { return func(c *config) { c.limit = n } }

// Timeout sets the time limit (default 10m).
func Timeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// In sets the query language (default SQL).
func In(l Language) Option { return func(c *config) { c.lang = l } }

// Tables lists the tables under dir that have at least one Parquet file.
func Tables(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("hunting: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), "_") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if hasParquet(filepath.Join(dir, e.Name())) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

var errFound = errors.New("found")

func hasParquet(dir string) bool {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			return errFound
		}
		return nil
	})
	return err == errFound
}

var identRE = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// Run runs q against the hunting partitions under dir.
func Run(ctx context.Context, dir, q string, opts ...Option) (*Result, error) {
	cfg := config{limit: DefaultLimit, timeout: DefaultTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	start := time.Now()
	// Absolute, so that the views' globs and the directories the lockdown
	// allows are the same paths.
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	tables, err := Tables(dir)
	if err != nil {
		return nil, err
	}
	if cfg.tenant != "" {
		cfg.element = tenantElement(dir, cfg.tenant, cfg.exact)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return nil, fmt.Errorf("hunting: open duckdb: %w", err)
	}
	defer db.Close()
	// One connection: the views live in it and the query must see them.
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("hunting: open duckdb: %w", err)
	}
	defer conn.Close()
	// The lockdown first (lockdown.go): file access only where the views
	// read, no extensions, one SELECT. The views are made as the statement
	// names them, within it.
	allowed := []string{allowedDir(dir)}
	if cfg.element != "" {
		allowed = nil
		for _, t := range tables {
			if td := filepath.Join(dir, t, "tenant="+cfg.element); hasParquet(td) {
				allowed = append(allowed, allowedDir(td))
			}
		}
	}
	if cfg.lang == KQL {
		for _, s := range kql.Prelude {
			if _, err := conn.ExecContext(ctx, s); err != nil {
				return nil, fmt.Errorf("hunting: kql prelude: %w", err)
			}
		}
	}
	if err := lockdown(ctx, conn, allowed); err != nil {
		return nil, err
	}
	v := &views{ctx: ctx, conn: conn, dir: dir, cfg: cfg, tables: tables, made: map[string]bool{}}
	stmt := q
	var notes []string
	if cfg.lang == KQL {
		if stmt, err = kql.Translate(q, kql.Tables(tables...), kql.Describe(v.describe), kql.Values(v.values), kql.Notes(&notes)); err != nil {
			return nil, err
		}
	}
	if err := v.ensure(stmt); err != nil {
		return nil, err
	}
	if err := checkStatement(ctx, conn, stmt); err != nil {
		return nil, v.explain(err)
	}
	rows, err := conn.QueryContext(ctx, stmt)
	if err != nil {
		return nil, v.explain(queryErr(ctx, err, cfg))
	}
	defer rows.Close()
	res := &Result{SQL: stmt, Notes: notes}
	if res.Columns, err = rows.Columns(); err != nil {
		return nil, fmt.Errorf("hunting: %w", err)
	}
	cts, err := rows.ColumnTypes()
	if err != nil {
		return nil, fmt.Errorf("hunting: %w", err)
	}
	for _, ct := range cts {
		res.Types = append(res.Types, ct.DatabaseTypeName())
	}
	for rows.Next() {
		if len(res.Rows) >= cfg.limit {
			res.Truncated = true
			break
		}
		vals := make([]any, len(res.Columns))
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("hunting: %w", err)
		}
		res.Rows = append(res.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, queryErr(ctx, err, cfg)
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func queryErr(ctx context.Context, err error, cfg config) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("hunting: query exceeded the time limit of %s: %w", cfg.timeout, err)
	}
	return duckErr(err)
}

// viewSQL is the view of one table. Tenant and time filters sit on the hive
// partition columns so DuckDB skips other tenants' and older days' files.
func viewSQL(dir, table string, cfg config) string {
	glob := tableGlob(dir, table, cfg.element)
	var where []string
	if !cfg.since.IsZero() {
		s := cfg.since.UTC()
		where = append(where, "date >= DATE "+quote(s.Format("2006-01-02")))
		where = append(where, "Timestamp >= TIMESTAMPTZ "+quote(s.Format("2006-01-02 15:04:05.999999+00")))
	}
	v := fmt.Sprintf("CREATE VIEW %s AS SELECT * EXCLUDE (date, hour) FROM read_parquet(%s, hive_partitioning = true, union_by_name = true, hive_types = {'tenant': VARCHAR, 'date': DATE, 'hour': INTEGER})",
		quoteIdent(table), quote(glob))
	if len(where) > 0 {
		v += " WHERE " + strings.Join(where, " AND ")
	}
	return v
}

func quote(s string) string      { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
