// Package hubtest is a Hugging Face Hub look-alike on loopback for tests: the model info API,
// the resolve endpoint with its headers (X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size),
// LFS files redirected to a separate "CDN" server, HTTP Range, tokens, gated and private
// repositories, the Hub's X-Error-Code answers, and faults (dropped connections, corrupted
// bytes) to test a client against. It serves the repository's fixture checkpoints; it never
// listens beyond 127.0.0.1.
package hubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// File is one file of a repository.
type File struct {
	Path string
	Data []byte
	LFS  bool // stored in Git LFS: resolved by a redirect to the CDN, etag is its sha256

	once         sync.Once
	sha256, sha1 string
}

// sums hashes the file once (the fixtures are read-only once served).
func (f *File) sums() (sha256, gitSHA1 string) {
	f.once.Do(func() { f.sha256, f.sha1 = SHA256(f.Data), GitSHA1(f.Data) })
	return f.sha256, f.sha1
}

// GitSHA1 is git's blob id of data: the ETag the Hub gives a file kept in git itself.
func GitSHA1(data []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256 is the hex sha256 of data: the LFS oid.
func SHA256(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// pointer is the LFS pointer file git holds in place of the content.
func (f *File) pointer() []byte {
	return fmt.Appendf(nil, "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", f.oid(), len(f.Data))
}

func (f *File) oid() string     { s, _ := f.sums(); return s }
func (f *File) gitSHA1() string { _, s := f.sums(); return s }

// Repo is one model repository with a single commit that every ref in Refs points to.
type Repo struct {
	ID      string // ORG/NAME
	Commit  string // 40 hex digits
	Refs    []string
	Files   map[string]*File
	Gated   bool // metadata public, files need a token in Access
	Private bool // everything needs a token in Access
	Access  []string
}

// RepoFromDir reads every regular file of dir into a repository; *.safetensors are LFS
// files, as the Hub's default .gitattributes makes them.
func RepoFromDir(id, dir string) (*Repo, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	r := &Repo{ID: id, Refs: []string{"main"}, Files: map[string]*File{}}
	h := sha1.New()
	h.Write([]byte(id))
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		r.Files[e.Name()] = &File{Path: e.Name(), Data: data, LFS: strings.HasSuffix(e.Name(), ".safetensors")}
		h.Write([]byte(r.Files[e.Name()].gitSHA1()))
	}
	r.Commit = hex.EncodeToString(h.Sum(nil))
	return r, nil
}

// Stats counts what the servers sent.
type Stats struct {
	mu         sync.Mutex
	body       map[string]int64 // content bytes sent per file path
	requests   atomic.Int64
	cdnAuthHdr atomic.Int64 // CDN requests that carried an Authorization header
}

// BodyBytes is how many content bytes of path were sent, in all responses.
func (s *Stats) BodyBytes(path string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.body[path]
}

// TotalBodyBytes is all content bytes sent.
func (s *Stats) TotalBodyBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, v := range s.body {
		n += v
	}
	return n
}

// Requests counts every request either server received.
func (s *Stats) Requests() int64 { return s.requests.Load() }

// CDNAuthHeaders counts CDN requests that carried the user's token (it must not leak there).
func (s *Stats) CDNAuthHeaders() int64 { return s.cdnAuthHdr.Load() }

func (s *Stats) add(path string, n int64) {
	s.mu.Lock()
	s.body[path] += n
	s.mu.Unlock()
}

// Server is the Hub (API and resolve) plus its CDN, two loopback listeners.
type Server struct {
	Hub, CDN *httptest.Server
	Stats    *Stats

	mu      sync.Mutex
	repos   map[string]*Repo
	renamed map[string]string // old ORG/NAME -> new, answered with a relative redirect
	tokens  map[string]bool   // valid tokens
	faults  map[string]*fault
}

type fault struct {
	dropAt       int64 // close the connection before sending this offset of the file (-1: never)
	dropOnce     bool  // ... in the next response only
	corruptTimes int   // flip one byte in this many more responses
	failStatus   int   // answer this status instead ...
	failTimes    int   // ... this many more times
	ignoreRange  bool  // answer a Range request with the whole file (200), as some mirrors do
}

