package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Client talks to one Hub endpoint.
type Client struct {
	s    Settings
	http *http.Client
	// stall is how long a download may receive nothing before it is abandoned as dropped.
	stall time.Duration
}

// NewClient returns a client for s. Redirects are followed by hand: the token goes only to
// the endpoint's own host, never to the CDN a redirect names.
func NewClient(s Settings) *Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		ResponseHeaderTimeout: time.Minute,
		TLSHandshakeTimeout:   30 * time.Second,
		MaxIdleConnsPerHost:   16,
	}
	return &Client{s: s, stall: time.Minute, http: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// FileInfo is one file of a repository as the model info API lists it.
type FileInfo struct {
	Path string `json:"rfilename"`
	Size int64  `json:"size"`
	// BlobID is git's id of the file (of its LFS pointer for an LFS file).
	BlobID string `json:"blobId"`
	LFS    *struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"lfs"`
}

// Etag is the name of the file's blob in the cache, the Hub's ETag for it: the sha256 for
// an LFS file, git's blob id for the others.
func (f *FileInfo) Etag() string {
	if f.LFS != nil {
		return f.LFS.SHA256
	}
	return f.BlobID
}

// idLen is the length in hex digits of a file's id: an LFS file's sha256,
// git's sha1 blob id otherwise.
func idLen(lfs bool) int {
	if lfs {
		return 64
	}
	return 40
}

// hexID reports whether id has the form of a file's id (idLen lowercase
// hex digits), the only form its hash can match.
func hexID(id string, lfs bool) bool {
	if len(id) != idLen(lfs) {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// RepoInfo is what the model info API says of a repository at a revision.
type RepoInfo struct {
	Commit string     `json:"sha"`
	Files  []FileInfo `json:"siblings"`
}

// Info fetches the file list and the commit the revision points to.
func (c *Client) Info(ctx context.Context, ref Ref) (*RepoInfo, error) {
	u := fmt.Sprintf("%s/api/models/%s/revision/%s?blobs=true", c.s.Endpoint, ref.Repo, url.PathEscape(ref.Revision))
	resp, _, err := c.followRedirects(ctx, u, nil)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, c.responseError(resp, ref, "")
	}
	var info RepoInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&info); err != nil {
		return nil, fmt.Errorf("listing %s: the Hub's answer is not the model info JSON: %w", ref, err)
	}
	if !IsCommit(info.Commit) {
		return nil, fmt.Errorf("listing %s: the Hub gave no commit hash (sha %q)", ref, info.Commit)
	}
	for i := range info.Files {
		f := &info.Files[i]
		if f.Etag() == "" || f.Size < 0 {
			return nil, fmt.Errorf("listing %s: no blob id or size for %s (is the endpoint a Hub that supports ?blobs=true?)", ref, f.Path)
		}
		if !hexID(f.Etag(), f.LFS != nil) {
			// The id names the file's blob (and lock, and partial) on disk: a listing's
			// "../x" would write outside the cache.
			return nil, fmt.Errorf("listing %s: %s's %s %q is not %d lowercase hex digits", ref, f.Path, hashName(f), f.Etag(), idLen(f.LFS != nil))
		}
		if f.LFS != nil && f.LFS.Size != f.Size {
			return nil, fmt.Errorf("listing %s: %s has size %d but LFS size %d", ref, f.Path, f.Size, f.LFS.Size)
		}
	}
	return &info, nil
}

// get sends a GET (with the token when the URL is on the endpoint's host) and returns the
// response without following redirects.
func (c *Client) get(ctx context.Context, u string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "fmoe-pack (huggingface_hub-compatible)")
	// Hashes and Range offsets are over the stored bytes: no transparent compression.
	req.Header.Set("Accept-Encoding", "identity")
	if c.s.Token != "" && sameHost(u, c.s.Endpoint) {
		req.Header.Set("Authorization", "Bearer "+c.s.Token)
	}
	return c.http.Do(req)
}

func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme == ub.Scheme && ua.Host == ub.Host
}

// followRedirects GETs u and follows up to 10 redirects: relative ones on the Hub (a renamed
// repository) and the absolute one to the CDN an LFS file gets. It returns the final response
// and the headers of the Hub's own answer (the first one that is not a same-host redirect),
// which carry X-Repo-Commit and the X-Linked-* values.
func (c *Client) followRedirects(ctx context.Context, u string, hdr http.Header) (*http.Response, http.Header, error) {
	var hubHeaders http.Header
	for range 10 {
		resp, err := c.get(ctx, u, hdr)
		if err != nil {
			return nil, nil, err
		}
		redirect := resp.StatusCode >= 300 && resp.StatusCode <= 399 && resp.StatusCode != http.StatusNotModified
		var next *url.URL
		if redirect {
			loc := resp.Header.Get("Location")
			next, err = resp.Request.URL.Parse(loc)
			if loc == "" || err != nil {
				resp.Body.Close()
				return nil, nil, fmt.Errorf("%s: redirect %s without a usable Location (%q)", u, resp.Status, loc)
			}
		}
		if hubHeaders == nil && (!redirect || next.Host != resp.Request.URL.Host) {
			hubHeaders = resp.Header
		}
		if !redirect {
			return resp, hubHeaders, nil
		}
		resp.Body.Close()
		u = next.String()
	}
	return nil, nil, fmt.Errorf("%s: more than 10 redirects", u)
}

// safeInfo is Info for a download: a listing naming a file outside the
// repository (an absolute path, "..") is refused before anything is written.
func (c *Client) safeInfo(ctx context.Context, ref Ref) (*RepoInfo, error) {
	info, err := c.Info(ctx, ref)
	if err != nil {
		return nil, err
	}
	for _, f := range info.Files {
		if f.Path != cleanRel(f.Path) {
			return nil, fmt.Errorf("%s lists a file %q outside the repository", ref, f.Path)
		}
	}
	return info, nil
}
