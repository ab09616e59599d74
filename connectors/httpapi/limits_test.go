package httpapi

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A connection that sends its request headers too slowly, or stays idle
// after a request, is closed by the server; so is one whose headers are too
// large.
func TestConnectionLimits(t *testing.T) {
	lim := Limits{ReadHeader: 200 * time.Millisecond, Read: 300 * time.Millisecond, Write: time.Second, Idle: 300 * time.Millisecond, HeaderSize: 4 << 10}
	s, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), WithLimits(lim))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.srv.ReadHeaderTimeout != lim.ReadHeader || s.srv.ReadTimeout != lim.Read || s.srv.WriteTimeout != lim.Write ||
		s.srv.IdleTimeout != lim.Idle || s.srv.MaxHeaderBytes != lim.HeaderSize {
		t.Fatalf("server limits not applied: %+v", s.srv)
	}
	closedWithin := func(t *testing.T, c net.Conn, d time.Duration) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(d))
		start := time.Now()
		if _, err := io.Copy(io.Discard, c); err != nil { // EOF is a nil error: the server closed it
			t.Fatalf("connection still open after %s: %v", time.Since(start), err)
		}
	}

	t.Run("slow headers", func(t *testing.T) {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n") // and never the blank line
		closedWithin(t, c, 5*time.Second)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, "200") {
			t.Fatalf("first request: %q %v", line, err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("idle connection not closed: %v", err)
		}
	})
	t.Run("large headers", func(t *testing.T) {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		if !strings.Contains(line, "431") {
			t.Fatalf("answer to 64 KiB of headers: %q, want 431", line)
		}
	})
}