// New starts a Hub with the given repositories and valid tokens.
func New(repos []*Repo, tokens ...string) *Server {
	s := &Server{Stats: &Stats{body: map[string]int64{}}, repos: map[string]*Repo{}, renamed: map[string]string{}, tokens: map[string]bool{}, faults: map[string]*fault{}}
	for _, r := range repos {
		s.repos[r.ID] = r
	}
	for _, t := range tokens {
		s.tokens[t] = true
	}
	s.CDN = httptest.NewServer(http.HandlerFunc(s.serveCDN))
	s.Hub = httptest.NewServer(http.HandlerFunc(s.serveHub))
	return s
}

// URL is the endpoint to give the client (HF_ENDPOINT).
func (s *Server) URL() string { return s.Hub.URL }

// Close stops both listeners.
func (s *Server) Close() {
	s.Hub.Close()
	s.CDN.Close()
}

// Rename makes old answer with a relative redirect to new, as the Hub does for a repository
// that was renamed or moved.
func (s *Server) Rename(old, new string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renamed[old] = new
}

// DropAt makes every response for path end (connection closed) before byte offset off of the
// file; off < 0 removes the fault.
func (s *Server) DropAt(path string, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultFor(path).dropAt = off
}

// DropOnceAt makes the next response for path that would send byte offset off end there, as
// a connection that breaks once and then works.
func (s *Server) DropOnceAt(path string, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faultFor(path)
	f.dropAt, f.dropOnce = off, true
}

// Fail answers the next n requests for path's content with status (a 5xx: an outage).
func (s *Server) Fail(path string, status, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faultFor(path)
	f.failStatus, f.failTimes = status, n
}

// takeFailure consumes one forced failure for path, returning its status (0: none).
func (s *Server) takeFailure(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults[path]
	if f == nil || f.failTimes == 0 {
		return 0
	}
	f.failTimes--
	return f.failStatus
}

// IgnoreRange makes the server answer Range requests for path with the whole file (200), as
// some mirrors and proxies do; on false it honours them again.
func (s *Server) IgnoreRange(path string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultFor(path).ignoreRange = on
}

func (s *Server) ignoresRange(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults[path]
	return f != nil && f.ignoreRange
}

// Corrupt flips one byte in the next n responses for path.
func (s *Server) Corrupt(path string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultFor(path).corruptTimes = n
}

func (s *Server) faultFor(path string) *fault {
	f := s.faults[path]
	if f == nil {
		f = &fault{dropAt: -1}
		s.faults[path] = f
	}
	return f
}

// takeFault returns the faults for one response, consuming a corruption.
func (s *Server) takeFault(path string) (dropAt int64, corrupt bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults[path]
	if f == nil {
		return -1, false
	}
	if f.corruptTimes > 0 {
		f.corruptTimes--
		corrupt = true
	}
	return f.dropAt, corrupt
}

// dropped records that a response for path was cut at its drop offset: a DropOnceAt fault is
// spent.
func (s *Server) dropped(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.faults[path]; f != nil && f.dropOnce {
		f.dropAt, f.dropOnce = -1, false
	}
}

func hubError(w http.ResponseWriter, status int, code, msg string) {
	if code != "" {
		w.Header().Set("X-Error-Code", code)
	}
	w.Header().Set("X-Error-Message", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, "{%q:%q}\n", "error", msg)
}

