package httpapi

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A server listened as stitch run does (no WithLimits) bounds every
// connection: headers, whole request, answer, idle keep-alive and header
// size are all set, none left at net/http's zero (no limit).
func TestDefaultLimitsBoundEveryConnection(t *testing.T) {
	s, err := Listen("127.0.0.1:0", prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.srv.ReadHeaderTimeout <= 0 || s.srv.ReadTimeout <= 0 || s.srv.WriteTimeout <= 0 || s.srv.IdleTimeout <= 0 || s.srv.MaxHeaderBytes <= 0 {
		t.Fatalf("unbounded: read header %s, read %s, write %s, idle %s, header bytes %d",
			s.srv.ReadHeaderTimeout, s.srv.ReadTimeout, s.srv.WriteTimeout, s.srv.IdleTimeout, s.srv.MaxHeaderBytes)
	}
	if s.srv.ReadHeaderTimeout != DefaultLimits.ReadHeader || s.srv.IdleTimeout != DefaultLimits.Idle {
		t.Errorf("the defaults are not applied: %+v", DefaultLimits)
	}
}
