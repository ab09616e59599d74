package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stitch-xdr/stitch/pipeline"
)

// buildStitch builds the binary once per test run.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func stitchBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stitch-bin-*")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "stitch")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = &buildError{string(out)}
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

type buildError struct{ out string }

func (e *buildError) Error() string { return e.out }

// The README's first command, as a user runs it: `stitch run` with no
// configuration starts the embedded broker and the simulator, serves
// metrics and health within seconds, prints progress lines, and on Ctrl-C
// stops cleanly with a summary.
func TestRunEmbeddedShowsProgressAndMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := stitchBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("log:\n  progress_every: 1s\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--state-dir", filepath.Join(dir, "state"), "--http", "127.0.0.1:0", "--rate", "1000")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	metricsRe := regexp.MustCompile(`metrics on (http://\S+)/metrics`)
	progressRe := regexp.MustCompile(`^stitch: \S+ rec/s \| read (\d+) \|`)
	var base string
	var progressed bool
	var all []string
	deadline := time.After(60 * time.Second)
	for !progressed {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("stitch run exited early:\n%s", strings.Join(all, "\n"))
			}
			all = append(all, l)
			if m := metricsRe.FindStringSubmatch(l); m != nil {
				base = m[1]
			}
			if m := progressRe.FindStringSubmatch(l); m != nil && m[1] != "0" {
				progressed = true
			}
		case <-deadline:
			t.Fatalf("no progress line with records read within 60s:\n%s", strings.Join(all, "\n"))
		}
	}
	if base == "" {
		t.Fatalf("metrics address not printed:\n%s", strings.Join(all, "\n"))
	}
	// Ready once every stage joined its group, which can come after the
	// first records went through normalize on a loaded machine.
	for ready := time.Now().Add(30 * time.Second); time.Now().Before(ready); time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
	}
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  "ready",
		"/metrics": "stitch_rows_normalized_total{table=",
		// The API, on loopback as admin with no auth.tokens.
		"/api/me":        `"role":"admin"`,
		"/api/incidents": `"incidents":[`,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s = %d, body does not contain %q:\n%.500s", path, resp.StatusCode, want, body)
		}
	}
	// Ctrl-C: a clean stop with a summary line and exit status 0.
	cmd.Process.Signal(syscall.SIGINT)
	var summary string
	for l := range lines {
		all = append(all, l)
		if strings.Contains(l, "stitch: ran ") {
			summary = l
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stitch run did not stop cleanly: %v\n%s", err, strings.Join(all[max(0, len(all)-20):], "\n"))
	}
	if !regexp.MustCompile(`read [1-9]\d* records, normalized [1-9]\d* rows`).MatchString(summary) {
		t.Errorf("summary line missing or empty: %q", summary)
	}
}

// Bad invocations say what is wrong.
func TestRunRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("kafka:\n  brokerz: [x]\n"), 0o644)
	err := runCmd(context.Background(), []string{"--config", cfg})
	if err == nil || !strings.Contains(err.Error(), "brokerz") {
		t.Fatalf("err = %v", err)
	}
	err = runCmd(context.Background(), []string{"--broker-data", "memory", "--simulate=false", "--state-dir", filepath.Join(dir, "state"), "--http", "nonsense"})
	if err == nil || !strings.Contains(err.Error(), "http.addr (--http, $STITCH_HTTP_ADDR)") {
		t.Fatalf("a bad --http: err = %v", err)
	}
	err = replayCmd(context.Background(), []string{"--out", dir})
	if err == nil || !strings.Contains(err.Error(), "--in") {
		t.Fatalf("replay without inputs: err = %v", err)
	}
}

// A state directory written against another cluster refuses to start; with
// --broker-data memory (a new cluster every run) the refusal says why.
func TestRunMemoryBrokerOnEarlierState(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	os.MkdirAll(state, 0o755)
	os.WriteFile(filepath.Join(state, pipeline.IdentityFile), []byte(`{"cluster_id":"stitch-earlier"}`), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := runCmd(ctx, []string{"--broker-data", "memory", "--simulate=false", "--state-dir", state, "--http", "127.0.0.1:0"})
	if !errors.Is(err, pipeline.ErrStateMismatch) || !strings.Contains(err.Error(), "--reset-state") ||
		!strings.Contains(err.Error(), "--broker-data memory starts an empty broker") {
		t.Fatalf("err = %v", err)
	}
}
