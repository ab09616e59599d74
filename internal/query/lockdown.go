package query

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/duckdb/duckdb-go/v2/mapping"
)

// SQL mode is a boundary: with Tenant, a query must see that tenant's rows
// and nothing else, whatever SQL it is. Run gives DuckDB the tenant's views
// first and then takes everything else away:
//
//   - file access is limited to the directories the views read (the
//     tenant's partition directories of each table, or the hunting
//     directory without Tenant): read_parquet of the root or of another
//     tenant's directory, read_text, read_csv, glob, ATTACH and COPY ... TO
//     fail with a permission error;
//   - extensions are neither installed nor loaded (INSTALL httpfs, LOAD, and
//     the automatic loading a URL would trigger fail), so there is no
//     network;
//   - the configuration is locked, so none of this can be SET back;
//   - a query is one statement, and a SELECT (FROM-first, WITH, VALUES,
//     DESCRIBE, SUMMARIZE and SHOW are SELECTs): CREATE, DROP, INSERT, COPY,
//     ATTACH, SET, CALL, EXPLAIN, PIVOT statements and a second statement are
//     refused before anything runs, so a view cannot be dropped and
//     recreated over other files.
//
// The same holds for KQL, whose translation is one SELECT.

// ErrNotAllowed is returned, wrapped, for a query that SQL mode refuses.
var ErrNotAllowed = errors.New("not allowed in SQL mode")

// lockdown takes file, extension and configuration access away from conn,
// leaving only reads under the directories dirs (absolute, each ending in a
// separator so that tenant=t1/ does not admit tenant=t10/).
func lockdown(ctx context.Context, conn *sql.Conn, dirs []string) error {
	quoted := make([]string, len(dirs))
	for i, d := range dirs {
		quoted[i] = quote(d)
	}
	for _, s := range []string{
		"SET allowed_directories = [" + strings.Join(quoted, ", ") + "]",
		"SET enable_external_access = false",
		"SET autoinstall_known_extensions = false",
		"SET autoload_known_extensions = false",
		"SET lock_configuration = true",
	} {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("hunting: lock down duckdb (%s): %w", s, err)
		}
	}
	return nil
}

// allowedDir is the directory form DuckDB's allowed_directories wants.
func allowedDir(p string) string {
	return filepath.ToSlash(filepath.Clean(p)) + "/"
}

// checkStatement refuses stmt unless it is exactly one SELECT. It is
// counted by DuckDB's own parser on a scratch database (preparing a
// multi-statement query on conn would run all but its last statement), and
// typed by preparing it on conn, which runs nothing.
func checkStatement(ctx context.Context, conn *sql.Conn, stmt string) error {
	n, perr := countStatements(stmt)
	switch {
	case perr != nil:
		return fmt.Errorf("hunting: %w", perr)
	case n == 0:
		return fmt.Errorf("hunting: empty query")
	case n > 1:
		return fmt.Errorf("hunting: %d statements: more than one is %w, a query is one read-only SELECT (a PIVOT statement counts as several: use SELECT ... PIVOT)", n, ErrNotAllowed)
	}
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*duckdb.Conn)
		if !ok {
			return fmt.Errorf("hunting: unexpected driver connection %T", dc)
		}
		s, err := c.PrepareContext(ctx, stmt)
		if err != nil {
			return duckErr(err)
		}
		defer s.Close()
		t, err := s.(*duckdb.Stmt).StatementType()
		if err != nil {
			return fmt.Errorf("hunting: %w", err)
		}
		if t != duckdb.STATEMENT_TYPE_SELECT {
			return fmt.Errorf("hunting: %s is %w: a query is one read-only SELECT", stmtName(t), ErrNotAllowed)
		}
		return nil
	})
}

// countStatements parses q with DuckDB's parser, on a database of its own.
func countStatements(q string) (int, error) {
	var db mapping.Database
	if mapping.Open("", &db) == mapping.StateError {
		return 0, errors.New("open duckdb parser")
	}
	defer mapping.Close(&db)
	var conn mapping.Connection
	if mapping.Connect(db, &conn) == mapping.StateError {
		return 0, errors.New("open duckdb parser")
	}
	defer mapping.Disconnect(&conn)
	var st mapping.ExtractedStatements
	n := int(mapping.ExtractStatements(conn, q, &st))
	defer mapping.DestroyExtracted(&st)
	if n == 0 {
		if msg := mapping.ExtractStatementsError(st); msg != "" {
			return 0, errors.New(msg)
		}
	}
	return n, nil
}

// stmtNames name the statements SQL mode refuses, for its error.
var stmtNames = map[duckdb.StmtType]string{
	duckdb.STATEMENT_TYPE_INSERT: "INSERT", duckdb.STATEMENT_TYPE_UPDATE: "UPDATE",
	duckdb.STATEMENT_TYPE_DELETE: "DELETE", duckdb.STATEMENT_TYPE_EXPLAIN: "EXPLAIN",
	duckdb.STATEMENT_TYPE_CREATE: "CREATE", duckdb.STATEMENT_TYPE_CREATE_FUNC: "CREATE",
	duckdb.STATEMENT_TYPE_ALTER: "ALTER", duckdb.STATEMENT_TYPE_DROP: "DROP",
	duckdb.STATEMENT_TYPE_COPY: "COPY", duckdb.STATEMENT_TYPE_EXPORT: "EXPORT",
	duckdb.STATEMENT_TYPE_ATTACH: "ATTACH", duckdb.STATEMENT_TYPE_DETACH: "DETACH",
	duckdb.STATEMENT_TYPE_SET: "SET", duckdb.STATEMENT_TYPE_VARIABLE_SET: "SET",
	duckdb.STATEMENT_TYPE_PRAGMA: "PRAGMA", duckdb.STATEMENT_TYPE_CALL: "CALL",
	duckdb.STATEMENT_TYPE_LOAD: "INSTALL or LOAD", duckdb.STATEMENT_TYPE_EXTENSION: "an extension statement",
	duckdb.STATEMENT_TYPE_TRANSACTION: "a transaction statement",
}

func stmtName(t duckdb.StmtType) string {
	if n, ok := stmtNames[t]; ok {
		return n
	}
	return "a statement other than SELECT"
}

// duckErr wraps an error of DuckDB, saying why when it is the lockdown's.
func duckErr(err error) error {
	if strings.Contains(err.Error(), "disabled by configuration") {
		return fmt.Errorf("hunting: file access is %w (a query reads only the partitions of its views; no other file, extension or network): %w", ErrNotAllowed, err)
	}
	return fmt.Errorf("hunting: %w", err)
}
