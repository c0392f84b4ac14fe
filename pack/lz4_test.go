package pack

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/format/lz4file"
)

// Every expert of every layer, of the pack's own set and of a requantised set, decompresses to
// exactly the raw block.
func TestLZ4RoundTripsEveryExpert(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	if _, err := Requant(context.Background(), RequantOptions{Model: dir, Bits: 2, Rule: "minmax"}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	for _, bits := range []int{0, 2} {
		st, err := LZ4(context.Background(), LZ4Options{Model: dir, Bits: bits})
		if err != nil {
			t.Fatal(err)
		}
		m, _ := format.Open(dir)
		set := &m.Experts[0]
		if bits != 0 {
			set, _ = m.ExpertSet(bits)
		}
		if st.Dir != filepath.Join(dir, set.Dir+"_lz4") || st.Experts != 128 || st.LZ4Bytes >= st.RawBytes {
			t.Fatalf("stats %+v", st)
		}
		checkLZ4Copy(t, dir, set)
	}
	// The model itself is untouched: only the two copies were added.
	after := snapshot(t, dir)
	for k := range before {
		if !bytes.Equal(before[k], after[k]) {
			t.Errorf("%s changed", k)
		}
	}
}

func checkLZ4Copy(t *testing.T, dir string, set *format.ExpertSet) {
	t.Helper()
	buf := make([]byte, set.Stride+100)
	for l := range set.Layers {
		z, err := lz4file.Open(filepath.Join(dir, LZ4Dir(set.Dir)), l)
		if err != nil {
			t.Fatal(err)
		}
		if z.Experts() != len(set.Layers[l].CRC32C) || z.Stride() != set.Stride {
			t.Fatalf("layer %d: %d experts of %d bytes", l, z.Experts(), z.Stride())
		}
		for e := range z.Experts() {
			if err := z.ReadExpert(e, buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:set.Stride], blockOf(t, dir, set, l, e)) || z.RawCRC32C(e) != set.Layers[l].CRC32C[e] {
				t.Fatalf("%s layer %d expert %d does not round-trip", set.Dir, l, e)
			}
		}
		if err := z.ReadExpert(z.Experts(), buf); err == nil {
			t.Error("reading a missing expert succeeded")
		}
		if err := z.ReadExpert(0, buf[:10]); err == nil {
			t.Error("reading into a short buffer succeeded")
		}
		z.Close()
	}
}

// A block LZ4 cannot shrink (random bytes) is stored raw and still reads back exactly.
func TestLZ4StoresIncompressibleRaw(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	m, _ := format.Open(dir)
	set := &m.Experts[0]
	rng := rand.New(rand.NewPCG(7, 7))
	blk := make([]byte, set.Stride)
	for i := range blk {
		blk[i] = byte(rng.Uint32())
	}
	path := filepath.Join(dir, set.Dir, set.Layers[1].File)
	f, _ := os.OpenFile(path, os.O_RDWR, 0)
	f.WriteAt(blk, 3*set.Stride)
	f.Close()
	set.Layers[1].CRC32C[3] = format.CRC32C(blk)
	data, _ := format.Encode(m)
	if err := replaceManifest(dir, data); err != nil {
		t.Fatal(err)
	}
	st, err := LZ4(context.Background(), LZ4Options{Model: dir})
	if err != nil {
		t.Fatal(err)
	}
	if st.Stored != 1 {
		t.Fatalf("%d experts stored raw, want 1", st.Stored)
	}
	z, err := lz4file.Open(st.Dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	if z.CompressedSize(3) != set.Stride {
		t.Errorf("random block stored in %d bytes", z.CompressedSize(3))
	}
	checkLZ4Copy(t, dir, set)
}

func TestLZ4BadInput(t *testing.T) {
	dir := rqPack(t, "mlx-4bit", Options{})
	st, err := LZ4(context.Background(), LZ4Options{Model: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LZ4(context.Background(), LZ4Options{Model: dir}); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second run: %v", err)
	}
	if _, err := LZ4(context.Background(), LZ4Options{Model: dir, Force: true}); err != nil {
		t.Errorf("--force: %v", err)
	}
	if _, err := LZ4(context.Background(), LZ4Options{Model: dir, Bits: 2}); err == nil || !strings.Contains(err.Error(), "no 2-bit expert set") {
		t.Errorf("missing set: %v", err)
	}
	if _, err := lz4file.Open(st.Dir, 1000); err == nil {
		t.Error("opening a missing layer succeeded")
	}
	if _, err := lz4file.Open(st.Dir+"/..", 0); err == nil {
		t.Error("opening a directory without LZ4 files succeeded")
	}
	path := filepath.Join(st.Dir, LZ4FileName(2))
	good, _ := os.ReadFile(path)
	for _, c := range []struct {
		name string
		mut  func([]byte) []byte
		want string
	}{
		{"magic", func(b []byte) []byte { b[0] ^= 1; return b }, "bad magic"},
		{"layer", func(b []byte) []byte { b[12] = 3; return b }, "holds layer 3"},
		{"truncated index", func(b []byte) []byte { return b[:100] }, "the file has"},
		{"truncated data", func(b []byte) []byte { return b[:len(b)-1] }, "outside the data"},
		{"offset", func(b []byte) []byte { b[lz4HeaderSize+7] = 0x7f; return b }, "outside the data"},
		{"method", func(b []byte) []byte { b[lz4HeaderSize+12] = 9; return b }, "method 9"},
	} {
		os.WriteFile(path, c.mut(bytes.Clone(good)), 0o644)
		if _, err := lz4file.Open(st.Dir, 2); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// Damaged compressed bytes never read past the buffers; the decoder reports what it can.
	b := bytes.Clone(good)
	for i := lz4HeaderSize + lz4EntrySize*16; i < len(b); i += 97 {
		b[i] = 0xff
	}
	os.WriteFile(path, b, 0o644)
	z, err := lz4file.Open(st.Dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, z.Stride())
	for e := range z.Experts() {
		_ = z.ReadExpert(e, buf)
	}
	z.Close()

	// A damaged raw block stops the run and leaves no copy behind.
	dir2 := rqPack(t, "mlx-4bit", Options{})
	m, _ := format.Open(dir2)
	p := filepath.Join(dir2, m.Experts[0].Dir, m.Experts[0].Layers[4].File)
	raw, _ := os.ReadFile(p)
	raw[5] ^= 1
	os.WriteFile(p, raw, 0o644)
	before := snapshot(t, dir2)
	if _, err := LZ4(context.Background(), LZ4Options{Model: dir2}); err == nil || !strings.Contains(err.Error(), "layer_04.bin expert 0: checksum mismatch") {
		t.Errorf("damaged block: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := LZ4(ctx, LZ4Options{Model: dir2}); err == nil {
		t.Error("cancelled run succeeded")
	}
	sameSnapshot(t, before, snapshot(t, dir2))
}
