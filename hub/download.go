package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// fileHasher returns the hash the Hub names f by: sha256 for LFS files, git's blob sha1
// ("blob SIZE\0" + content) for the others.
func fileHasher(f *FileInfo) hash.Hash {
	if f.LFS != nil {
		return sha256.New()
	}
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", f.Size)
	return h
}

func hashName(f *FileInfo) string {
	if f.LFS != nil {
		return "sha256"
	}
	return "git blob id"
}

// hashFile says whether the file at p has f's hash.
func hashFile(f *FileInfo, p string) (bool, error) {
	fh, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer fh.Close()
	h := fileHasher(f)
	if _, err := io.Copy(h, fh); err != nil {
		return false, fmt.Errorf("reading %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)) == f.Etag(), nil
}

// fetchJob is one file to bring into a target, pinned to a commit.
type fetchJob struct {
	ref    Ref // Revision is the commit hash, so every file comes from the same commit
	file   *FileInfo
	target target
	report func(n int64) // bytes received, for the progress bar
	log    io.Writer
}

// maxResumes is how many times one fetch picks up again after the connection drops.
const maxResumes = 3

// fetch downloads the file into its partial name, verifies it and gives it its final name.
// A hash mismatch discards the bytes and fetches once more; a second one is an error.
func (c *Client) fetch(ctx context.Context, j *fetchJob) error {
	unlock, err := lockFile(j.target.lockPath(j.file))
	if err != nil {
		return err
	}
	defer unlock()
	// Another process may have finished it while this one waited for the lock.
	if ok, err := j.target.done(j.file); ok || err != nil {
		return err
	}
	err = c.fetchOnce(ctx, j)
	if errors.Is(err, ErrChecksum) {
		fmt.Fprintf(j.log, "%v; discarded, fetching it once more\n", err)
		err = c.fetchOnce(ctx, j)
		if errors.Is(err, ErrChecksum) {
			return fmt.Errorf("%w (twice; stopping: the source or the connection corrupts it)", err)
		}
	}
	return err
}

func (c *Client) fetchOnce(ctx context.Context, j *fetchJob) error {
	f := j.file
	tmp := j.target.partial(f)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return err
	}
	fh, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		// An empty partial file is no progress to keep: leave nothing behind.
		if st, err := fh.Stat(); err == nil && st.Size() == 0 {
			os.Remove(tmp)
		}
		fh.Close()
	}()
	h, have, err := resumeState(fh, f)
	if err != nil {
		return fmt.Errorf("%s: %w", tmp, err)
	}
	restarted := false
	for attempt := 0; have < f.Size; attempt++ {
		n, err := c.receive(ctx, j, fh, h, have)
		have += n
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var restart *restartError
		if errors.As(err, &restart) {
			if restarted {
				return err
			}
			fmt.Fprintf(j.log, "%s: the server will not resume at byte %d; starting the file over\n", f.Path, have)
			restarted = true
			if h, have, err = restartFile(fh, f); err != nil {
				return err
			}
			continue
		}
		if !isDrop(err) {
			return err
		}
		if attempt >= maxResumes && have == 0 {
			return fmt.Errorf("downloading %s of %s: %d attempts failed (%v)", f.Path, j.ref.Repo, attempt+1, err)
		}
		if attempt >= maxResumes {
			return fmt.Errorf("downloading %s of %s: the transfer broke off at %d of %d bytes, %d times (%v); the %d bytes are kept in %s: run the command again to resume",
				f.Path, j.ref.Repo, have, f.Size, attempt+1, err, have, tmp)
		}
		fmt.Fprintf(j.log, "%s: transfer broke off at %d of %d bytes (%v); resuming\n", f.Path, have, f.Size, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	if err := fh.Sync(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != f.Etag() {
		os.Remove(tmp)
		return fmt.Errorf("%w: %s of %s: %s is %s, the Hub says %s", ErrChecksum, f.Path, j.ref.Repo, hashName(f), got, f.Etag())
	}
	return j.target.place(f, tmp)
}

// resumeState hashes what an earlier run left in the partial file, so only the rest is
// fetched. A partial file longer than the file is stale and starts over.
func resumeState(fh *os.File, f *FileInfo) (hash.Hash, int64, error) {
	st, err := fh.Stat()
	if err != nil {
		return nil, 0, err
	}
	if st.Size() > f.Size {
		return restartFile(fh, f)
	}
	h := fileHasher(f)
	n, err := io.Copy(h, io.NewSectionReader(fh, 0, st.Size()))
	if err != nil {
		return nil, 0, err
	}
	_, err = fh.Seek(n, io.SeekStart)
	return h, n, err
}

func restartFile(fh *os.File, f *FileInfo) (hash.Hash, int64, error) {
	if err := fh.Truncate(0); err != nil {
		return nil, 0, err
	}
	_, err := fh.Seek(0, io.SeekStart)
	return fileHasher(f), 0, err
}

// restartError: the server will not continue from the partial file (it ignored the Range or
// refused it), so the file starts over from byte 0.
type restartError struct{ msg string }

func (e *restartError) Error() string { return e.msg }

// dropError marks a transfer that ended early: the partial file is good up to where it got.
type dropError struct{ err error }

func (e *dropError) Error() string { return e.err.Error() }
func (e *dropError) Unwrap() error { return e.err }

func isDrop(err error) bool {
	var d *dropError
	return errors.As(err, &d)
}

// receive asks for the file from byte have on and appends what arrives to fh and h,
// returning how many bytes it added.
func (c *Client) receive(ctx context.Context, j *fetchJob, fh *os.File, h hash.Hash, have int64) (int64, error) {
	f := j.file
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u := fmt.Sprintf("%s/%s/resolve/%s/%s", c.s.Endpoint, j.ref.Repo, url.PathEscape(j.ref.Revision), escapePath(f.Path))
	hdr := http.Header{}
	if have > 0 {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, first, err := c.followRedirects(ctx, u, hdr)
	if err != nil {
		return 0, &dropError{fmt.Errorf("requesting %s: %w", f.Path, err)}
	}
	defer resp.Body.Close()
	if err := checkHeaders(first, j); err != nil {
		return 0, err
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		var start int64 = -1
		fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start)
		if start != have {
			// Not the bytes asked for: appending them would corrupt the file (huggingface_hub
			// starts over in this case too).
			return 0, &restartError{fmt.Sprintf("%s: asked for bytes from %d, the server sent Content-Range %q twice", f.Path, have, resp.Header.Get("Content-Range"))}
		}
	case resp.StatusCode == http.StatusOK && have > 0:
		return 0, &restartError{fmt.Sprintf("%s: the server ignored the Range request twice", f.Path)}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return 0, &restartError{fmt.Sprintf("%s: the server refused to resume at byte %d twice", f.Path, have)}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		// The Hub and its CDN answer overload and outages this way; worth another try.
		return 0, &dropError{fmt.Errorf("the server answered %s", resp.Status)}
	case resp.StatusCode != http.StatusOK:
		return 0, c.responseError(resp, j.ref, f.Path)
	}
	// A connection that delivers nothing for c.stall is as good as dropped.
	timer := time.AfterFunc(c.stall, func() { cancel(fmt.Errorf("no data for %v", c.stall)) })
	defer timer.Stop()
	src := io.LimitReader(resp.Body, f.Size-have+1)
	buf := make([]byte, 1<<20)
	var got int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			timer.Reset(c.stall)
			if have+got+int64(n) > f.Size {
				return got, fmt.Errorf("%s: the server sent more than the %d bytes the Hub lists", f.Path, f.Size)
			}
			if _, err := fh.Write(buf[:n]); err != nil {
				return got, fmt.Errorf("writing %s: %w", fh.Name(), err)
			}
			h.Write(buf[:n])
			got += int64(n)
			j.report(int64(n))
		}
		if rerr == io.EOF {
			if have+got < f.Size {
				return got, &dropError{io.ErrUnexpectedEOF}
			}
			return got, nil
		}
		if rerr != nil {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				rerr = cause
			}
			return got, &dropError{rerr}
		}
	}
}

// checkHeaders holds the Hub's first answer to what its file list said: the commit, and the
// etag (X-Linked-Etag for LFS files, which is their sha256; ETag otherwise).
func checkHeaders(first http.Header, j *fetchJob) error {
	if c := first.Get("X-Repo-Commit"); c != "" && c != j.ref.Revision {
		return fmt.Errorf("%s: the Hub served commit %s, asked for %s", j.file.Path, c, j.ref.Revision)
	}
	etag := first.Get("X-Linked-Etag")
	if etag == "" {
		etag = first.Get("ETag")
	}
	etag = strings.Trim(strings.TrimPrefix(etag, "W/"), `"`)
	if etag != "" && etag != j.file.Etag() {
		return fmt.Errorf("%s: the Hub's ETag %s differs from its file list's %s", j.file.Path, etag, j.file.Etag())
	}
	if s := first.Get("X-Linked-Size"); s != "" && s != fmt.Sprint(j.file.Size) {
		return fmt.Errorf("%s: the Hub's X-Linked-Size %s differs from its file list's %d", j.file.Path, s, j.file.Size)
	}
	return nil
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}
