package hub

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// target is where verified files go: the shared cache, or a plain folder (--dir).
type target interface {
	// done says whether f is already in place and complete (a cached blob is trusted: it was
	// verified before it was given its name).
	done(f *FileInfo) (bool, error)
	// partial is where f is downloaded to until it is verified; it survives an interruption.
	partial(f *FileInfo) string
	// place gives the verified partial file its final name.
	place(f *FileInfo, tmp string) error
	lockPath(f *FileInfo) string
	// path is where f can be read once done.
	path(name string) string
	// dir is the folder holding the repository's files.
	dir() string
}

// RepoFolderName is huggingface_hub's folder name for a model repository in the cache.
func RepoFolderName(repo string) string { return "models--" + strings.ReplaceAll(repo, "/", "--") }

// cacheTarget is the huggingface_hub cache: blobs/ETAG holds the bytes, snapshots/COMMIT/PATH
// is a relative symlink to the blob, refs/REVISION holds the commit a branch or tag was at.
type cacheTarget struct {
	cacheDir, repo, root, commit string
}

func newCacheTarget(cacheDir, repo, commit string) *cacheTarget {
	return &cacheTarget{cacheDir: cacheDir, repo: repo, root: filepath.Join(cacheDir, RepoFolderName(repo)), commit: commit}
}

func (t *cacheTarget) blob(f *FileInfo) string { return filepath.Join(t.root, "blobs", f.Etag()) }
func (t *cacheTarget) dir() string             { return filepath.Join(t.root, "snapshots", t.commit) }
func (t *cacheTarget) path(name string) string {
	return filepath.Join(t.dir(), filepath.FromSlash(name))
}
func (t *cacheTarget) partial(f *FileInfo) string { return t.blob(f) + ".incomplete" }
func (t *cacheTarget) lockPath(f *FileInfo) string {
	return filepath.Join(t.cacheDir, ".locks", RepoFolderName(t.repo), f.Etag()+".lock")
}

func (t *cacheTarget) done(f *FileInfo) (bool, error) {
	st, err := os.Stat(t.blob(f))
	if errors.Is(err, os.ErrNotExist) || (err == nil && st.Size() != f.Size) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, t.link(f)
}

func (t *cacheTarget) place(f *FileInfo, tmp string) error {
	if err := os.Rename(tmp, t.blob(f)); err != nil {
		return err
	}
	return t.link(f)
}

// link points snapshots/COMMIT/PATH at the blob, replacing any other link atomically.
func (t *cacheTarget) link(f *FileInfo) error {
	p := t.path(f.Path)
	rel, err := filepath.Rel(filepath.Dir(p), t.blob(f))
	if err != nil {
		return err
	}
	if cur, err := os.Readlink(p); err == nil && cur == rel {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	os.Remove(tmp)
	if err := os.Symlink(rel, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// writeRef records that revision (a branch or tag) was at commit, as huggingface_hub does,
// so offline runs and other tools resolve the name.
func (t *cacheTarget) writeRef(revision string) error {
	if IsCommit(revision) {
		return nil
	}
	p := filepath.Join(t.root, "refs", filepath.FromSlash(revision))
	return writeFileAtomic(p, []byte(t.commit))
}

func writeFileAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, p)
}

// dirTarget is a plain folder (--dir): real files under their repository names, with
// huggingface_hub's local-dir bookkeeping in DIR/.cache/huggingface/download (partial files,
// and a .metadata per file naming the commit and etag it came from).
type dirTarget struct {
	root, commit string
	hash         func(f *FileInfo, path string) (bool, error) // does the file at path match f?
}

func (t *dirTarget) dir() string { return t.root }
func (t *dirTarget) path(name string) string {
	return filepath.Join(t.root, filepath.FromSlash(name))
}
func (t *dirTarget) meta(name string) string {
	return filepath.Join(t.root, ".cache", "huggingface", "download", filepath.FromSlash(name))
}
func (t *dirTarget) partial(f *FileInfo) string {
	return t.meta(f.Path) + "." + f.Etag() + ".incomplete"
}
func (t *dirTarget) lockPath(f *FileInfo) string { return t.meta(f.Path) + ".lock" }

func (t *dirTarget) done(f *FileInfo) (bool, error) {
	st, err := os.Stat(t.path(f.Path))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Size() == f.Size && readMetaEtag(t.meta(f.Path)+".metadata") == f.Etag() {
		return true, nil
	}
	// A file we did not record: keep it if it is the same bytes, never overwrite it otherwise.
	same := false
	if st.Size() == f.Size {
		if same, err = t.hash(f, t.path(f.Path)); err != nil {
			return false, err
		}
	}
	if !same {
		return false, fmt.Errorf("%s exists and is not the repository's %s (etag %s): move it away or choose another --dir", t.path(f.Path), f.Path, f.Etag())
	}
	return true, t.writeMeta(f)
}

func (t *dirTarget) place(f *FileInfo, tmp string) error {
	if err := os.MkdirAll(filepath.Dir(t.path(f.Path)), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, t.path(f.Path)); err != nil {
		return err
	}
	return t.writeMeta(f)
}

// writeMeta writes huggingface_hub's three-line local-dir metadata: commit, etag, time.
func (t *dirTarget) writeMeta(f *FileInfo) error {
	return writeFileAtomic(t.meta(f.Path)+".metadata", fmt.Appendf(nil, "%s\n%s\n%d\n", t.commit, f.Etag(), time.Now().Unix()))
}

func readMetaEtag(p string) string {
	fh, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	var lines []string
	for sc.Scan() && len(lines) < 2 {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	if len(lines) < 2 {
		return ""
	}
	return lines[1]
}
