package model

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/format/formattest"
	"github.com/fmoe/fmoe/format/lz4file"
	"github.com/fmoe/fmoe/runtime/backend"
)

// damagedCopy copies the tiny mlx-4bit pack and returns it with its manifest.
func damagedCopy(t *testing.T) (string, *format.Manifest) {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, packed(t, "mlx-4bit", 0), dir)
	man, err := format.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, man
}

func xorByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func wantAll(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%q lacks %q", err, p)
		}
	}
}

// A flipped byte in a dense tensor is caught at Open, naming the tensor and fmoe-verify.
func TestOpenCatchesDamagedDenseTensor(t *testing.T) {
	for _, name := range []string{"model.norm.weight", "model.layers.2.mlp.gate.weight", "model.layers.3.self_attn.k_proj.weight"} {
		dir, man := damagedCopy(t)
		tn, err := man.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		span, part := tn.Data, "data"
		if tn.Scales != nil {
			span, part = *tn.Scales, "scales"
		}
		xorByte(t, filepath.Join(dir, format.WeightsName), span.Offset+span.Size/2)
		_, err = Open(dir, Options{})
		wantAll(t, err, "tensor "+name+" "+part+": checksum mismatch", "fmoe-verify --model "+dir)
	}
}

// A flipped byte in an expert block is caught when the block is read, naming the layer, the
// expert and fmoe-verify; a forward through the damaged layer fails there, not a layer later.
func TestExpertReadCatchesDamagedBlock(t *testing.T) {
	dir, man := damagedCopy(t)
	set := &man.Experts[0]
	path := filepath.Join(dir, set.Dir, set.Layers[2].File)
	for e := range man.Config.NumExperts {
		xorByte(t, path, int64(e)*set.Stride+int64(e)*97%set.Stride)
	}
	m, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	nop := func(int, *[3]backend.Weight) error { return nil }
	if err := m.experts.stream(1, []int{5}, nop); err != nil {
		t.Fatalf("undamaged layer 1: %v", err)
	}
	err = m.experts.stream(2, []int{5}, nop)
	wantAll(t, err, "layer 2 expert 5 (packed_experts/layer_02.bin, block at offset", "checksum mismatch", "fmoe-verify --model "+dir)

	s, err := m.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Forward([]int{1, 2, 3})
	wantAll(t, err, "model: layer 2 expert ", "checksum mismatch", "fmoe-verify")
	if strings.Count(err.Error(), "layer 2") != 1 {
		t.Errorf("the layer is named more than once: %v", err)
	}
}

