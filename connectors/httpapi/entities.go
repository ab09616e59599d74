package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stitch-xdr/stitch/internal/auth"
	"github.com/stitch-xdr/stitch/internal/query"
	"github.com/stitch-xdr/stitch/internal/view"
)

func (a *API) searchEntities(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	q := r.URL.Query()
	text := q.Get("q")
	if strings.TrimSpace(text) == "" || len(text) > maxQuery || !utf8.ValidString(text) {
		return errBadRequest("q must be 1 to %d bytes of UTF-8", maxQuery)
	}
	typ := q.Get("type")
	if typ != "" && !slices.Contains(view.EntityTypes, typ) {
		return errBadRequest("type %q is not one of %s", truncate(typ, 20), strings.Join(view.EntityTypes, ", "))
	}
	pg, err := page(r, 10)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a.View.Search(p, text, typ, pg.Limit))
}

// entityPage is GET /api/entities/{type}/{id}.
type entityPage struct {
	*view.EntityPage
	Telemetry      *telemetry `json:"telemetry"`
	TelemetryError string     `json:"telemetryError"`
}

type telemetry struct {
	Table     string   `json:"table"`
	Columns   []string `json:"columns"`
	Types     []string `json:"types"`
	Rows      [][]any  `json:"rows"`
	Truncated bool     `json:"truncated"`
}

func (a *API) getEntity(w http.ResponseWriter, r *http.Request, p *auth.Principal) error {
	typ, id := r.PathValue("type"), r.PathValue("id")
	if !slices.Contains(view.EntityTypes, typ) {
		return errBadRequest("entity type %q is not one of %s", truncate(typ, 20), strings.Join(view.EntityTypes, ", "))
	}
	if id == "" || len(id) > 2048 || !utf8.ValidString(id) || strings.ContainsAny(id, "\x00\n\r") {
		return errBadRequest("entity id must be 1 to 2048 bytes of UTF-8 on one line")
	}
	page, found := a.View.Entity(p, view.Ref{Type: typ, ID: id})
	out := entityPage{EntityPage: page}
	// Telemetry of the tenants the entity was seen in, or of the token's
	// tenants when it has few: an IP no incident names still has its rows.
	tenants := page.Tenants
	if !found && !p.AllTenants() && len(p.Tenants) <= 3 {
		tenants = p.Tenants
	}
	if !found && len(tenants) == 0 {
		return errNotFound("nothing in your tenants names %s %s", typ, id)
	}
	if p.DeviceScoped() {
		out.TelemetryError = "telemetry is scoped by tenant only: a token limited to device groups sees none"
	} else if t, err := a.telemetry(r.Context(), page.Entity, tenants); err != nil {
		out.TelemetryError = err.Error()
	} else {
		out.Telemetry = t
	}
	if !found && (out.Telemetry == nil || len(out.Telemetry.Rows) == 0) {
		return errNotFound("nothing in your tenants names %s %s", typ, id)
	}
	return writeJSON(w, http.StatusOK, out)
}

// telemetrySource is where an entity type's recent rows are: a table and
// the condition on its row (the entity's id as a SQL literal).
var telemetrySource = map[string]struct {
	table string
	where func(lit string) string
}{
	// Device ids in impactedAssets are the first label, lower-cased.
	"device": {"DeviceProcessEvents", func(l string) string {
		return "lower(DeviceName) = " + l + " OR lower(DeviceName) LIKE " + l + " || '.%'"
	}},
	"user":    {"IdentityLogonEvents", func(l string) string { return "lower(AccountUpn) = " + l }},
	"mailbox": {"EmailEvents", func(l string) string { return "lower(RecipientEmailAddress) = " + l }},
	"file":    {"DeviceFileEvents", func(l string) string { return "lower(SHA256) = " + l + " OR lower(SHA1) = " + l }},
	"ip":      {"DeviceNetworkEvents", func(l string) string { return "RemoteIP = " + l }},
	"url":     {"UrlClickEvents", func(l string) string { return "lower(Url) = " + l }},
	"app":     {"CloudAppEvents", func(l string) string { return "CAST(ApplicationId AS VARCHAR) = " + l }},
}

// telemetryRows is how many recent rows an entity page shows.
const telemetryRows = 50

// telemetry is the latest rows that name an entity, in each of tenants
// (query.TenantID scopes every table to one).
func (a *API) telemetry(ctx context.Context, r view.Ref, tenants []string) (*telemetry, error) {
	src, ok := telemetrySource[r.Type]
	if !ok || a.HuntingDir == "" || len(tenants) == 0 {
		return nil, nil
	}
	lit := "'" + strings.ReplaceAll(strings.ToLower(r.ID), "'", "''") + "'"
	stmt := fmt.Sprintf("SELECT * FROM %s WHERE %s ORDER BY Timestamp DESC", src.table, src.where(lit))
	out := &telemetry{Table: src.table, Rows: [][]any{}}
	for _, t := range tenants[:min(len(tenants), 3)] {
		res, err := query.Run(ctx, a.HuntingDir, stmt, query.TenantID(t), query.Limit(telemetryRows), query.Timeout(10*time.Second),
			query.Since(time.Now().Add(-30*24*time.Hour)))
		if err != nil {
			return nil, fmt.Errorf("telemetry from %s: %w", src.table, err)
		}
		if out.Columns == nil || len(res.Rows) > 0 && len(out.Rows) == 0 {
			out.Columns, out.Types = res.Columns, res.Types
		}
		if slices.Equal(out.Columns, res.Columns) {
			out.Rows = append(out.Rows, res.Rows...)
		}
		out.Truncated = out.Truncated || res.Truncated
	}
	return out, nil
}
