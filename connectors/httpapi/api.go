package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/view"
)

// API is the JSON API of the pane (docs/API.md): the incident view read
// within each token's scope, analysts' changes and decisions recorded on
// their topics, and hunting over the Parquet partitions.
type API struct {
	// View is the incident view (the pipeline's view stage fills it).
	View *view.Index
	// Tokens are the configured tokens; none: loopback only, as admin.
	Tokens *auth.Tokens
	// Record writes v as JSON on topic under key (the pipeline's brokers).
	Record func(ctx context.Context, topic, key string, v any) error
	// Approvals is the topic of decisions on actions (respond.approvals).
	Approvals string
	// Updates is the topic of analysts' changes to incidents.
	Updates string
	// HuntingDir holds the hunting partitions (hunting.dir).
	HuntingDir string
	Log        *slog.Logger

	// patching serializes this process's changes to incidents, so that two
	// changes of one incident do not both start from the same revision.
	patching sync.Mutex
}

// route is one endpoint: the method and pattern it is served on, the
// permission it needs (none: open), and its handler.
type route struct {
	method, path string
	perm         auth.Permission
	handle       func(a *API, w http.ResponseWriter, r *http.Request, p *auth.Principal) error
}

// routes are every endpoint of the API; openapi.json documents exactly
// these (TestOpenAPIMatchesRoutes).
var routes = []route{
	{"GET", "/api/me", auth.Read, (*API).me},
	{"GET", "/api/incidents", auth.Read, (*API).listIncidents},
	{"GET", "/api/incidents/{id}", auth.Read, (*API).getIncident},
	{"PATCH", "/api/incidents/{id}", auth.Update, (*API).patchIncident},
	{"GET", "/api/actions", auth.Read, (*API).listActions},
	{"GET", "/api/actions/{id}", auth.Read, (*API).getAction},
	{"POST", "/api/actions/{id}/approve", auth.Approve, (*API).approve},
	{"POST", "/api/actions/{id}/reject", auth.Approve, (*API).reject},
	{"GET", "/api/entities/search", auth.Read, (*API).searchEntities},
	{"GET", "/api/entities/{type}/{id...}", auth.Read, (*API).getEntity},
	{"POST", "/api/hunt", auth.Hunt, (*API).hunt},
	{"GET", "/api/openapi.json", "", (*API).openAPI},
}

// WithAPI serves the API under /api/ beside the operational endpoints.
func WithAPI(a *API) Option {
	return func(s *Server) {
		if a.Log == nil {
			a.Log = s.log
		}
		for _, rt := range routes {
			s.mux.Handle(rt.method+" "+rt.path, a.handler(rt))
		}
		// Anything else under /api/ is a JSON 404, not the mux's text.
		s.mux.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, errNotFound("no endpoint %s %s (GET /api/openapi.json lists them)", r.Method, r.URL.Path))
		}))
	}
}

func (a *API) handler(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p *auth.Principal
		if rt.perm != "" {
			var err error
			if p, err = a.principal(r); err != nil {
				writeError(w, err)
				return
			}
			if !p.Can(rt.perm) {
				writeError(w, &apiError{http.StatusForbidden, "forbidden",
					fmt.Sprintf("role %s of %s may not %s (it needs the %s permission)", p.Role, p.Name, rt.path, rt.perm)})
				return
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !isJSON(r.Header.Get("Content-Type")) {
			// A page of another site can send a form or text/plain without
			// asking (a CORS simple request), not application/json.
			writeError(w, &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type", "send Content-Type: application/json (an empty body is allowed where the endpoint takes none)"})
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		if err := rt.handle(a, w, r, p); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				a.Log.Error("api", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		}
	})
}

// principal is who the request comes from: its bearer token's, or with no
// tokens configured, the local admin of a loopback request.
func (a *API) principal(r *http.Request) (*auth.Principal, error) {
	if a.Tokens == nil || a.Tokens.Len() == 0 {
		// The Host too: a name of another site that resolves to 127.0.0.1
		// (DNS rebinding) must not make its pages this machine's admin.
		if !loopback(r.RemoteAddr) || !loopbackHost(r.Host) {
			return nil, &apiError{http.StatusForbidden, "forbidden", "no auth.tokens are configured: the API answers only on loopback, at a loopback address or localhost (make a token with 'stitch token create')"}
		}
		return auth.Anonymous, nil
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || strings.TrimSpace(tok) == "" {
		return nil, &apiError{http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token> (stitch token create makes one)"}
	}
	p := a.Tokens.Lookup(strings.TrimSpace(tok))
	if p == nil {
		return nil, &apiError{http.StatusUnauthorized, "unauthorized", "the token is not one of auth.tokens"}
	}
	return p, nil
}

// loopback says whether a remote address is this machine.
func loopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackHost says whether a Host header names this machine.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isJSON(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// Limits of input.
const (
	maxBody    = 64 << 10
	maxID      = 128
	maxLimit   = 500
	maxQuery   = 256
	maxComment = 4 << 10
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9._:@/\-]+$`)

func checkID(what, id string) error {
	if id == "" || len(id) > maxID || !idRE.MatchString(id) {
		return errBadRequest("%s %q is not an id (1-%d characters of letters, digits and ._:@/-)", what, truncate(id, 40), maxID)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// apiError is an error answered as JSON with its status and reason.
type apiError struct {
	status int
	code   string
	reason string
}

func (e *apiError) Error() string { return e.reason }

func errBadRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

func errNotFound(format string, args ...any) error {
	return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	default:
		ae = &apiError{http.StatusInternalServerError, "internal", err.Error()}
	}
	writeJSON(w, ae.status, map[string]string{"error": ae.code, "reason": ae.reason})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// decodeBody reads a JSON body strictly: unknown keys and trailing data
// are errors that say so. An empty body is an error unless optional.
func decodeBody(r *http.Request, v any, optional bool) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is larger than %d bytes", mbe.Limit)}
		}
		return errBadRequest("read the body: %v", err)
	}
	if optional && len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errBadRequest("the body is empty: send a JSON object")
		}
		return errBadRequest("the body is not the JSON this endpoint takes: %v", err)
	}
	if dec.More() {
		return errBadRequest("the body holds more than one JSON value")
	}
	return nil
}

// list reads a comma-separated query parameter, each value one of allowed
// (nil: any id).
func list(r *http.Request, name string, allowed []string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(r.URL.Query().Get(name), ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		if allowed != nil {
			ok := false
			for _, a := range allowed {
				ok = ok || a == v
			}
			if !ok {
				return nil, errBadRequest("%s %q is not one of %s", name, v, strings.Join(allowed, ", "))
			}
		} else if err := checkID(name, v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// page reads sort, limit and cursor.
func page(r *http.Request, def int) (view.Page, error) {
	q := r.URL.Query()
	p := view.Page{Sort: q.Get("sort"), Limit: def, Cursor: q.Get("cursor")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return p, errBadRequest("limit %q is not a number from 1 to %d", truncate(s, 20), maxLimit)
		}
		p.Limit = n
	}
	if len(p.Cursor) > 1024 {
		return p, errBadRequest("cursor is too long")
	}
	return p, nil
}
