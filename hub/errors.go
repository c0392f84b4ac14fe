package hub

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Errors a caller may test for with errors.Is.
var (
	ErrGated            = errors.New("gated repository")
	ErrRepoNotFound     = errors.New("repository not found")
	ErrRevisionNotFound = errors.New("revision not found")
	ErrEntryNotFound    = errors.New("file not found")
	ErrUnauthorized     = errors.New("token refused")
	ErrChecksum         = errors.New("checksum mismatch")
	ErrNotCached        = errors.New("not in the cache")
)

// hubError is a refusal from the Hub, said in terms of what the user asked for.
type hubError struct {
	kind error
	msg  string
}

func (e *hubError) Error() string { return e.msg }
func (e *hubError) Unwrap() error { return e.kind }

const tokenHelp = "create a read token at https://huggingface.co/settings/tokens and set HF_TOKEN=hf_... " +
	"(or run `hf auth login`, which saves it in $HF_HOME/token, ~/.cache/huggingface/token by default)"

// responseError turns a Hub error response into a message naming the repository, revision or
// file, from the X-Error-Code header the Hub sets (a 404 alone cannot tell them apart).
func (c *Client) responseError(resp *http.Response, ref Ref, file string) error {
	code := resp.Header.Get("X-Error-Code")
	msg := resp.Header.Get("X-Error-Message")
	if msg == "" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		msg = strings.TrimSpace(string(body))
	}
	page := c.s.Endpoint + "/" + ref.Repo
	switch {
	case code == "GatedRepo" && c.s.Token == "":
		return &hubError{ErrGated, fmt.Sprintf("%s is a gated repository and no token is set: accept its conditions at %s while logged in, then %s", ref.Repo, page, tokenHelp)}
	case code == "GatedRepo":
		return &hubError{ErrGated, fmt.Sprintf("%s is a gated repository and the token from %s has no access to it: request access at %s (the Hub said: %s)", ref.Repo, c.s.TokenSource, page, msg)}
	case code == "RepoNotFound" && c.s.Token == "":
		return &hubError{ErrRepoNotFound, fmt.Sprintf("repository %s not found at %s; if it is private, %s", ref.Repo, c.s.Endpoint, tokenHelp)}
	case code == "RepoNotFound":
		return &hubError{ErrRepoNotFound, fmt.Sprintf("repository %s not found at %s, or the token from %s cannot read it", ref.Repo, c.s.Endpoint, c.s.TokenSource)}
	case code == "RevisionNotFound":
		return &hubError{ErrRevisionNotFound, fmt.Sprintf("revision %q not found in %s (want a branch, tag or commit hash of %s)", ref.Revision, ref.Repo, page)}
	case code == "EntryNotFound":
		return &hubError{ErrEntryNotFound, fmt.Sprintf("file %s not found in %s at revision %s", file, ref.Repo, ref.Revision)}
	case resp.StatusCode == http.StatusUnauthorized && c.s.Token != "":
		return &hubError{ErrUnauthorized, fmt.Sprintf("the Hub at %s refused the token from %s (invalid or expired?): %s; %s", c.s.Endpoint, c.s.TokenSource, msg, tokenHelp)}
	case resp.StatusCode == http.StatusUnauthorized:
		return &hubError{ErrRepoNotFound, fmt.Sprintf("%s at %s needs a token (private or gated): %s", ref.Repo, c.s.Endpoint, tokenHelp)}
	}
	what := ref.String()
	if file != "" {
		what = file + " of " + what
	}
	return fmt.Errorf("%s: the Hub at %s answered %s: %s", what, c.s.Endpoint, resp.Status, msg)
}
