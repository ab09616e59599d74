package httpapi

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// openapi.json documents exactly the routes the server registers: every
// route is a path and method of the document, and every path and method
// of the document is a route, with the same path parameters.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = true
			var o struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil || len(o.Responses) == 0 {
				t.Errorf("%s %s: no responses", method, path)
			}
		}
		// Every {param} of the path is declared.
		params := map[string]bool{}
		for _, raw := range []json.RawMessage{ops["parameters"]} {
			var ps []struct{ Name, In string }
			_ = json.Unmarshal(raw, &ps)
			for _, p := range ps {
				if p.In == "path" {
					params[p.Name] = true
				}
			}
		}
		for _, m := range regexp.MustCompile(`\{(\w+)\}`).FindAllStringSubmatch(path, -1) {
			if !params[m[1]] {
				t.Errorf("%s: path parameter %s is not declared", path, m[1])
			}
		}
	}
	registered := map[string]bool{}
	for _, rt := range routes {
		registered[rt.method+" "+strings.ReplaceAll(rt.path, "...}", "}")] = true
	}
	for r := range registered {
		if !documented[r] {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for d := range documented {
		if !registered[d] {
			t.Errorf("openapi.json documents %s, which no route serves", d)
		}
	}
	if t.Failed() {
		keys := func(m map[string]bool) []string {
			var k []string
			for s := range m {
				k = append(k, s)
			}
			slices.Sort(k)
			return k
		}
		t.Logf("routes: %v\ndocumented: %v", keys(registered), keys(documented))
	}
}
