package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/query"
)

// huntRequest is the body of POST /api/hunt.
type huntRequest struct {
	Query    string `json:"query"`
	Language string `json:"language"` // sql (default) or kql
	Tenant   string `json:"tenant"`
	Since    string `json:"since"` // a Go duration: 24h
	Limit    int    `json:"limit"`
}

// Limits of a hunt: stitch hunt's row limit, and a time limit inside the
// server's write limit.
const (
	maxHuntQuery = 16 << 10
	huntTimeout  = 50 * time.Second
)

func (a *API) hunt(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	var req huntRequest
	if err := decodeBody(r, &req, false); err != nil {
		return err
	}
	if strings.TrimSpace(req.Query) == "" || len(req.Query) > maxHuntQuery || !utf8.ValidString(req.Query) {
		return errBadRequest("query must be 1 to %d bytes of UTF-8", maxHuntQuery)
	}
	opts := []query.Option{query.Timeout(huntTimeout)}
	switch strings.ToLower(req.Language) {
	case "", "sql":
	case "kql":
		opts = append(opts, query.In(query.KQL))
	default:
		return errBadRequest("language %q is not sql or kql", truncate(req.Language, 20))
	}
	limit := query.DefaultLimit
	if req.Limit != 0 {
		if req.Limit < 1 || req.Limit > query.DefaultLimit {
			return errBadRequest("limit %d is not from 1 to %d", req.Limit, query.DefaultLimit)
		}
		limit = req.Limit
	}
	opts = append(opts, query.Limit(limit))
	if req.Since != "" {
		d, err := time.ParseDuration(req.Since)
		if err != nil || d <= 0 {
			return errBadRequest("since %q is not a positive duration (24h)", truncate(req.Since, 20))
		}
		opts = append(opts, query.Since(time.Now().Add(-d)))
	}
	// The same scoping as stitch hunt --tenant: every table holds only the
	// tenant's files. Only a token of every tenant hunts them all.
	if p.DeviceScoped() {
		return &apiError{http.StatusForbidden, "forbidden", "hunting is scoped by tenant only: a token limited to device groups cannot hunt"}
	}
	tenant := req.Tenant
	switch {
	case tenant != "":
		if err := checkID("tenant", tenant); err != nil {
			return err
		}
		if !p.SeesTenant(tenant) {
			return &apiError{http.StatusForbidden, "forbidden", "tenant " + tenant + " is not one of your tenants"}
		}
	case len(p.Tenants) == 1 && !p.AllTenants():
		tenant = p.Tenants[0]
	case !p.AllTenants():
		return errBadRequest("name the tenant to hunt in (one of %s)", strings.Join(p.Tenants, ", "))
	}
	if tenant != "" {
		opts = append(opts, query.TenantID(tenant))
	}
	res, err := query.Run(r.Context(), a.HuntingDir, req.Query, opts...)
	if err != nil {
		if errors.Is(err, r.Context().Err()) && r.Context().Err() != nil {
			return err
		}
		return errBadRequest("%v", err)
	}
	a.Log.Info("audit: hunt", "by", p.Name, "tenant", tenant, "rows", len(res.Rows))
	rows := res.Rows
	if rows == nil {
		rows = [][]any{}
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/x-ndjson") {
		return writeJSON(w, http.StatusOK, map[string]any{"columns": res.Columns, "types": res.Types, "rows": rows,
			"truncated": res.Truncated, "elapsedMs": res.Elapsed.Milliseconds()})
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	if err := enc.Encode(map[string]any{"columns": res.Columns, "types": res.Types}); err != nil {
		return nil // the client went away
	}
	fl, _ := w.(http.Flusher)
	for i, row := range rows {
		if err := enc.Encode(row); err != nil {
			return nil
		}
		if fl != nil && i%1000 == 999 {
			fl.Flush()
		}
	}
	_ = enc.Encode(map[string]any{"truncated": res.Truncated, "elapsedMs": res.Elapsed.Milliseconds()})
	return nil
}
