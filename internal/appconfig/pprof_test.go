package appconfig

import (
	"strings"
	"testing"

	"github.com/stitch-xdr/stitch/internal/auth"
)

// http.pprof is off by default, and refused on an address others can reach
// unless the API's tokens guard it (httpapi.Pprof serves admins only).
func TestPprofOnLoopbackOrBehindTokens(t *testing.T) {
	if Default().HTTP.Pprof {
		t.Fatal("http.pprof is on by default")
	}
	_, tok, err := auth.NewToken("ops", auth.Admin, []string{auth.AllTenants}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for addr, ok := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:0": true, "localhost:9000": true, "127.0.0.2:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.5:8080": false, "example.com:80": false, "nonsense": false,
	} {
		cfg := Default()
		cfg.HTTP.Addr, cfg.HTTP.Pprof = addr, true
		err := cfg.Validate()
		if ok && err != nil {
			t.Errorf("%s: %v", addr, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "http.pprof")) {
			t.Errorf("%s: accepted (err %v)", addr, err)
		}
		cfg.Auth.Tokens = []auth.Token{tok}
		if err := cfg.Validate(); addr != "nonsense" && err != nil {
			t.Errorf("%s with tokens: %v", addr, err)
		}
		cfg.HTTP.Pprof, cfg.Auth.Tokens = false, nil
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s with pprof off: %v", addr, err)
		}
	}
}
