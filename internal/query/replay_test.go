package query_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/memory"
	"github.com/apache/arrow/go/v17/parquet/file"
	"github.com/apache/arrow/go/v17/parquet/pqarrow"

	"github.com/stitch-xdr/stitch/internal/query"
	"github.com/stitch-xdr/stitch/internal/simulator"
	"github.com/stitch-xdr/stitch/pipeline"
)

// record is one decoded input line: its table, tenant and properties.
type record struct {
	table, tenant string
	props         map[string]any
}

// decodeInput reads the simulator's JSON lines with encoding/json, apart
// from anything the pipeline does.
func decodeInput(t *testing.T, path string) []record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var r struct {
			TenantID   string         `json:"tenantId"`
			Category   string         `json:"category"`
			Properties map[string]any `json:"properties"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("input line %d: %v", len(out)+1, err)
		}
		out = append(out, record{strings.TrimPrefix(r.Category, "AdvancedHunting-"), r.TenantID, r.Properties})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// replay generates a few thousand simulator records, replays them through
// the whole pipeline and returns the input records and the hunting dir.
func replay(t *testing.T, n int) ([]record, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("replays the pipeline (about 20 s)")
	}
	tmp := t.TempDir()
	in := filepath.Join(tmp, "input.jsonl")
	if err := simulator.WriteFile(in, n, simulator.Seed(7), simulator.EventsPerSecond(50)); err != nil {
		t.Fatal(err)
	}
	sum, err := pipeline.Replay(context.Background(), pipeline.Default(), pipeline.ReplayOptions{Inputs: []string{in}, OutDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.DeadLettered) > 0 {
		t.Fatalf("replay dead-lettered %v; the simulator's records should all normalize", sum.DeadLettered)
	}
	return decodeInput(t, in), filepath.Join(tmp, "hunting")
}

func TestReplayedPartitions(t *testing.T) {
	recs, dir := replay(t, 3000)
	ctx := context.Background()

	want := map[string]map[string]int64{} // table -> tenant -> rows
	for _, r := range recs {
		if want[r.table] == nil {
			want[r.table] = map[string]int64{}
		}
		want[r.table][r.tenant]++
	}
	tables, err := query.Tables(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tables, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("tables %v, want %v", tables, slices.Sorted(maps.Keys(want)))
	}

	t.Run("row counts and types", func(t *testing.T) {
		for _, table := range tables {
			res, err := query.Run(ctx, dir, fmt.Sprintf("SELECT tenant, count(*) FROM %s GROUP BY tenant", table))
			if err != nil {
				t.Fatal(err)
			}
			duck := map[string]int64{}
			for _, r := range res.Rows {
				duck[r[0].(string)] = r[1].(int64)
			}
			if !maps.Equal(duck, want[table]) {
				t.Errorf("%s: DuckDB counts %v, input %v", table, duck, want[table])
			}
			if pq := arrowCounts(t, filepath.Join(dir, table)); !maps.Equal(pq, want[table]) {
				t.Errorf("%s: pqarrow counts %v, input %v", table, pq, want[table])
			}
			checkTypes(t, dir, table)
		}
	})

	t.Run("queries", func(t *testing.T) {
		for _, c := range queryCases(recs) {
			t.Run(c.name, func(t *testing.T) {
				var opts []query.Option
				if c.kql {
					opts = append(opts, query.In(query.KQL))
				}
				res, err := query.Run(ctx, dir, c.q, opts...)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, r := range res.Rows {
					got = append(got, strings.TrimSuffix(fmt.Sprintln(r...), "\n"))
				}
				slices.Sort(got)
				want := slices.Sorted(slices.Values(c.want))
				if len(want) == 0 || want[0] == "0" {
					t.Fatalf("the case selects nothing from the input; pick another value")
				}
				if !slices.Equal(got, want) {
					t.Errorf("got %d rows %v\nwant %d rows %v\nSQL %s", len(got), head(got), len(want), head(want), res.SQL)
				}
			})
		}
	})
}

func head(s []string) []string { return s[:min(len(s), 8)] }

type queryCase struct {
	name string
	q    string
	kql  bool
	want []string // rows, cells separated by spaces (fmt.Sprintln)
}

// queryCases computes, from the decoded input, the answers of a few SQL
// and KQL queries.
func queryCases(recs []record) []queryCase {
	str := func(r record, col string) string { s, _ := r.props[col].(string); return s }
	of := func(table string) []record {
		var out []record
		for _, r := range recs {
			if r.table == table {
				out = append(out, r)
			}
		}
		return out
	}
	proc, netw := of("DeviceProcessEvents"), of("DeviceNetworkEvents")

	// The most frequent process file name, for an equality filter.
	byName := map[string]int{}
	for _, r := range proc {
		byName[str(r, "FileName")]++
	}
	top := ""
	for n, c := range byName {
		if c > byName[top] || c == byName[top] && n < top {
			top = n
		}
	}
	var where []string
	for _, r := range proc {
		if str(r, "FileName") == top {
			where = append(where, fmt.Sprint(r.props["ReportId"]))
		}
	}

	// summarize count() by tenant, RemotePort (a long: JSON numbers decode
	// as float64, which print the same).
	groups := map[string]int{}
	for _, r := range netw {
		groups[r.tenant+" "+fmt.Sprint(r.props["RemotePort"])]++
	}
	var summarize []string
	for k, n := range groups {
		summarize = append(summarize, fmt.Sprintf("%s %d", k, n))
	}

	// join: network events of devices that also ran processes, per tenant.
	ran := map[string]bool{}
	for _, r := range proc {
		ran[r.tenant+"/"+str(r, "DeviceId")] = true
	}
	joined := map[string]int{}
	for _, r := range netw {
		if ran[r.tenant+"/"+str(r, "DeviceId")] {
			joined[r.tenant]++
		}
	}
	var join []string
	for k, n := range joined {
		join = append(join, fmt.Sprintf("%s %d", k, n))
	}

	// has: whole terms, case-insensitively ("exe" is a term of "cmd.exe",
	// not of "exec").
	terms := regexp.MustCompile(`[a-z0-9_]+`)
	hasTerm := func(s, term string) bool { return slices.Contains(terms.FindAllString(strings.ToLower(s), -1), term) }
	var has []string
	for _, r := range proc {
		if hasTerm(str(r, "ProcessCommandLine"), "exe") && !hasTerm(str(r, "FileName"), "svchost") {
			has = append(has, fmt.Sprint(r.props["ReportId"]))
		}
	}

	return []queryCase{
		{"SQL where", fmt.Sprintf("SELECT ReportId FROM DeviceProcessEvents WHERE FileName = '%s'", top), false, where},
		{"KQL where", fmt.Sprintf("DeviceProcessEvents | where FileName == '%s' | project ReportId", top), true, where},
		{"KQL summarize count() by", "DeviceNetworkEvents | summarize count() by tenant, RemotePort", true, summarize},
		{"KQL join on a shared column", `DeviceNetworkEvents
| join kind=inner (DeviceProcessEvents | distinct tenant, DeviceId) on tenant, DeviceId
| summarize n = count() by tenant`, true, join},
		{"KQL join on $left/$right", `DeviceProcessEvents | distinct tenant, Device = DeviceId
| join kind=rightsemi DeviceNetworkEvents on $left.Device == $right.DeviceId, tenant
| summarize count() by tenant`, true, join},
		{"KQL has", `DeviceProcessEvents | where ProcessCommandLine has "EXE" and FileName !has "svchost" | project ReportId`, true, has},
	}
}

// arrowCounts reads every Parquet file under a table's directory with
// pqarrow (not DuckDB) and counts rows per tenant= partition.
func arrowCounts(t *testing.T, tableDir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(tableDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		tenant := ""
		for _, part := range strings.Split(filepath.ToSlash(p), "/") {
			if v, ok := strings.CutPrefix(part, "tenant="); ok {
				tenant = v
			}
		}
		tbl := readParquet(t, p)
		out[tenant] += tbl.NumRows()
		tbl.Release()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readParquet(t *testing.T, path string) arrow.Table {
	t.Helper()
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return tbl
}

// checkTypes checks the column types of a table in Parquet (Arrow types)
// and in DuckDB.
func checkTypes(t *testing.T, dir, table string) {
	t.Helper()
	var first string
	filepath.WalkDir(filepath.Join(dir, table), func(p string, d fs.DirEntry, err error) error {
		if err == nil && first == "" && strings.HasSuffix(p, ".parquet") {
			first = p
		}
		return nil
	})
	tbl := readParquet(t, first)
	defer tbl.Release()
	arrowType := func(col string) arrow.Type {
		idx := tbl.Schema().FieldIndices(col)
		if len(idx) == 0 {
			return arrow.NULL
		}
		return tbl.Schema().Field(idx[0]).Type.ID()
	}
	if typ := arrowType("Timestamp"); typ != arrow.TIMESTAMP {
		t.Errorf("%s: Parquet Timestamp is %v, want a timestamp", table, typ)
	}
	res, err := query.Run(context.Background(), dir, "SELECT * FROM "+table+" LIMIT 1")
	if err != nil {
		t.Fatal(err)
	}
	duck := map[string]string{}
	for i, c := range res.Columns {
		duck[c] = res.Types[i]
	}
	if duck["Timestamp"] != "TIMESTAMPTZ" {
		t.Errorf("%s: DuckDB Timestamp is %s, want TIMESTAMPTZ", table, duck["Timestamp"])
	}
	if strings.HasPrefix(table, "Device") {
		if typ := arrowType("ReportId"); typ != arrow.INT64 {
			t.Errorf("%s: Parquet ReportId is %v, want int64", table, typ)
		}
		if duck["ReportId"] != "BIGINT" {
			t.Errorf("%s: DuckDB ReportId is %s, want BIGINT", table, duck["ReportId"])
		}
	}
	if table == "DeviceProcessEvents" {
		for col, want := range map[string]string{"ProcessId": "BIGINT", "IsProcessRemoteSession": "BOOLEAN", "FileName": "VARCHAR", "tenant": "VARCHAR"} {
			if duck[col] != want {
				t.Errorf("%s: DuckDB %s is %s, want %s", table, col, duck[col], want)
			}
		}
	}
}
