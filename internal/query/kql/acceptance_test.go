package kql_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
	"github.com/stitch-xdr/stitch/internal/query"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

var fence = regexp.MustCompile("(?s)```[a-zA-Z]*\n(.*?)```")

// typedPartitions writes one row of every normalized table, through the
// hunting writer, so that DuckDB binds each translated query against the
// real column names and types.
func typedPartitions(t *testing.T) string {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	w, err := parquet.Open(dir, parquet.Allocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	row := []parquettest.Row{{Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), ID: 1}}
	for i, table := range normalize.Tables() {
		b := parquettest.Batch(mem, normalize.Schema(table), "t1", row)
		err := w.Write(parquet.Source{Topic: "in", Offset: int64(i)}, b)
		b.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// corpusQuery is one acceptance query: where it was read from (relative to
// ../shared/data) and its KQL.
type corpusQuery struct{ name, kql string }

// acceptanceRoot is ../shared/data seen from this package's directory.
const acceptanceRoot = "../../../../shared/data"

// corpus reads the two sets of public advanced-hunting queries:
// hunting-queries (Markdown, the first code block of each file) and
// hunting-queries-corpus (one .kql file a query, its source path on the
// first line, a comment).
func corpus(t *testing.T) []corpusQuery {
	var out []corpusQuery
	for _, set := range []string{"hunting-queries", "hunting-queries-corpus"} {
		root := filepath.Join(acceptanceRoot, set)
		if _, err := os.Stat(root); err != nil {
			t.Skipf("shared data not present (../shared/data/%s from the module root): the acceptance corpus is not part of this repository", set)
		}
		var files []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".md") && set == "hunting-queries" || strings.HasSuffix(p, ".kql")) {
				files = append(files, p)
			}
			return nil
		})
		sort.Strings(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(acceptanceRoot, f)
			q := string(data)
			if strings.HasSuffix(f, ".md") {
				m := fence.FindStringSubmatch(q)
				if m == nil {
					q = ""
				} else {
					q = m[1]
				}
			}
			out = append(out, corpusQuery{filepath.ToSlash(rel), q})
		}
	}
	return out
}

