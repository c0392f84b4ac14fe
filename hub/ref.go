// Package hub downloads model repositories from the Hugging Face Hub (or a mirror) with the
// conventions huggingface_hub users already have: HF_ENDPOINT, HF_TOKEN or the token file,
// HF_HUB_OFFLINE, and the shared cache layout models--ORG--NAME/{blobs,snapshots,refs} under
// HF_HUB_CACHE or HF_HOME, so transformers, mlx-lm and vLLM find what fmoe fetched and the
// other way round. Every file is checked against the Hub's hash (sha256 for LFS files, git's
// blob id for the others) before it is given its final name.
package hub

import (
	"fmt"
	"regexp"
	"strings"
)

// Scheme prefixes a Hub reference on the command line: hf://ORG/NAME[@REVISION].
const Scheme = "hf://"

// Ref names a model repository and a revision (branch, tag or commit hash).
type Ref struct {
	Repo     string // ORG/NAME
	Revision string // "main" when not given
}

func (r Ref) String() string { return r.Repo + "@" + r.Revision }

// IsRef says whether s is meant as a Hub reference rather than a local path.
func IsRef(s string) bool { return strings.HasPrefix(s, Scheme) }

// The Hub's own rule for names: letters, digits, '-', '_', '.'; no "--" or ".." and no
// leading or trailing '-' or '.' (they would make cache folder names ambiguous).
var namePart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$`)

// ParseRef parses hf://ORG/NAME[@REVISION].
func ParseRef(s string) (Ref, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Ref{}, fmt.Errorf("%q is not a Hub reference: want %sORG/NAME[@REVISION]", s, Scheme)
	}
	repo, rev, hasRev := strings.Cut(rest, "@")
	if hasRev && rev == "" {
		return Ref{}, fmt.Errorf("%q: empty revision after '@' (want a branch, tag or commit hash)", s)
	}
	if !hasRev {
		rev = "main"
	}
	parts := strings.Split(repo, "/")
	if len(parts) != 2 {
		return Ref{}, fmt.Errorf("%q: want %sORG/NAME[@REVISION] (one '/' between organisation and name)", s, Scheme)
	}
	for _, p := range parts {
		if !namePart.MatchString(p) || strings.Contains(p, "--") || strings.Contains(p, "..") ||
			strings.HasSuffix(p, "-") || strings.HasSuffix(p, ".") {
			return Ref{}, fmt.Errorf("%q: %q is not a valid Hub name (letters, digits, '-', '_', '.'; no '--' or '..')", s, p)
		}
	}
	if strings.ContainsAny(rev, "\x00\n\r\\") || strings.Contains(rev, "..") || strings.HasPrefix(rev, "/") {
		return Ref{}, fmt.Errorf("%q: revision %q is not a valid git revision", s, rev)
	}
	return Ref{Repo: repo, Revision: rev}, nil
}

// IsCommit says whether rev is a full commit hash (which needs no refs/ entry): 40
// lowercase hex digits, the form of a git blob id too (hexID).
func IsCommit(rev string) bool { return hexID(rev, false) }
