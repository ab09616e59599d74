package httpapi

import "net/http/pprof"

// Pprof mounts Go's profiler (net/http/pprof) under /debug/pprof/, so an
// operator can profile a live pipeline as the benchmarks profile a drain:
//
//	go tool pprof http://127.0.0.1:8080/debug/pprof/profile?seconds=30
//	go tool pprof http://127.0.0.1:8080/debug/pprof/heap
//
// The profiles show the process's code paths and memory, so the caller
// decides who may reach them (stitch run refuses http.pprof on an address
// other than loopback). A CPU profile or trace must end within the
// server's write limit (Limits.Write, 60 s by default).
func Pprof() Option {
	return func(s *Server) {
		s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
}
