package pack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fmoe/fmoe/format"
	"github.com/fmoe/fmoe/internal/fsguard"
	"github.com/fmoe/fmoe/internal/progress"
)

// StackOptions configures Stack.
type StackOptions struct {
	Model  string // the pack read (never written)
	Out    string // the pack written
	Layer  int    // the layer of Model that every layer of Out copies
	Layers int    // how many layers Out has
	Force  bool   // replace an existing Out
	// Progress receives a progress bar; Log notes. Either may be nil.
	Progress io.Writer
	Log      io.Writer
}

// MaxStackLayers bounds Layers: more than any released model has, few enough that a typo
// cannot fill a disk.
const MaxStackLayers = 1024

// Stack writes a pack whose every layer is a byte-for-byte copy of one layer of another pack,
// its own data in its own place (the expert files are copied, not linked, so that a layer's
// reads never hit the page cache another layer filled). It is how a benchmark measures one
// layer's cost on a disk too small for the model: the difference between N and N+1 copies of the
// same layer, as scripts/peer/gguf_layers.py stacks llama.cpp's GGUF blocks. Every copy holds the
// same weights and shapes, so each costs what the layer costs; a second synthesis would route
// (and so cache) differently, which made such a split noise before (docs/benchmarks.md, run 9).
// Every copied range is checked against its manifest CRC-32C as it is copied.
func Stack(ctx context.Context, o StackOptions) error {
	m, err := openPack(o.Model)
	if err != nil {
		return err
	}
	if n := m.Config.NumHiddenLayers; o.Layer < 0 || o.Layer >= n {
		return fmt.Errorf("--layer %d: %s has layers 0 to %d", o.Layer, o.Model, n-1)
	}
	if o.Layers < 1 || o.Layers > MaxStackLayers {
		return fmt.Errorf("--layers %d: want 1 to %d", o.Layers, MaxStackLayers)
	}
	// The model's folder itself too: a stack is a model of its own, not a part of the one read.
	in := append(packInputs(o.Model, m, 0), fsguard.Path{Label: "--model", Path: o.Model})
	if err := fsguard.CheckOutput(fsguard.Path{Label: "--out", Path: o.Out}, in...); err != nil {
		return err
	}
	out, err := stackedManifest(m, o)
	if err != nil {
		return err
	}
	d, err := newStagedDir(o.Out, o.Force, o.Log)
	if err != nil {
		return err
	}
	defer d.abandonUnlessCommitted()
	bar := progress.New(o.Progress, stackBytes(m, o), "stacking")
	s := &stacker{ctx: ctx, d: d, bar: bar}
	if err := s.weights(m, out, o); err != nil {
		return err
	}
	if err := s.experts(m, out, o); err != nil {
		return err
	}
	for _, f := range m.Files {
		if err := s.copyChecked(filepath.Join(o.Model, f.Name), d.path(f.Name), f.Name, f.Size, f.CRC32C); err != nil {
			return err
		}
	}
	bar.Finish()
	if err := format.Validate(out); err != nil {
		return fmt.Errorf("the stacked manifest: %w", err)
	}
	data, err := format.Encode(out)
	if err != nil {
		return err
	}
	if err := writeFileVia(osCreate, d.path(format.ManifestName), data); err != nil {
		return err
	}
	return d.commit()
}

// stackedManifest is m with o.Layers copies of layer o.Layer: the config's per-layer lists
// repeated, and every range still to be placed (weights) or pointing at copies (experts).
func stackedManifest(m *format.Manifest, o StackOptions) (*format.Manifest, error) {
	out := *m
	out.CreatedBy = fmt.Sprintf("%s (stacked: layer %d of %s, %d times)", Version, o.Layer, filepath.Base(filepath.Clean(o.Model)), o.Layers)
	c := &out.Config
	c.NumHiddenLayers = o.Layers
	c.LayerTypes = slices.Repeat(m.Config.LayerTypes[o.Layer:o.Layer+1], o.Layers)
	if m.Config.MLPTypes != nil {
		c.MLPTypes = slices.Repeat(m.Config.MLPTypes[o.Layer:o.Layer+1], o.Layers)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("the stacked config: %w", err)
	}
	// format.Open checked that every set has a file per layer.
	out.Experts = slices.Clone(m.Experts)
	for i, s := range m.Experts {
		out.Experts[i].Layers = slices.Repeat(s.Layers[o.Layer:o.Layer+1], o.Layers)
		for l := range out.Experts[i].Layers {
			out.Experts[i].Layers[l].File = format.LayerFileName(l)
		}
	}
	return &out, nil
}

