package ui

import (
	"io/fs"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func TestHandlerServesThePageAndItsAssets(t *testing.T) {
	h := Handler()
	for _, c := range []struct {
		method, path string
		code         int
		ctype        string
	}{
		{"GET", "/", 200, "text/html"},
		{"GET", "/index.html", 200, "text/html"},
		{"HEAD", "/", 200, "text/html"},
		{"GET", "/ui/style.css", 200, "text/css"},
		{"GET", "/ui/js/app.js", 200, "text/javascript"},
		{"GET", "/ui/", 404, ""},
		{"GET", "/ui/js/", 404, ""},
		{"GET", "/ui/nope.js", 404, ""},
		{"GET", "/elsewhere", 404, ""},
		{"POST", "/", 405, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.code {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, rec.Code, c.code)
			continue
		}
		if c.ctype != "" && !strings.HasPrefix(rec.Header().Get("Content-Type"), c.ctype) {
			t.Errorf("%s %s: Content-Type %q, want %s", c.method, c.path, rec.Header().Get("Content-Type"), c.ctype)
		}
		if c.code == 200 {
			csp := rec.Header().Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
				t.Errorf("%s %s: Content-Security-Policy %q should allow only the pane's own scripts", c.method, c.path, csp)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s %s: no X-Content-Type-Options: nosniff", c.method, c.path)
			}
		}
	}
}

// Every file the page loads is embedded: a module import or a link to a
// missing file would only show as a blank page in a browser.
func TestEveryReferencedAssetIsEmbedded(t *testing.T) {
	assets := Assets()
	index, err := fs.ReadFile(assets, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="/ui/([^"]+)"`).FindAllStringSubmatch(string(index), -1) {
		if _, err := fs.Stat(assets, m[1]); err != nil {
			t.Errorf("index.html loads /ui/%s: %v", m[1], err)
		}
	}
	imp := regexp.MustCompile(`(?m)^import .* from '(\./[^']+)';`)
	n := 0
	err = fs.WalkDir(assets, "js", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := fs.ReadFile(assets, p)
		if err != nil {
			return err
		}
		if strings.Contains(string(src), "innerHTML") || strings.Contains(string(src), "insertAdjacentHTML") {
			t.Errorf("%s writes HTML: the pane writes text only (dom.js h and fill)", p)
		}
		for _, m := range imp.FindAllStringSubmatch(string(src), -1) {
			n++
			if _, err := fs.Stat(assets, path.Join(path.Dir(p), m[1])); err != nil {
				t.Errorf("%s imports %s: %v", p, m[1], err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("found no module import: the pattern no longer matches the sources")
	}
}
