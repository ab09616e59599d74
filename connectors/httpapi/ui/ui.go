// Package ui is stitch's single pane: the pages people use (incident queue
// and story, entity pages, action center, hunting console), served from the
// binary. The pages are plain HTML, CSS and JavaScript modules with no build
// step; everything they know comes from the JSON API under /api/ (see
// docs/API.md), with the token the person pasted.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Assets are the embedded files, rooted at the page (index.html, style.css,
// js/...).
func Assets() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return sub
}

// Handler serves the page at / and its assets under /ui/; anything else is
// 404. Mount it on "/" beside the API (not "GET /", which would conflict
// with the API's method-less "/api/" catch-all). The pages route in the URL's
// fragment (#/incidents/ID), so the server has one page to serve.
func Handler() http.Handler {
	assets := Assets()
	files := http.StripPrefix("/ui/", http.FileServerFS(assets))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		secure(w.Header())
		switch {
		case r.URL.Path == "/" || r.URL.Path == "/index.html":
			// Not http.ServeFileFS: it redirects /index.html to /.
			data, err := fs.ReadFile(assets, "index.html")
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(data)
		case strings.HasPrefix(r.URL.Path, "/ui/") && !strings.HasSuffix(r.URL.Path, "/"):
			files.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}

// secure sets the headers every page answer carries: the page runs only
// its own scripts and styles (a hostile incident title stays text), is
// never framed, and its files are revalidated so an upgrade is seen at once.
func secure(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}
