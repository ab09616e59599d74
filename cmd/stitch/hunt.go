package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stitch-xdr/stitch/internal/english"
	"github.com/stitch-xdr/stitch/internal/query"
	"github.com/stitch-xdr/stitch/pipeline"
)

func init() {
	register(command{
		name:     "hunt",
		summary:  "Query the hunting partitions (Parquet) with DuckDB SQL or KQL and print the rows.",
		synopsis: "[flags] QUERY|- [flags] | --tables",
		details:  "QUERY - reads the query from standard input. Flags may come before or after the query. --tables lists the tables with data and their columns.",
		example:  "stitch hunt --dir /tmp/out/hunting --kql 'DeviceProcessEvents | summarize count() by DeviceName'",
		run:      runHunt,
	})
}

func runHunt(ctx context.Context, args []string) error {
	fs := newFlagSet("hunt")
	def := pipeline.Default()
	dir := fs.String("dir", def.HuntingDir(), "hunting partitions directory (where 'run' and 'replay' write them: hunting.dir, or <state.dir>/hunting)")
	useKQL := fs.Bool("kql", false, "the query is KQL (default DuckDB SQL)")
	format := fs.String("format", "table", "output: table (readable), csv, jsonl (a JSON object a row), json (one document with columns and types) or parquet (a file on standard output: redirect it)")
	listTables := fs.Bool("tables", false, "list the tables that have data under --dir, with their columns and types, and exit")
	limit := fs.Int("limit", query.DefaultLimit, "row limit")
	timeout := fs.Duration("timeout", query.DefaultTimeout, "time limit")
	tenant := fs.String("tenant", "", "only this tenant's rows and columns (its id, or the hashed form of an id that cannot be a path element as it is: too long, control characters). SQL mode may run one read-only SELECT over the tenant's views and read_parquet under its partition directories; any other statement (COPY, CREATE, DROP, ATTACH, SET, INSTALL, ...), a second statement, and any other file, extension or network access fail (README: Hunting)")
	var since pipeline.Duration
	fs.TextVar(&since, "since", pipeline.Duration(0), "only rows newer than this (e.g. 24h, 7d)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *listTables {
		return printTables(ctx, os.Stdout, *dir)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: want one QUERY argument (or - for standard input)", errUsage)
	}
	q := fs.Arg(0)
	if q == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fmt.Errorf("read query: %w", err)
		}
		q = string(b)
	}
	opts := []query.Option{query.Limit(*limit), query.Timeout(*timeout)}
	if *useKQL {
		opts = append(opts, query.In(query.KQL))
	}
	if *tenant != "" {
		opts = append(opts, query.Tenant(*tenant))
	}
	if since > 0 {
		opts = append(opts, query.Since(time.Now().Add(-since.D())))
	}
	res, err := query.Run(ctx, *dir, q, opts...)
	if err != nil {
		return err
	}
	for _, n := range res.Notes {
		fmt.Fprintf(os.Stderr, "stitch hunt: %s\n", n)
	}
	if err := printResult(os.Stdout, *format, res); err != nil {
		return err
	}
	if *format != "table" {
		fmt.Fprintf(os.Stderr, "stitch hunt: %s, %s\n", english.Count(len(res.Rows), "row"), res.Elapsed.Round(time.Millisecond))
	}
	if res.Truncated {
		fmt.Fprintf(os.Stderr, "stitch hunt: results truncated at %s\n", english.Count(*limit, "row"))
	}
	return nil
}

func printResult(w io.Writer, format string, res *query.Result) error {
	switch format {
	case "json":
		out := make([]map[string]any, len(res.Rows))
		for i, r := range res.Rows {
			m := make(map[string]any, len(r))
			for j, c := range res.Columns {
				m[c] = r[j]
			}
			out[i] = m
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"columns": res.Columns, "types": res.Types, "rows": out,
			"truncated": res.Truncated, "elapsed_ms": res.Elapsed.Milliseconds()})
	case "jsonl":
		// An object a row, its keys in the query's column order.
		bw := bufio.NewWriter(w)
		for _, r := range res.Rows {
			bw.WriteByte('{')
			for j, c := range res.Columns {
				k, _ := json.Marshal(c)
				v, err := json.Marshal(r[j])
				if err != nil {
					return fmt.Errorf("column %s: %w", c, err)
				}
				if j > 0 {
					bw.WriteByte(',')
				}
				bw.Write(k)
				bw.WriteByte(':')
				bw.Write(v)
			}
			bw.WriteString("}\n")
		}
		return bw.Flush()
	case "parquet":
		return res.WriteParquet(w)
	case "csv":
		cw := csv.NewWriter(w)
		if err := cw.Write(res.Columns); err != nil {
			return err
		}
		for _, r := range res.Rows {
			if err := cw.Write(cells(r)); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	case "table":
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(res.Columns, "\t"))
		for _, r := range res.Rows {
			fmt.Fprintln(tw, strings.Join(cells(r), "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "(%s, %s)\n", english.Count(len(res.Rows), "row"), res.Elapsed.Round(time.Millisecond))
		return nil
	}
	return fmt.Errorf("%w: unknown format %q (table, csv, jsonl, json, parquet)", errUsage, format)
}

// cells renders a row as text; tabs and newlines would break the table.
func cells(r []any) []string {
	out := make([]string, len(r))
	for i, v := range r {
		switch v := v.(type) {
		case nil:
			out[i] = ""
		case time.Time:
			out[i] = v.UTC().Format(time.RFC3339Nano)
		default:
			out[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(fmt.Sprint(v))
		}
	}
	return out
}

// printTables lists the tables with data under dir, a line each column.
func printTables(ctx context.Context, w io.Writer, dir string) error {
	tables, err := query.Tables(dir)
	if err != nil {
		return err
	}
	if len(tables) == 0 {
		return fmt.Errorf("hunting: no table has data under %s (run or replay write it: hunting.dir, or <state.dir>/hunting)", dir)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range tables {
		res, err := query.Run(ctx, dir, "SELECT * FROM "+strconv.Quote(t)+" LIMIT 0")
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\n", t)
		for i, c := range res.Columns {
			fmt.Fprintf(tw, "  %s\t%s\n", c, res.Types[i])
		}
	}
	return tw.Flush()
}
