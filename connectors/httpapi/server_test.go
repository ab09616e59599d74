package httpapi

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Readiness follows the pipeline: 503 with the reason until the stages have
// joined, 200 after; liveness and metrics answer throughout.
func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "stitch_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var ready atomic.Bool
	s, err := Listen("127.0.0.1:0", reg,
		Ready(func() (bool, string) { return ready.Load(), "stages have not joined" }),
		Status(func() any { return map[string]int{"records_read": 7} }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr()

	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "stages have not joined") {
		t.Errorf("/readyz before ready = %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz when ready = %d", code)
	}
	if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "stitch_test_total 3") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, body := get(t, base+"/status"); code != 200 || !strings.Contains(body, `"records_read":7`) {
		t.Errorf("/status = %d %q", code, body)
	}
	if _, err := Listen(s.Addr(), reg); err == nil || !strings.Contains(err.Error(), s.Addr()) {
		t.Errorf("a taken address should fail naming it: %v", err)
	}
}
