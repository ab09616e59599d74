package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Memory bounds of TestBackpressure, for the config it writes (fetches of
// 1 MiB, producer buffer 2 MiB (twice normalize.max_record_bytes, the least
// Config.Validate allows), 500 records a poll, Pebble cache 16 MiB and
// memtables 8 MiB, Parquet segments rolled at 8 MiB or 2 s). What a run
// holds is meant to be set by those knobs, not by how far behind it is:
// Arrow batches being built (≤ normalize.batch_bytes per table and tenant)
// and the hunting writers' open row groups, the fetch and producer buffers,
// Pebble, the Go runtime and its GC headroom (GOGC=100 lets the heap in use
// reach about twice the live data). Measured on a 2-core machine: peaks of
// ~470-500 MiB RSS, ~360-430 MiB heap in use, ~30 MiB Arrow (150k and 300k
// records); the bounds are those peaks with ~50% headroom, under the size
// of the input (~640 MB), which a pipeline holding its backlog would exceed
// on top of its ~200 MiB base.
const (
	maxRSS      = 768 << 20
	maxHeap     = 640 << 20
	maxArrow    = 128 << 20
	bpRecords   = 300000
	bpProducers = 3
)

// TestBackpressure produces bpRecords records (~640 MB) as fast as
// bpProducers `stitch produce` processes can while one `stitch run`
// consumes, samples the run's memory every 200 ms (VmRSS, Go heap in use,
// Arrow bytes) and its input lag, and checks that memory stays under the
// bounds above while the lag grows to a large part of the input, then that
// every record is accounted for: read = produced = normalized + dead letters.
func TestBackpressure(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	in := writeInput(t, dir, bpRecords-4) // writeInput adds 4 bad lines
	parts := splitInput(t, in, bpProducers)
	cfg := filepath.Join(dir, "backpressure.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`kafka:
  max_buffered_bytes: 2097152
  max_poll_records: 500
  fetch_max_bytes: 1048576
topics:
  partitions: %d
state:
  cache_bytes: 16777216
  memtable_bytes: 8388608
hunting:
  roll_bytes: 8388608
  roll_age: 2s
`, partitions)), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := startBroker(t)
	p := startRun(t, addr, cfg, filepath.Join(dir, "state"), filepath.Join(dir, "run.log"))
	var maddr string
	for i := 0; i < 300; i++ {
		if a, ok := httpAddr(p); ok {
			if _, ok := status(p); ok {
				maddr = a
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if maddr == "" {
		t.Fatalf("stitch run did not serve /status:\n%s", tail(p.log, 20))
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	start := time.Now()
	var wg sync.WaitGroup
	var produceDone time.Duration
	for _, part := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := exec.Command(bin, "produce", "--brokers", addr, "--in", part).CombinedOutput(); err != nil {
				t.Errorf("stitch produce %s: %v\n%s", part, err, out)
			}
		}()
	}
	produced := make(chan struct{})
	go func() { wg.Wait(); produceDone = time.Since(start); close(produced) }()

	var peak struct {
		rss, heap, arrow, lag, gauge int64
		lagAt                        time.Duration
	}
	samples := 0
	deadline := time.After(4 * time.Minute)
	var last runStatus
	for done := false; !done; {
		select {
		case <-deadline:
			t.Fatalf("not all records processed in 4 minutes: read %d of %d\n%s", last.RecordsRead, bpRecords, tail(p.log, 20))
		case <-time.After(200 * time.Millisecond):
		}
		if p.cmd.ProcessState != nil {
			t.Fatalf("stitch run exited: %v\n%s", p.cmd.ProcessState, tail(p.log, 30))
		}
		rss := vmRSS(t, p.cmd.Process.Pid)
		m := scrape(maddr, "stitch_arrow_allocated_bytes", "go_memstats_heap_inuse_bytes", `stitch_consumer_lag_records{group="stitch-normalize"}`)
		st, ok := status(p)
		if !ok {
			continue
		}
		last = st
		var end int64
		if ends, err := adm.ListEndOffsets(context.Background(), "signals"); err == nil {
			ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
		}
		lag := end - st.RecordsIn["signals"]
		samples++
		peak.rss = max(peak.rss, rss)
		peak.heap = max(peak.heap, m[1])
		peak.arrow = max(peak.arrow, m[0])
		peak.gauge = max(peak.gauge, m[2])
		if lag > peak.lag {
			peak.lag, peak.lagAt = lag, time.Since(start)
		}
		if rss > maxRSS || m[1] > maxHeap || m[0] > maxArrow {
			t.Errorf("at %s (lag %d, read %d): RSS %d MiB (bound %d), heap in use %d MiB (bound %d), Arrow %d MiB (bound %d)",
				time.Since(start).Round(time.Millisecond), lag, st.RecordsRead, rss>>20, maxRSS>>20, m[1]>>20, maxHeap>>20, m[0]>>20, maxArrow>>20)
		}
		select {
		case <-produced:
			done = st.RecordsIn["signals"] >= bpRecords && st.RecordsRead >= bpRecords
		default:
		}
	}
	took := time.Since(start)
	t.Logf("%d records produced in %s (%.0f/s) by %d producers; pipeline done after %s (%.0f/s); %d samples",
		bpRecords, produceDone.Round(time.Millisecond), float64(bpRecords)/produceDone.Seconds(), bpProducers,
		took.Round(time.Millisecond), float64(bpRecords)/took.Seconds(), samples)
	t.Logf("peaks: RSS %d MiB, heap in use %d MiB, Arrow %d MiB; input lag %d records at %s (lag gauge %d)",
		peak.rss>>20, peak.heap>>20, peak.arrow>>20, peak.lag, peak.lagAt.Round(time.Millisecond), peak.gauge)
	if peak.lag < bpRecords/4 {
		t.Errorf("input lag peaked at %d records: the input did not outrun the pipeline (want ≥ %d)", peak.lag, bpRecords/4)
	}
	var normalized, dead int64
	for _, n := range last.Normalized {
		normalized += n
	}
	for _, n := range last.Dead {
		dead += n
	}
	t.Logf("read %d, normalized %d, dead letters %d", last.RecordsRead, normalized, dead)
	if last.RecordsIn["signals"] != bpRecords || last.RecordsRead != bpRecords || normalized+dead != bpRecords || dead != 4 {
		t.Errorf("records unaccounted for: produced %d, consumed %d, read %d, normalized %d + dead letters %d (want 4)",
			bpRecords, last.RecordsIn["signals"], last.RecordsRead, normalized, dead)
	}
	p.stop(t)
	if t.Failed() {
		t.Logf("log:\n%s", tail(p.log, 30))
	}
}

// vmRSS is a process's resident set in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// scrape reads the named series (name with labels, as exposed) from /metrics.
func scrape(addr string, names ...string) []int64 {
	out := make([]int64, len(names))
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		for i, n := range names {
			if name == n {
				f, _ := strconv.ParseFloat(v, 64)
				out[i] = int64(f)
			}
		}
	}
	return out
}
