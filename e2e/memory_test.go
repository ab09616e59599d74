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
	gen := func(name string, n int, tenant func(int) string, at func(int) time.Time) string {
		return processEvents(t, filepath.Join(dir, name+".jsonl"), n, tenant, at)
	}
	many := func(i int) string { return fmt.Sprintf("tenant-%d", i) }
	same := func(int) time.Time { return hourly(0) }
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
	floor, _ := replay(gen("few", 5, tenantT1, hourly))
	bound := floor + (maxOpen*(2<<20)+2*maxBuffered)>>20 + 128
	t.Logf("a replay of 5 records peaks at %d MiB; bound %d MiB", floor, bound)
	for _, c := range []struct {
		name   string
		n      int
		tenant func(int) string
		at     func(int) time.Time
		long   bool
	}{
		{"400-hours", 400, tenantT1, hourly, false},
		{"400-tenants", 400, many, same, false},
		{"25000-hours", 25000, tenantT1, hourly, true},
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

// processEvents writes n DeviceProcessEvents records, record i of tenant(i)
// at at(i), to path and returns it.
func processEvents(t *testing.T, path string, n int, tenant func(int) string, at func(int) time.Time) string {
	t.Helper()
	var sb strings.Builder
	for i := range n {
		ts := at(i).Format(time.RFC3339)
		fmt.Fprintf(&sb, `{"time":%q,"tenantId":%q,"category":"AdvancedHunting-DeviceProcessEvents","properties":{"Timestamp":%q,"DeviceName":"d","ProcessId":%d}}`+"\n", ts, tenant(i), ts, i)
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func tenantT1(int) string { return "t1" }

// hourly is the i-th hour from 2020-01-01.
func hourly(i int) time.Time {
	return time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
}

// TestReplayStopsWhileTheWriterIsBusy: a replay of 25,000 hours (a file
// per hour; 167 s on two cores) neither honoured replay --timeout nor
// SIGTERM while the hunting writer was busy. Both now end it within
// seconds: the sink gives up between files and drops its unfinished
// segment whole, and the replay says it did not finish. SIGTERM is sent
// once the writer has staged 20 files; the timeout is 3 s, by when it has.
func TestReplayStopsWhileTheWriterIsBusy(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	in := processEvents(t, filepath.Join(dir, "hours.jsonl"), 25000, tenantT1, hourly)
	const timeout, grace = 3 * time.Second, 20 * time.Second
	for _, how := range []string{"timeout", "SIGTERM"} {
		t.Run(how, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+how)
			args := []string{"replay", "--in", in, "--out", out}
			if how == "timeout" {
				args = append(args, "--timeout", timeout.String())
			}
			cmd := exec.Command(bin, args...)
			var log strings.Builder
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			stopped := time.Now().Add(timeout)
			if how == "SIGTERM" {
				staged := func() int {
					f, _ := filepath.Glob(filepath.Join(out, "hunting", "_staging", "*", "*"))
					return len(f)
				}
				for staged() < 20 {
					select {
					case err := <-done:
						t.Fatalf("the replay ended before its writer staged 20 files: %v\n%s", err, lastLines(log.String()))
					case <-time.After(50 * time.Millisecond):
					}
				}
				stopped = time.Now()
				t.Logf("SIGTERM with %d files staged", staged())
				cmd.Process.Signal(syscall.SIGTERM)
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(time.Until(stopped) + grace):
				cmd.Process.Kill()
				<-done
				t.Fatalf("the replay went on %s after its %s:\n%s", grace, how, lastLines(log.String()))
			}
			t.Logf("exited %s after the %s", time.Since(stopped).Round(100*time.Millisecond), how)
			if err == nil || !strings.Contains(log.String(), "replay did not finish") {
				t.Errorf("a replay stopped by %s: %v, output:\n%s", how, err, lastLines(log.String()))
			}
		})
	}
}

// lastLines is the last lines of a process's output.
func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}
