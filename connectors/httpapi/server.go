// Package httpapi serves stitch's HTTP endpoints: Prometheus metrics,
// liveness and readiness (open), and the pane's JSON API under /api/
// (api.go; bearer tokens, roles and tenant scopes; docs/API.md).
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stitch-xdr/stitch/connectors/httpapi/ui"
)

// Server is the HTTP endpoint of one stitch process.
type Server struct {
	mux    *http.ServeMux
	srv    *http.Server
	ln     net.Listener
	ready  func() (bool, string)
	status func() any
	log    *slog.Logger
	limits Limits
}

// Limits bound what one connection may hold of the server: a client that
// sends its request slowly (slowloris), reads the answer slowly or keeps an
// idle connection open is cut off instead of holding a goroutine and a file
// descriptor for ever.
type Limits struct {
	ReadHeader time.Duration // to receive a request's headers
	Read       time.Duration // to receive a whole request, body included
	Write      time.Duration // to write the answer, from the end of the request's headers
	Idle       time.Duration // a keep-alive connection waits this long for its next request
	HeaderSize int           // largest request headers, in bytes
}

// DefaultLimits are generous for the operational endpoints (a scrape of
// /metrics takes milliseconds) and for the API to come.
var DefaultLimits = Limits{
	ReadHeader: 5 * time.Second,
	Read:       30 * time.Second,
	Write:      60 * time.Second,
	Idle:       2 * time.Minute,
	HeaderSize: 64 << 10,
}

// Option adjusts a Server.
type Option func(*Server)

// Ready sets the readiness check: /readyz answers 200 when it returns true and
// 503 with the reason otherwise.
func Ready(f func() (bool, string)) Option { return func(s *Server) { s.ready = f } }

// Status sets what /status returns as JSON (progress counters).
func Status(f func() any) Option { return func(s *Server) { s.status = f } }

// WithLimits replaces DefaultLimits.
func WithLimits(l Limits) Option { return func(s *Server) { s.limits = l } }

// Logger sets the logger.
func Logger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// Listen binds addr (host:port; port 0 picks a free one) and serves the
// registry's metrics until Close.
func Listen(addr string, reg *prometheus.Registry, opts ...Option) (*Server, error) {
	s := &Server{mux: http.NewServeMux(), log: slog.Default(), ready: func() (bool, string) { return true, "" }, limits: DefaultLimits}
	for _, o := range opts {
		o(s)
	}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ok, why := s.ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s.mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var v any = map[string]string{}
		if s.status != nil {
			v = s.status()
		}
		_ = json.NewEncoder(w).Encode(v)
	})
	s.mux.Handle("/", ui.Handler()) // the pane's pages; every other route is more specific
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen on %s: %w", addr, err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: s.limits.ReadHeader,
		ReadTimeout:       s.limits.Read,
		WriteTimeout:      s.limits.Write,
		IdleTimeout:       s.limits.Idle,
		MaxHeaderBytes:    s.limits.HeaderSize,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handle adds a route (the API and page add theirs here).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Close stops the server, letting requests in flight finish for a moment.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}
