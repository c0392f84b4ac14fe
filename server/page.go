package server

import (
	"bytes"
	"net/http"
	"time"

	"github.com/fmoe/fmoe/server/web"
)

// page serves the chat page (GET /).
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	serveFile(w, r, web.Lookup(web.Index))
}

// asset serves the page's scripts and styles (GET /ui/FILE).
func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	f := web.Lookup(name)
	if f == nil || name == web.Index {
		writeError(w, http.StatusNotFound, "invalid_request_error", "not_found", "no file /ui/"+name)
		return
	}
	serveFile(w, r, f)
}

func serveFile(w http.ResponseWriter, r *http.Request, f *web.File) {
	h := w.Header()
	h.Set("Content-Security-Policy", web.CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Type", f.ContentType)
	// Revalidated every time: a new binary brings a new page.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.ETag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.Body))
}
