package pack

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fmoe/fmoe/format"
)

// denseWriter writes model_weights.bin in schema order while taking tensors in any order: a
// streaming pack encodes a tensor when its shard arrives, which need not be its turn. A tensor
// that comes early waits in a spool file in the staged output (never in memory: dense tensors
// of a large model are gigabytes) until every tensor before it is written. In schema order,
// as Convert feeds it, nothing is ever spooled, and both paths write the same bytes.
type denseWriter struct {
	p       *packer
	f       outFile
	w       *weightsWriter
	tensors []format.Tensor
	next    int              // schema index of the next tensor to write
	waiting map[int]*spooled // tensors that came before their turn
	spool   string           // folder of spool files, made when first needed
}

// spooled is an encoded tensor in a spool file: data, scales and biases back to back.
type spooled struct {
	t     format.Tensor
	path  string
	parts [3]int
}

func (p *packer) newDenseWriter(n int) (*denseWriter, error) {
	path := p.out.path(format.WeightsName)
	f, err := p.o.create(path)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	return &denseWriter{p: p, f: f, w: newWeightsWriter(f, format.WeightsName), tensors: make([]format.Tensor, n),
		waiting: map[int]*spooled{}}, nil
}

// add takes schema tensor i: written now if it is its turn (then every spooled tensor whose
// turn has come), spooled otherwise.
func (d *denseWriter) add(i int, t format.Tensor, enc *encoded) error {
	if i != d.next {
		return d.spoolTensor(i, t, enc)
	}
	if err := d.write(t, enc.data, enc.scales, enc.biases); err != nil {
		return err
	}
	for d.waiting[d.next] != nil {
		s := d.waiting[d.next]
		data, err := os.ReadFile(s.path)
		if err != nil {
			return fmt.Errorf("reading back %s: %w", s.path, err)
		}
		a, b := s.parts[0], s.parts[0]+s.parts[1]
		if err := d.write(s.t, data[:a], data[a:b], data[b:]); err != nil {
			return err
		}
		delete(d.waiting, d.next-1)
		if err := os.Remove(s.path); err != nil {
			return err
		}
	}
	return nil
}

// write appends one tensor (its scales and biases too, when quantised) to model_weights.bin.
func (d *denseWriter) write(t format.Tensor, data, scales, biases []byte) error {
	var err error
	if t.Data, err = d.w.put(data); err != nil {
		return err
	}
	if t.DType == format.DTypeU32 {
		s, err := d.w.put(scales)
		if err != nil {
			return err
		}
		b, err := d.w.put(biases)
		if err != nil {
			return err
		}
		t.Scales, t.Biases = &s, &b
	}
	d.tensors[d.next] = t
	d.next++
	return nil
}

func (d *denseWriter) spoolTensor(i int, t format.Tensor, enc *encoded) error {
	if d.spool == "" {
		d.spool = d.p.out.path(".spool")
		if err := os.Mkdir(d.spool, 0o755); err != nil {
			return fmt.Errorf("output: %w", err)
		}
	}
	s := &spooled{t: t, path: filepath.Join(d.spool, fmt.Sprint(i)), parts: [3]int{len(enc.data), len(enc.scales), len(enc.biases)}}
	f, err := d.p.o.create(s.path)
	if err != nil {
		return fmt.Errorf("creating %s: %w", s.path, err)
	}
	for _, part := range [][]byte{enc.data, enc.scales, enc.biases} {
		if _, err := f.Write(part); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", s.path, err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	d.waiting[i] = s
	return nil
}

// finish syncs model_weights.bin and records it and its tensors in the manifest; every tensor
// must have been written.
func (d *denseWriter) finish() error {
	if d.next != len(d.tensors) {
		d.abandon()
		return fmt.Errorf("internal error: model_weights.bin has %d of %d tensors", d.next, len(d.tensors))
	}
	if err := d.w.finish(); err != nil {
		return err
	}
	if d.spool != "" {
		if err := os.Remove(d.spool); err != nil {
			return err
		}
	}
	p := d.p
	p.m.Tensors = append(p.m.Tensors, d.tensors...)
	p.m.Weights = format.WeightsFile{File: format.WeightsName, Size: d.w.off, Align: format.WeightsAlign}
	p.stats.BytesOut += d.w.off
	return nil
}

// abandon closes model_weights.bin after a failure (the staged output is then removed).
func (d *denseWriter) abandon() { d.f.Close() }
