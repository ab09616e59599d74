package httpapi

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stitch-xdr/stitch/internal/auth"
)

// The profiler is served only when asked for, and then only to the API's
// admins: with tokens, an admin token; without, a loopback request.
func TestPprofOnlyWhenAskedAndToAdmins(t *testing.T) {
	admin, adminTok, err := auth.NewToken("ops", auth.Admin, []string{auth.AllTenants}, nil)
	if err != nil {
		t.Fatal(err)
	}
	viewer, viewerTok, err := auth.NewToken("eve", auth.Viewer, []string{auth.AllTenants}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens([]auth.Token{adminTok, viewerTok}, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(s *Server, path, bearer string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+s.Addr()+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	paths := []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/cmdline"}

	off, err := Listen("127.0.0.1:0", prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	for _, path := range paths {
		if code, _ := get(off, path, ""); code != http.StatusNotFound {
			t.Errorf("pprof off: GET %s: %d, want 404", path, code)
		}
	}

	local, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), Pprof(&API{}))
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	for _, path := range paths {
		if code, body := get(local, path, ""); code != http.StatusOK || body == "" {
			t.Errorf("no tokens, loopback: GET %s: %d %.100q", path, code, body)
		}
	}
	if _, body := get(local, "/debug/pprof/heap?debug=1", ""); !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile: %.200q", body)
	}

	guarded, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), Pprof(&API{Tokens: tokens}))
	if err != nil {
		t.Fatal(err)
	}
	defer guarded.Close()
	for _, path := range paths {
		for bearer, want := range map[string]int{"": http.StatusUnauthorized, viewer: http.StatusForbidden, "nonsense": http.StatusUnauthorized, admin: http.StatusOK} {
			if code, _ := get(guarded, path, bearer); code != want {
				t.Errorf("tokens: GET %s with %q: %d, want %d", path, bearer, code, want)
			}
		}
	}
}