// auth answers whether the request may read r's files (files=true) or metadata, writing the
// Hub's refusal when not. As the Hub does, a private repository is "not found" to anyone
// without access, so its existence does not leak.
func (s *Server) auth(w http.ResponseWriter, req *http.Request, r *Repo, files bool) bool {
	tok, hasTok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if hasTok && !s.tokens[tok] {
		hubError(w, http.StatusUnauthorized, "", "Invalid credentials in Authorization header")
		return false
	}
	allowed := hasTok && contains(r.Access, tok)
	switch {
	case r.Private && !allowed:
		status := http.StatusNotFound
		if !hasTok {
			status = http.StatusUnauthorized
		}
		hubError(w, status, "RepoNotFound", "Repository not found")
		return false
	case r.Gated && files && !hasTok:
		hubError(w, http.StatusUnauthorized, "GatedRepo", fmt.Sprintf("Access to model %s is restricted. You must have access to it and be authenticated to access it. Please log in.", r.ID))
		return false
	case r.Gated && files && !allowed:
		hubError(w, http.StatusForbidden, "GatedRepo", fmt.Sprintf("Access to model %s is restricted and you are not in the authorized list. Visit %s/%s to ask for access.", r.ID, "https://huggingface.co", r.ID))
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// lookup finds the repository and revision, writing the Hub's 404 when either is missing.
func (s *Server) lookup(w http.ResponseWriter, req *http.Request, id, rev string, files bool) *Repo {
	s.mu.Lock()
	r := s.repos[id]
	s.mu.Unlock()
	if r == nil {
		status := http.StatusNotFound
		if req.Header.Get("Authorization") == "" {
			status = http.StatusUnauthorized
		}
		hubError(w, status, "RepoNotFound", "Repository not found")
		return nil
	}
	if !s.auth(w, req, r, files) {
		return nil
	}
	if rev != r.Commit && !contains(r.Refs, rev) {
		hubError(w, http.StatusNotFound, "RevisionNotFound", fmt.Sprintf("Invalid rev id: %s", rev))
		return nil
	}
	return r
}

// segments splits the escaped path and unescapes each part, so a revision like refs%2Fpr%2F1
// stays one segment.
func segments(req *http.Request) []string {
	parts := strings.Split(strings.Trim(req.URL.EscapedPath(), "/"), "/")
	for i, p := range parts {
		if u, err := unescape(p); err == nil {
			parts[i] = u
		}
	}
	return parts
}

func (s *Server) serveHub(w http.ResponseWriter, req *http.Request) {
	s.Stats.requests.Add(1)
	p := segments(req)
	if s.redirectRenamed(w, req, p) {
		return
	}
	switch {
	case len(p) == 6 && p[0] == "api" && p[1] == "models" && p[4] == "revision":
		s.serveInfo(w, req, p[2]+"/"+p[3], p[5])
	case len(p) >= 5 && p[2] == "resolve":
		s.serveResolve(w, req, p[0]+"/"+p[1], p[3], strings.Join(p[4:], "/"))
	default:
		http.NotFound(w, req)
	}
}

// redirectRenamed answers a request for a renamed repository with a 307 to the same path
// under the new name (a relative Location, as the Hub sends).
func (s *Server) redirectRenamed(w http.ResponseWriter, req *http.Request, p []string) bool {
	i := 0
	if len(p) > 2 && p[0] == "api" {
		i = 2
	}
	if len(p) < i+2 {
		return false
	}
	s.mu.Lock()
	to, ok := s.renamed[p[i]+"/"+p[i+1]]
	s.mu.Unlock()
	if !ok {
		return false
	}
	old := "/" + strings.Join(p[:i], "/")
	if i == 0 {
		old = ""
	}
	path := strings.Replace(req.URL.EscapedPath(), old+"/"+p[i]+"/"+p[i+1]+"/", old+"/"+to+"/", 1)
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	w.Header().Set("Location", path)
	w.WriteHeader(http.StatusTemporaryRedirect)
	return true
}

type sibling struct {
	RFilename string `json:"rfilename"`
	Size      int64  `json:"size"`
	BlobID    string `json:"blobId"`
	LFS       *struct {
		SHA256      string `json:"sha256"`
		Size        int64  `json:"size"`
		PointerSize int    `json:"pointerSize"`
	} `json:"lfs,omitempty"`
}

// serveInfo answers /api/models/ORG/NAME/revision/REV (with ?blobs=true the sizes, blob ids
// and LFS oids, as the Hub does).
func (s *Server) serveInfo(w http.ResponseWriter, req *http.Request, id, rev string) {
	r := s.lookup(w, req, id, rev, false)
	if r == nil {
		return
	}
	blobs := req.URL.Query().Get("blobs") == "true"
	names := make([]string, 0, len(r.Files))
	for n := range r.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	sibs := make([]sibling, 0, len(names))
	for _, n := range names {
		f := r.Files[n]
		sb := sibling{RFilename: n}
		if blobs {
			sb.Size = int64(len(f.Data))
			if f.LFS {
				ptr := f.pointer()
				sb.BlobID = GitSHA1(ptr)
				sb.LFS = &struct {
					SHA256      string `json:"sha256"`
					Size        int64  `json:"size"`
					PointerSize int    `json:"pointerSize"`
				}{f.oid(), int64(len(f.Data)), len(ptr)}
			} else {
				sb.BlobID = f.gitSHA1()
			}
		}
		sibs = append(sibs, sb)
	}
	gated := any(false)
	if r.Gated {
		gated = "manual"
	}
	writeJSON(w, map[string]any{"id": r.ID, "modelId": r.ID, "sha": r.Commit, "private": r.Private, "gated": gated, "siblings": sibs})
}

// serveResolve answers /ORG/NAME/resolve/REV/PATH: git files directly, LFS files by a 302 to
// the CDN carrying X-Linked-Etag and X-Linked-Size.
func (s *Server) serveResolve(w http.ResponseWriter, req *http.Request, id, rev, path string) {
	r := s.lookup(w, req, id, rev, true)
	if r == nil {
		return
	}
	f := r.Files[path]
	if f == nil {
		hubError(w, http.StatusNotFound, "EntryNotFound", fmt.Sprintf("Entry not found: %s", path))
		return
	}
	h := w.Header()
	h.Set("X-Repo-Commit", r.Commit)
	h.Set("Accept-Ranges", "bytes")
	if f.LFS {
		sum := f.oid()
		h.Set("ETag", `"`+GitSHA1(f.pointer())+`"`)
		h.Set("X-Linked-Etag", `"`+sum+`"`)
		h.Set("X-Linked-Size", fmt.Sprint(len(f.Data)))
		h.Set("Location", fmt.Sprintf("%s/repos/%s/%s?X-Amz-Signature=test&file=%s", s.CDN.URL, strings.ReplaceAll(id, "/", "--"), sum, path))
		w.WriteHeader(http.StatusFound)
		return
	}
	h.Set("ETag", `"`+f.gitSHA1()+`"`)
	s.serveContent(w, req, f)
}

// serveCDN answers the signed URLs of LFS files; it neither needs nor wants a token.
func (s *Server) serveCDN(w http.ResponseWriter, req *http.Request) {
	s.Stats.requests.Add(1)
	if req.Header.Get("Authorization") != "" {
		s.Stats.cdnAuthHdr.Add(1)
	}
	p := segments(req)
	if len(p) != 3 || p[0] != "repos" {
		http.NotFound(w, req)
		return
	}
	s.mu.Lock()
	r := s.repos[strings.Replace(p[1], "--", "/", 1)]
	s.mu.Unlock()
	if r == nil {
		http.NotFound(w, req)
		return
	}
	f := r.Files[req.URL.Query().Get("file")]
	if f == nil || !f.LFS || f.oid() != p[2] {
		http.NotFound(w, req)
		return
	}
	w.Header().Set("ETag", `"`+p[2]+`"`)
	s.serveContent(w, req, f)
}

// serveContent serves f with Range support, counting bytes and applying faults.
func (s *Server) serveContent(w http.ResponseWriter, req *http.Request, f *File) {
	if status := s.takeFailure(f.Path); status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	data := f.Data
	dropAt, corrupt := s.takeFault(f.Path)
	if corrupt {
		data = append([]byte(nil), data...)
		data[len(data)/2] ^= 0x40
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	cw := &countingWriter{ResponseWriter: w, stats: s.Stats, path: f.Path, dropAt: dropAt, dropped: s.dropped}
	if s.ignoresRange(f.Path) {
		req.Header.Del("Range")
	}
	if rg := req.Header.Get("Range"); rg != "" {
		var start int64
		if _, err := fmt.Sscanf(rg, "bytes=%d-", &start); err == nil {
			cw.off = start
		}
	}
	http.ServeContent(cw, req, "", timeZero, strings.NewReader(string(data)))
}

// countingWriter counts content bytes and closes the connection at dropAt.
type countingWriter struct {
	http.ResponseWriter
	stats   *Stats
	path    string
	off     int64 // file offset of the next byte written
	dropAt  int64
	dropped func(path string)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.dropAt >= 0 && c.off+int64(len(p)) > c.dropAt {
		n := max(c.dropAt-c.off, 0)
		c.ResponseWriter.Write(p[:n])
		c.stats.add(c.path, n)
		if fl, ok := c.ResponseWriter.(http.Flusher); ok {
			fl.Flush()
		}
		c.dropped(c.path)
		panic(http.ErrAbortHandler) // the client sees the connection drop mid-body
	}
	n, err := c.ResponseWriter.Write(p)
	c.off += int64(n)
	c.stats.add(c.path, int64(n))
	return n, err
}

var timeZero time.Time // no Last-Modified: the Hub's cache keys are etags

func unescape(s string) (string, error) { return url.PathUnescape(s) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