// TestAcceptance translates every query of the public advanced-hunting
// corpus and runs each translation through DuckDB over typed partitions of
// all 20 tables. The outcomes must be those ACCEPTANCE.md records; -rewrite
// (the datadriven flag) rewrites it, so a change in what runs is a
// reviewed diff.
func TestAcceptance(t *testing.T) {
	queries := corpus(t)
	dir := typedPartitions(t)
	if got := len(normalize.Tables()); got != 20 {
		t.Fatalf("the hunting directory holds %d tables, want the 20 advanced-hunting tables", got)
	}
	var passed, failed int
	var lines []string
	buckets := map[string]int{}
	for _, q := range queries {
		outcome, reason := "runs", ""
		if strings.TrimSpace(q.kql) == "" {
			outcome, reason = "no query", "no query block"
		} else if _, err := query.Run(context.Background(), dir, q.kql, query.In(query.KQL), query.Timeout(time.Minute)); err != nil {
			outcome, reason = "translates, DuckDB rejects", cell(err)
			if strings.HasPrefix(err.Error(), "kql:") {
				outcome = "does not translate"
			}
		}
		if outcome == "runs" {
			passed++
		} else {
			failed++
			buckets[bucket(reason)]++
		}
		lines = append(lines, fmt.Sprintf("| %s | %s | %s |", q.name, outcome, reason))
	}
	t.Logf("%d passed, %d failed (of %d queries)", passed, failed, len(queries))
	report := fmt.Sprintf(acceptanceHead, passed, failed, len(queries), percent(passed, len(queries)), bucketTable(buckets), strings.Join(lines, "\n"), acceptanceNotes)
	if f := flag.Lookup("rewrite"); f != nil && f.Value.String() == "true" {
		if err := os.WriteFile("ACCEPTANCE.md", []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("ACCEPTANCE.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != report {
		t.Errorf("ACCEPTANCE.md is not what the queries do now; rerun with -rewrite and review the diff. Now:\n%s", report)
	}
}

func percent(n, of int) string {
	if of == 0 {
		return "0"
	}
	return fmt.Sprintf("%.1f", 100*float64(n)/float64(of))
}

var (
	unsupportedRE = regexp.MustCompile(`^kql: unsupported (.*?) at \d+:\d+`)
	positionRE    = regexp.MustCompile(`\d+:\d+|"[^"]*"|'[^']*'`)
)

// bucket groups failure reasons: the construct kql refuses, or DuckDB's
// message with positions and quoted names taken out.
func bucket(reason string) string {
	if m := unsupportedRE.FindStringSubmatch(reason); m != nil {
		return "unsupported " + m[1]
	}
	r := reason
	if i := strings.Index(r, "LINE "); i > 0 {
		r = r[:i]
	}
	r = positionRE.ReplaceAllString(r, "…")
	if len(r) > 120 {
		r = r[:120] + "…"
	}
	return strings.TrimSpace(r)
}

func bucketTable(buckets map[string]int) string {
	keys := make([]string, 0, len(buckets))
	for k := range buckets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if buckets[keys[i]] != buckets[keys[j]] {
			return buckets[keys[i]] > buckets[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "| %d | %s |\n", buckets[k], k)
	}
	return b.String()
}

func cell(err error) string {
	s := strings.ReplaceAll(err.Error(), "|", `\|`)
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

const acceptanceHead = `# KQL acceptance: public advanced-hunting queries

Generated by ` + "`go test ./internal/query/kql -run Acceptance -rewrite`" + ` over ` + "`../shared/data/hunting-queries`" + ` (first code block of each Markdown file) and ` + "`../shared/data/hunting-queries-corpus`" + ` (one query a file).
A query passes when it translates and DuckDB accepts and executes the translation over hunting partitions holding one typed row of each of the 20 advanced-hunting tables (` + "`normalize.Schema`" + `, written by ` + "`connectors/parquet`" + `): names, types and functions all bind. The answers on real data are checked for the constructs in ` + "`testdata/`" + ` and in ` + "`internal/query/replay_test.go`" + `, not per query.

**%d passed, %d failed** of %d queries (%s%% run).

## Failures by reason

| queries | reason |
|---|---|
%s
## Every query

| query | outcome | reason |
|---|---|---|
%s

%s`

// acceptanceNotes explain the known differences; they are part of
// ACCEPTANCE.md.
const acceptanceNotes = "## Known differences from Kusto\n\n" +
	"- Dynamic member access (`x.a.b`, `x['a']`, `x[0]`) yields strings, as `tostring()` would; `mv-expand` yields JSON values.\n" +
	"- `has` is term matching by regular expression (no term index): same answers, full scans.\n" +
	"- A comparison of a number with a string (or the reverse) fails as in Kusto, but only once a row reaches it: over no rows it answers nothing.\n" +
	"- Kusto's absent strings are \"\" in the views of the normalized tables' string columns; a column made by the query (extend, parse) is null where Kusto would give \"\" only where a function returns null.\n" +
	"- `render` draws no chart: the answer is the table, and `stitch hunt` says the chart was left out.\n" +
	"- `serialize`, `prev()`, `next()` and `row_number()` follow the order rows come in (after `sort`, the sorted order).\n" +
	"- Not translated (refused with the construct and its position): the `series_*` functions of time-series analysis (`make-series` is), `evaluate` plugins other than `bag_unpack` and `pivot` (whose columns come from the data, read before the query runs; bag_unpack's columns are text), `find`, `externaldata`, `top-nested ... with others`, `mv-expand limit`, `search` of more than one term, queries separated by a blank line (Kusto Explorer runs the one at the cursor; here the text is one query).\n"
