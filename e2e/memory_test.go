package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReplayMemoryBoundedByConfiguration replays what made the hunting
// writer grow 1-1.5 MB per distinct (table, tenant, hour) of a segment (400
// hours of input, 70 KB, peaked at 530 MB; 25,000 hours reached 24 GB and
// were killed): one record for each of 400 hours, of 400 tenants and (with
// -stitch.long) of 25,000 hours. The process's peak RSS stays under the
// bound of docs/ARCHITECTURE.md for its configuration: what a replay of a
// handful of records takes, plus the writer's max_open_files x 2 MiB + 2 x
// max_buffered_bytes, plus 128 MiB for the rest of a transaction's working
// set (batches of up to max_poll_records records in flight). Every row is
// in Parquet.
func TestReplayMemoryBoundedByConfiguration(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	const maxOpen, maxBuffered = 4, 8 << 20
	cfg := filepath.Join(dir, "stitch.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "hunting:\n  max_open_files: %d\n  max_buffered_bytes: %d\n", maxOpen, maxBuffered), 0o644); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	gen := func(name string, n int, tenant func(int) string, at func(int) time.Time) string {
		var sb strings.Builder
		for i := range n {
			ts := at(i).Format(time.RFC3339)
			fmt.Fprintf(&sb, `{"time":%q,"tenantId":%q,"category":"AdvancedHunting-DeviceProcessEvents","properties":{"Timestamp":%q,"DeviceName":"d","ProcessId":%d}}`+"\n", ts, tenant(i), ts, i)
		}
		p := filepath.Join(dir, name+".jsonl")
		if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	one := func(int) string { return "t1" }
	many := func(i int) string { return fmt.Sprintf("tenant-%d", i) }
	hourly := func(i int) time.Time { return base.Add(time.Duration(i) * time.Hour) }
	same := func(int) time.Time { return base }
	replay := func(in string) (rssMiB int64, rows int64) {
		t.Helper()
		out := filepath.Join(dir, "out-"+filepath.Base(in))
		cmd := exec.Command(bin, "replay", "--config", cfg, "--in", in, "--out", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("replay %s: %v\n%s", filepath.Base(in), err, b)
		}
		for _, n := range huntingRows(t, filepath.Join(out, "hunting")) {
			rows += n
		}
		return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss >> 10, rows
	}
	floor, _ := replay(gen("few", 5, one, hourly))
	bound := floor + (maxOpen*(2<<20)+2*maxBuffered)>>20 + 128
	t.Logf("a replay of 5 records peaks at %d MiB; bound %d MiB", floor, bound)
	for _, c := range []struct {
		name   string
		n      int
		tenant func(int) string
		at     func(int) time.Time
		long   bool
	}{
		{"400-hours", 400, one, hourly, false},
		{"400-tenants", 400, many, same, false},
		{"25000-hours", 25000, one, hourly, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.long && !*long {
				t.Skip("-stitch.long (or STITCH_E2E_LONG=1)")
			}
			rss, rows := replay(gen(c.name, c.n, c.tenant, c.at))
			t.Logf("peak RSS %d MiB (bound %d MiB), %d rows in Parquet", rss, bound, rows)
			if rss > bound {
				t.Errorf("peak RSS %d MiB, over the bound of %d MiB", rss, bound)
			}
			if rows != int64(c.n) {
				t.Errorf("%d rows in Parquet, want %d", rows, c.n)
			}
		})
	}
}
