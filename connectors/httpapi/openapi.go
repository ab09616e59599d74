package httpapi

import (
	_ "embed"
	"net/http"

	"github.com/stitch-xdr/stitch/internal/auth"
)

// openAPIDoc describes every route of the API; TestOpenAPIMatchesRoutes
// keeps the two in step.
//
//go:embed openapi.json
var openAPIDoc []byte

func (a *API) openAPI(w http.ResponseWriter, _ *http.Request, _ *auth.Principal) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(openAPIDoc)
	return err
}
