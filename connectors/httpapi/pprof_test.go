package httpapi

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The profiler is served only when asked for.
func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		var opts []Option
		if on {
			opts = append(opts, Pprof())
		}
		s, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/cmdline"} {
			resp, err := http.Get("http://" + s.Addr() + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if on && (resp.StatusCode != http.StatusOK || len(body) == 0) {
				t.Errorf("pprof on: GET %s: %d %q", path, resp.StatusCode, body)
			}
			if !on && resp.StatusCode != http.StatusNotFound {
				t.Errorf("pprof off: GET %s: %d, want 404", path, resp.StatusCode)
			}
			if on && strings.HasPrefix(path, "/debug/pprof/heap") && !strings.Contains(string(body), "heap profile") {
				t.Errorf("heap profile: %.200q", body)
			}
		}
		s.Close()
	}
}
