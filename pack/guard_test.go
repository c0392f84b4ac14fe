package pack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
)

// expectRefused runs fn and checks it refused with a message naming the overlap, and that
// nothing under root changed, byte for byte (no file gone, none added, no partial folder).
func expectRefused(t *testing.T, root, what string, fn func() error) {
	t.Helper()
	expectRefusedWith(t, root, what, "refusing to write", fn)
}

// expectRefusedWith is expectRefused for a refusal worded as want.
func expectRefusedWith(t *testing.T, root, what, want string, fn func() error) {
	t.Helper()
	before := snapshot(t, root)
	err := fn()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: got %v, want a refusal (%q)", what, err, want)
	}
	sameSnapshot(t, before, snapshot(t, root))
}

// A manifest naming an expert set by another set's folder is now rejected by format's
// validation before requant or lz4 get that far; the guard stays as the second line.
const nonCanonicalDir = `has dir "packed_experts_`

// Every way of pointing --out at the source, or at a folder holding it, is refused with
// --force before anything is written; the source survives byte for byte.
func TestConvertRefusesOutputOverSource(t *testing.T) {
	src := copyDir(t, tiny+"mlx-4bit")
	root := filepath.Dir(src)
	if err := os.Symlink(src, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	outs := []string{
		src, src + "/", src + "/.", filepath.Join(src, "..", "src"), "src", "./src/",
		root, src + "/..", ".", filepath.Join(src, "packed"), "src/new/deeper",
		filepath.Join(root, "link"), "link/", "link/packed",
	}
	for _, out := range outs {
		expectRefused(t, root, "--out "+out, func() error {
			_, err := Convert(context.Background(), Options{In: src, Out: out, Force: true})
			return err
		})
		// The same with --in relative and --out absolute.
		expectRefused(t, root, "--in src --out "+out, func() error {
			_, err := Convert(context.Background(), Options{In: "src", Out: out, Force: true})
			return err
		})
	}
}

// A Hugging Face cache keeps a snapshot of links into a blobs folder: --out set to the blobs
// folder (or above it) would delete the real shards while the snapshot folder looks untouched.
func TestConvertRefusesOutputOverLinkedShards(t *testing.T) {
	hub := t.TempDir()
	blobs, snap := filepath.Join(hub, "blobs"), filepath.Join(hub, "snapshots", "abc")
	for _, d := range []string{blobs, snap} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(tiny + "mlx-4bit")
	for i, e := range entries {
		data, err := os.ReadFile(filepath.Join(tiny+"mlx-4bit", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		blob := filepath.Join(blobs, "sha-"+string(rune('a'+i)))
		if err := os.WriteFile(blob, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "blobs", filepath.Base(blob)), filepath.Join(snap, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	for _, out := range []string{blobs, hub, filepath.Join(blobs, "..")} {
		expectRefused(t, hub, "--out "+out, func() error {
			_, err := Convert(context.Background(), Options{In: snap, Out: out, Force: true})
			return err
		})
	}
	// A folder beside the cache is fine, and packs from the links.
	if _, err := Convert(context.Background(), Options{In: snap, Out: filepath.Join(hub, "packed")}); err != nil {
		t.Fatal(err)
	}
}

// rewriteManifest edits a packed model's manifest and signs it again.
func rewriteManifest(t *testing.T, dir string, edit func(m *format.Manifest)) {
	t.Helper()
	m, err := format.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, err := format.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, format.ManifestName), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// requant writes packed_experts_2bit/: when that name is the pack's own 4-bit set (a renamed
// or hand-made pack), the old code removed it as "left by an interrupted run".
func TestRequantRefusesToReplaceItsSource(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	if err := os.Rename(filepath.Join(dir, "packed_experts"), filepath.Join(dir, "packed_experts_2bit")); err != nil {
		t.Fatal(err)
	}
	rewriteManifest(t, dir, func(m *format.Manifest) { m.Experts[0].Dir = "packed_experts_2bit" })
	for _, force := range []bool{false, true} {
		expectRefusedWith(t, dir, "requant over its source", nonCanonicalDir, func() error {
			_, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "minmax", Force: force})
			return err
		})
	}
}

// A link named like the 2-bit set, pointing at the 4-bit set, is refused too.
func TestRequantRefusesLinkToSource(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	if err := os.Symlink("packed_experts", filepath.Join(dir, "packed_experts_2bit")); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, dir, "requant through a link", func() error {
		_, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "minmax", Force: true})
		return err
	})
}

// lz4 --force replaces packed_experts_lz4/: when that is an expert set the manifest reads,
// it must not be removed.
func TestLZ4RefusesToReplaceAnInput(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	if _, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "minmax"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "packed_experts_2bit"), filepath.Join(dir, "packed_experts_lz4")); err != nil {
		t.Fatal(err)
	}
	rewriteManifest(t, dir, func(m *format.Manifest) { m.Experts[1].Dir = "packed_experts_lz4" })
	expectRefusedWith(t, dir, "lz4 over the 2-bit set", nonCanonicalDir, func() error {
		_, err := LZ4(context.Background(), LZ4Options{Model: dir, Force: true})
		return err
	})
	// A link to the 4-bit set under the copy's name is refused as well.
	dir = rqPack(t, "mlx-4bit", Options{})
	if err := os.Symlink("packed_experts", filepath.Join(dir, "packed_experts_lz4")); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, dir, "lz4 through a link", func() error {
		_, err := LZ4(context.Background(), LZ4Options{Model: dir, Force: true})
		return err
	})
}