// stackBytes is what Stack copies, for its progress bar.
func stackBytes(m *format.Manifest, o StackOptions) int64 {
	var n int64
	for i := range m.Tensors {
		t := &m.Tensors[i]
		copies := int64(1)
		if l, ok := layerOf(t.Name); ok {
			copies = 0
			if l == o.Layer {
				copies = int64(o.Layers)
			}
		}
		for _, sp := range t.Spans() {
			n += copies * sp.Span.Size
		}
	}
	for _, s := range m.Experts {
		n += int64(o.Layers) * s.Layers[o.Layer].Size
	}
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

type stacker struct {
	ctx context.Context
	d   *stagedDir
	bar *progress.Bar
	buf []byte
}

// weights writes model_weights.bin: the tensors outside the layers where they were, the chosen
// layer's tensors once per output layer (renamed) where the first layer's began, every range
// aligned as the format wants. out.Tensors is rebuilt in file order.
func (s *stacker) weights(m, out *format.Manifest, o StackOptions) error {
	var layer []format.Tensor
	for _, t := range m.Tensors {
		if l, ok := layerOf(t.Name); ok && l == o.Layer {
			layer = append(layer, t)
		}
	}
	out.Tensors = nil
	from := filepath.Join(o.Model, m.Weights.File)
	return s.copyFile(from, s.d.path(format.WeightsName), m.Weights.Size, func(src *os.File, w *alignedWriter) error {
		// place copies one range to the next aligned offset and returns it there.
		place := func(sp format.Span, what string) (format.Span, error) {
			off, err := w.pad(format.WeightsAlign)
			if err == nil {
				err = s.copySpan(src, w, sp, what)
			}
			sp.Offset = off
			return sp, err
		}
		put := func(t format.Tensor, name string) error {
			what := m.Weights.File + ": tensor " + t.Name
			nt := t
			nt.Name = name
			var err error
			if nt.Data, err = place(t.Data, what); err != nil {
				return err
			}
			for _, p := range []**format.Span{&nt.Scales, &nt.Biases} {
				if *p != nil {
					sp, err := place(**p, what)
					if err != nil {
						return err
					}
					*p = &sp
				}
			}
			out.Tensors = append(out.Tensors, nt)
			return nil
		}
		placed := false
		for _, t := range m.Tensors {
			if _, ok := layerOf(t.Name); !ok {
				if err := put(t, t.Name); err != nil {
					return err
				}
				continue
			}
			if placed {
				continue
			}
			placed = true
			for l := range o.Layers {
				for _, lt := range layer {
					if err := put(lt, format.LayerPrefix(l)+strings.TrimPrefix(lt.Name, format.LayerPrefix(o.Layer))); err != nil {
						return err
					}
				}
			}
		}
		out.Weights.Size = w.n
		return nil
	})
}

// experts copies each set's chosen layer file once per output layer.
func (s *stacker) experts(m, out *format.Manifest, o StackOptions) error {
	for i, set := range m.Experts {
		if err := os.MkdirAll(s.d.path(set.Dir), 0o755); err != nil {
			return err
		}
		lf := set.Layers[o.Layer]
		for l := range out.Experts[i].Layers {
			name := filepath.Join(set.Dir, format.LayerFileName(l))
			if err := s.copyBlocks(filepath.Join(o.Model, set.Dir, lf.File), s.d.path(name), set, lf); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyBlocks copies one expert layer file, checking each block's CRC-32C.
func (s *stacker) copyBlocks(from, to string, set format.ExpertSet, lf format.ExpertLayer) error {
	return s.copyFile(from, to, lf.Size, func(src *os.File, w *alignedWriter) error {
		for e, crc := range lf.CRC32C {
			sp := format.Span{Offset: int64(e) * set.Stride, Size: set.Stride, CRC32C: crc}
			if err := s.copySpan(src, w, sp, fmt.Sprintf("%s: expert %d", from, e)); err != nil {
				return err
			}
		}
		return nil
	})
}

// copyChecked copies a whole file of size bytes, checking them against crc.
func (s *stacker) copyChecked(from, to, what string, size int64, crc uint32) error {
	return s.copyFile(from, to, size, func(src *os.File, w *alignedWriter) error {
		return s.copySpan(src, w, format.Span{Size: size, CRC32C: crc}, what)
	})
}

// copyFile opens from, which must be size bytes, creates to, and lets copy fill it; to is
// synced and closed.
func (s *stacker) copyFile(from, to string, size int64, copy func(*os.File, *alignedWriter) error) error {
	src, err := fsguard.OpenRegular(from)
	if err != nil {
		return err
	}
	defer src.Close()
	if st, err := src.Stat(); err != nil {
		return err
	} else if st.Size() != size {
		return fmt.Errorf("%s: %d bytes, the manifest says %d", from, st.Size(), size)
	}
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if err := copy(src, &alignedWriter{f: dst}); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// stackChunk is how much copySpan moves at a time.
const stackChunk = 8 << 20

// copySpan appends sp's bytes of src to w and fails if they do not match sp's CRC-32C: a damaged
// input is named, never copied on as if it were sound.
func (s *stacker) copySpan(src *os.File, w *alignedWriter, sp format.Span, what string) error {
	if s.buf == nil {
		s.buf = make([]byte, stackChunk)
	}
	crc := uint32(0)
	for done := int64(0); done < sp.Size; {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		b := s.buf[:min(int64(len(s.buf)), sp.Size-done)]
		if _, err := src.ReadAt(b, sp.Offset+done); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%s: the file ends before byte %d of the range the manifest gives", what, sp.Offset+sp.Size)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		crc = format.UpdateCRC32C(crc, b)
		if err := w.write(b); err != nil {
			return err
		}
		done += int64(len(b))
		s.bar.Add(int64(len(b)))
	}
	if crc != sp.CRC32C {
		return fmt.Errorf("%s: CRC-32C %08x, the manifest says %08x: the input is damaged (fmoe-verify locates it)", what, crc, sp.CRC32C)
	}
	return nil
}

// alignedWriter counts what it wrote so that ranges can be padded to an alignment.
type alignedWriter struct {
	f *os.File
	n int64
}

func (w *alignedWriter) write(b []byte) error {
	k, err := w.f.Write(b)
	w.n += int64(k)
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.f.Name(), err)
	}
	return nil
}

// pad writes zeros up to the next multiple of align and returns the offset reached.
func (w *alignedWriter) pad(align int64) (int64, error) {
	if r := w.n % align; r != 0 {
		if err := w.write(make([]byte, align-r)); err != nil {
			return 0, err
		}
	}
	return w.n, nil
}
