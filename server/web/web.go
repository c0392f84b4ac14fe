// Package web holds the chat page that fmoe-run serve answers at GET /: a
// hand-written page (no framework, no build step) embedded in the binary,
// so it works offline.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"path"
	"slices"
)

//go:embed static
var static embed.FS

// File is one embedded file, ready to serve.
type File struct {
	Body        []byte
	ContentType string
	// ETag is the quoted hash of Body, for conditional requests.
	ETag string
}

// Index is the name of the page itself among Files.
const Index = "index.html"

var files = load()

func load() map[string]*File {
	out := map[string]*File{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		out[path.Base(p)] = &File{Body: b, ContentType: ct, ETag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return out
}

// Lookup returns the embedded file name ("index.html", "app.js", …), or
// nil.
func Lookup(name string) *File { return files[name] }

// CSP is the Content-Security-Policy of the page: its own scripts, styles
// and API only. No inline script or style, no eval, no other origin: even
// markup that slipped into the page could neither run nor send anything.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Names lists the embedded files, sorted.
func Names() []string {
	var out []string
	for n := range files {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
