package query

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v17/arrow/memory"

	"github.com/stitch-xdr/stitch/connectors/parquet"
	"github.com/stitch-xdr/stitch/connectors/parquet/parquettest"
)

// TestReadmeDuckDBExample runs the README's DuckDB example, as written
// there, over a hunting directory that two instances wrote (a partition
// moving from one to the other midway), with DuckDB alone (no stitch
// views): each row once, a numeric tenant id kept a string, the older
// date pruned.
func TestReadmeDuckDBExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### One directory for every instance")
	_, example, ok2 := strings.Cut(section, "```sql\n")
	example, _, ok3 := strings.Cut(example, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README: no sql example under \"One directory for every instance\"")
	}

	dir := t.TempDir()
	a, err := parquet.Open(dir, parquet.Instance("a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := parquet.Open(dir, parquet.Instance("b"))
	if err != nil {
		t.Fatal(err)
	}
	p0 := parquet.TopicPartition{Topic: "hunting.DeviceProcessEvents", Partition: 0}
	p1 := parquet.TopicPartition{Topic: "hunting.DeviceProcessEvents", Partition: 1}
	june := time.Date(2024, 6, 3, 8, 0, 0, 0, time.UTC)
	may := time.Date(2024, 5, 30, 8, 0, 0, 0, time.UTC)
	want := map[string]int{}
	all := 0 // every row written, whatever its date
	id := int64(0)
	write := func(w *parquet.Writer, tp parquet.TopicPartition, off int64, tenant string, at time.Time, n int) {
		t.Helper()
		var rows []parquettest.Row
		for range n {
			rows = append(rows, parquettest.Row{Time: at.Add(time.Duration(id) * time.Minute), ID: id})
			id++
		}
		batch := parquettest.Batch(memory.DefaultAllocator, parquettest.Schema("DeviceProcessEvents"), tenant, rows)
		defer batch.Release()
		if err := w.Write(parquet.Source{Topic: tp.Topic, Partition: tp.Partition, Offset: off}, batch); err != nil {
			t.Fatal(err)
		}
		if !at.Before(june) {
			want[tenant] += n
		}
		all += n
	}
	write(a, p0, 0, "t1", june, 3)
	write(a, p0, 1, "t1", may, 2)
	write(b, p1, 0, "42", june, 4)
	for _, w := range []*parquet.Writer{a, b} {
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	// Partition 0 moves from a to b, which continues it in place.
	if err := a.Release(p0); err != nil {
		t.Fatal(err)
	}
	if next, busy, err := b.Own(p0); err != nil || len(busy) > 0 || next[p0] != 2 {
		t.Fatalf("b owns p0: %v %v %v", next, busy, err)
	}
	write(b, p0, 1, "t1", june, 1) // already committed by a: skipped
	want["t1"]--
	all--
	write(b, p0, 2, "t1", june, 5)
	for _, w := range []*parquet.Writer{a, b} {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}

	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := strings.ReplaceAll(example, "/shared/hunting", dir)
	rows, err := db.Query(q)
	if err != nil {
		t.Fatalf("README example: %v\n%s", err, q)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var tenant any
		var events, devices int64
		if err := rows.Scan(&tenant, &events, &devices); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%T %v: %d events, %d devices", tenant, tenant, events, devices))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	wantRows := []string{
		fmt.Sprintf("string 42: %d events, %d devices", want["42"], want["42"]),
		fmt.Sprintf("string t1: %d events, %d devices", want["t1"], want["t1"]),
	}
	if strings.Join(got, "\n") != strings.Join(wantRows, "\n") {
		t.Errorf("README example over a directory two instances wrote:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantRows, "\n"))
	}
	// And stitch hunt's own views see each row once.
	res, err := Run(context.Background(), dir, "SELECT count(*), count(DISTINCT ReportId) FROM DeviceProcessEvents")
	if err != nil {
		t.Fatal(err)
	}
	if n, distinct := fmt.Sprint(res.Rows[0][0]), fmt.Sprint(res.Rows[0][1]); n != fmt.Sprint(all) || distinct != n {
		t.Errorf("stitch hunt counts %s rows, %s distinct, want %d", n, distinct, all)
	}
}