// The LZ4 path checks the decompressed block too: a copy whose index carries the manifest's
// checksums but whose block 3 of layer 4 differs by one byte is caught on read.
func TestLZ4ReadCatchesDamagedBlock(t *testing.T) {
	dir, man := damagedCopy(t)
	set := &man.Experts[0]
	zdir := filepath.Join(dir, lz4file.Dir(set.Dir))
	if err := os.Mkdir(zdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for l, lf := range set.Layers {
		raw, err := os.ReadFile(filepath.Join(dir, set.Dir, lf.File))
		if err != nil {
			t.Fatal(err)
		}
		E := len(lf.CRC32C)
		head := make([]byte, lz4file.HeaderSize+lz4file.EntrySize*E)
		copy(head, lz4file.Magic)
		binary.LittleEndian.PutUint32(head[8:], lz4file.Version)
		binary.LittleEndian.PutUint32(head[12:], uint32(l))
		binary.LittleEndian.PutUint32(head[16:], uint32(E))
		binary.LittleEndian.PutUint64(head[24:], uint64(set.Stride))
		for e := range E {
			ent := head[lz4file.HeaderSize+lz4file.EntrySize*e:]
			binary.LittleEndian.PutUint64(ent, uint64(len(head)+e*int(set.Stride)))
			binary.LittleEndian.PutUint32(ent[8:], uint32(set.Stride))
			binary.LittleEndian.PutUint32(ent[12:], lz4file.MethodStored)
			binary.LittleEndian.PutUint32(ent[20:], lf.CRC32C[e])
		}
		if l == 4 {
			raw[3*set.Stride+100] ^= 1
		}
		if err := os.WriteFile(filepath.Join(zdir, lz4file.FileName(l)), append(head, raw...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := Open(dir, Options{LZ4: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	nop := func(int, *[3]backend.Weight) error { return nil }
	if err := m.experts.stream(4, []int{2}, nop); err != nil {
		t.Fatalf("undamaged block: %v", err)
	}
	wantAll(t, m.experts.stream(4, []int{3}, nop), "layer 4 expert 3", "checksum mismatch", "fmoe-verify")
}

// A pack whose checksums match but whose final norm is NaN (damaged before it was signed)
// fails with an error instead of sampling token 0 forever.
func TestNaNLogitsAreAnError(t *testing.T) {
	dir, man := damagedCopy(t)
	tn, err := man.Tensor("model.norm.weight")
	if err != nil {
		t.Fatal(err)
	}
	if tn.DType != format.DTypeBF16 {
		t.Fatalf("norm dtype %s", tn.DType)
	}
	path := filepath.Join(dir, format.WeightsName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	nan := uint16(math.Float32bits(float32(math.NaN())) >> 16)
	for i := int64(0); i < tn.Data.Size; i += 2 {
		binary.LittleEndian.PutUint16(data[tn.Data.Offset+i:], nan)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	crc := format.CRC32C(data[tn.Data.Offset : tn.Data.Offset+tn.Data.Size])
	formattest.Resign(t, dir, func(m *format.Manifest) {
		for i := range m.Tensors {
			if m.Tensors[i].Name == tn.Name {
				m.Tensors[i].Data.CRC32C = crc
			}
		}
	})
	m, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, _ := m.NewSession()
	_, err = s.Forward([]int{1, 2})
	wantAll(t, err, "logits are not finite", "fmoe-verify --model "+dir)
	if _, err := s.Forward([]int{3}); err == nil {
		t.Error("the session went on after non-finite logits")
	}
}

// A block is checked on its first read in the process; with VerifyEveryRead on every read;
// either way beside the compute (the default) or before it (VerifyBeforeCompute).
func TestExpertCheckPolicy(t *testing.T) {
	for _, o := range []Options{{}, {VerifyEveryRead: true}, {VerifyBeforeCompute: true}, {VerifyEveryRead: true, VerifyBeforeCompute: true}} {
		every := o.VerifyEveryRead
		dir, man := damagedCopy(t)
		m, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		nop := func(int, *[3]backend.Weight) error { return nil }
		if err := m.experts.stream(1, []int{7}, nop); err != nil {
			t.Fatal(err)
		}
		set := &man.Experts[0]
		xorByte(t, filepath.Join(dir, set.Dir, set.Layers[1].File), 7*set.Stride+3)
		err = m.experts.stream(1, []int{7}, nop)
		if every && err == nil {
			t.Error("VerifyEveryRead: the second read of a damaged block passed")
		}
		if !every && err != nil {
			t.Errorf("default: a block already checked was checked again: %v", err)
		}
		// An unread block is checked either way.
		xorByte(t, filepath.Join(dir, set.Dir, set.Layers[1].File), 8*set.Stride+3)
		if err := m.experts.stream(1, []int{8}, nop); err == nil {
			t.Errorf("every=%v: first read of a damaged block passed", every)
		}
		m.Close()
	}
}

// TestVerifyExperts: the benchmark's pass over every expert leaves every
// block verified, so later reads skip the checksum.
func TestVerifyExperts(t *testing.T) {
	m := open(t, "hf", 16, 0, Options{})
	if err := m.verifyExperts(); err != nil {
		t.Fatal(err)
	}
	for l := range m.layers {
		for id := 0; id < m.Config.NumExperts; id++ {
			if m.experts.needsCheck(l, id) {
				t.Fatalf("layer %d expert %d not verified", l, id)
			}
		}
	}
}
