package httpapi

import (
	"net/http"
	"net/http/pprof"

	"github.com/stitch-xdr/stitch/internal/auth"
)

// Pprof mounts Go's profiler (net/http/pprof) under /debug/pprof/, so an
// operator can profile a live pipeline as the benchmarks profile a drain:
//
//	go tool pprof http://127.0.0.1:8080/debug/pprof/profile?seconds=30
//	go tool pprof http://127.0.0.1:8080/debug/pprof/heap
//
// The profiles show the process's code paths, memory and command line, so
// they are the API's admins' only: a request needs an admin token of api's
// (go tool pprof sends one with -http_header "Authorization: Bearer ..."),
// or, with no tokens configured, comes from loopback to a loopback name, as
// the API's own. A CPU profile or trace must end within the server's write
// limit (Limits.Write, 60 s by default).
func Pprof(api *API) Option {
	return func(s *Server) {
		guard := func(h http.HandlerFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				p, err := api.principal(r)
				if err != nil {
					writeError(w, err)
					return
				}
				if p.Role != auth.Admin {
					writeError(w, &apiError{http.StatusForbidden, "forbidden", "the profiler needs an admin token"})
					return
				}
				h(w, r)
			}
		}
		s.mux.HandleFunc("GET /debug/pprof/", guard(pprof.Index))
		s.mux.HandleFunc("GET /debug/pprof/cmdline", guard(pprof.Cmdline))
		s.mux.HandleFunc("GET /debug/pprof/profile", guard(pprof.Profile))
		s.mux.HandleFunc("GET /debug/pprof/symbol", guard(pprof.Symbol))
		s.mux.HandleFunc("POST /debug/pprof/symbol", guard(pprof.Symbol))
		s.mux.HandleFunc("GET /debug/pprof/trace", guard(pprof.Trace))
	}
}
