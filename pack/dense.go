package pack

import (
	"fmt"
	"strings"

	"github.com/fmoe/fmoe/format"
)

// packDense writes every non-expert tensor to model_weights.bin in schema order.
func (p *packer) packDense() error {
	schema := format.Schema(p.cfg)
	d, err := p.newDenseWriter(len(schema))
	if err != nil {
		return err
	}
	for i, spec := range schema {
		if err := p.packDenseTensor(d, i, spec); err != nil {
			d.abandon()
			return err
		}
	}
	return d.finish()
}

// packDenseTensor encodes schema tensor i and hands it to d.
func (p *packer) packDenseTensor(d *denseWriter, i int, spec format.TensorSpec) error {
	if err := p.checkCancelled(); err != nil {
		return err
	}
	enc, srcs, err := p.encodeDense(spec)
	if err == nil {
		err = p.checkArrived(srcs)
	}
	if err == nil {
		err = p.checkDenseFinite(srcs)
	}
	if err != nil {
		return err
	}
	t := format.Tensor{Name: spec.Name, DType: enc.dtype, Shape: enc.shape, Bits: enc.bits, GroupSize: enc.group, Rule: enc.rule}
	if err := d.add(i, t, enc); err != nil {
		return err
	}
	p.stats.Tensors++
	for _, s := range srcs {
		p.bar.Add(int64(len(s.data)))
		p.stats.BytesIn += int64(len(s.data))
		s.release()
	}
	return nil
}

// encodeDense produces the stored form of one non-expert tensor and the source tensors it read.
func (p *packer) encodeDense(spec format.TensorSpec) (*encoded, []*srcTensor, error) {
	ck := p.ck
	src, ok := ck.tensor(spec.Name)
	if !ok {
		return nil, nil, fmt.Errorf("source checkpoint %s: tensor %s is missing (the config's %s needs it)", ck.dir, ck.origName(spec.Name), layerWhat(spec.Name))
	}
	if src.scale != nil {
		return p.encodeDenseFP8(spec, src)
	}
	base := strings.TrimSuffix(spec.Name, ".weight")
	scales, hasScales := ck.tensor(base + ".scales")
	if spec.Matrix && hasScales {
		biases, ok := ck.tensor(base + ".biases")
		if !ok {
			return nil, nil, fmt.Errorf("source checkpoint %s: tensor %s has scales but no biases", ck.dir, src.orig)
		}
		if ck.quant == nil {
			return nil, nil, fmt.Errorf("source checkpoint %s: tensor %s is quantised but config.json has no quantization block", ck.dir, src.orig)
		}
		bits, group := ck.quant.forModule(strings.TrimSuffix(src.orig, ".weight"))
		rows, cols := spec.Shape[0], spec.Shape[1]
		if err := checkQuantShape(spec.Name, src, scales, biases, nil, rows, cols, bits, group); err != nil {
			return nil, nil, err
		}
		return &encoded{dtype: format.DTypeU32, shape: spec.Shape, bits: bits, group: group,
			data: src.data, scales: scales.data, biases: biases.data}, []*srcTensor{src, scales, biases}, nil
	}
	if !isFloat(src.dtype) {
		return nil, nil, fmt.Errorf("source checkpoint %s: tensor %s has dtype %s, want a float dtype (BF16, F16, F32)", ck.dir, src.orig, src.dtype)
	}
	if !sameElements(src.shape, spec.Shape) || (spec.Matrix && len(src.shape) != 2) {
		return nil, nil, fmt.Errorf("source checkpoint %s: tensor %s has shape %v, the config implies %v", ck.dir, src.orig, src.shape, spec.Shape)
	}
	enc, err := p.encodeFloat(spec, src)
	return enc, []*srcTensor{src}, err
}

// encodeFloat stores a float tensor whose shape has been checked: shifted if it is a norm,
// quantised if it is a matrix at fewer than 16 bits, copied otherwise.
func (p *packer) encodeFloat(spec format.TensorSpec, src *srcTensor) (*encoded, error) {
	switch {
	case spec.NormShift && !p.ck.normShifted:
		data, err := shiftNorm(src.data, src.dtype)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", src.orig, err)
		}
		return &encoded{dtype: format.DTypeF32, shape: spec.Shape, data: data}, nil
	case spec.Matrix && p.ck.quant == nil:
		bits := p.denseBits
		if spec.Gate && bits < 8 {
			bits = 8
		}
		if bits == 16 || spec.Shape[1]%64 != 0 {
			return &encoded{dtype: src.dtype, shape: spec.Shape, data: src.data}, nil
		}
		rowBytes := int64(len(src.data) / spec.Shape[0])
		enc, err := quantizeFloat(p.rule, src.data, src.dtype, spec.Shape[0], spec.Shape[1], bits, 64, p.o.Workers, func(r0, r1 int) {
			if !src.inMemory {
				src.shard.file.Release(src.off+int64(r0)*rowBytes, int64(r1-r0)*rowBytes)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("quantising %s: %w", src.orig, err)
		}
		return enc, nil
	}
	return &encoded{dtype: src.dtype, shape: spec.Shape, data: src.data}, nil
}

// origName maps a canonical name back to the checkpoint's naming, for messages.
func (c *checkpoint) origName(canon string) string {
	if c.bareMLX {
		return canon
	}
	return origName(c.layout, canon)
}

// origName maps a canonical name back to a layout's naming.
func origName(layout, canon string) string {
	switch layout {
	case LayoutMLX:
		return "language_model." + canon
	case LayoutHFVL:
		if strings.HasPrefix(canon, "model.") {
			return "model.language_model." + strings.TrimPrefix(canon, "model.")
		}
	}
	return canon
}

// layerWhat names the part of the model a tensor belongs to.
func layerWhat(name string) string {
	if strings.HasPrefix(name, "model.layers.") {
		rest := strings.TrimPrefix(name, "model.layers.")
		if i := strings.IndexByte(rest, '.'); i > 0 {
			return "layer " + rest[:i]
		}
	}
	return "model"
}

// checkDenseFinite rejects NaN or infinity in the float tensors a dense tensor is made from
// (quantised weights are U32 and have none), and marks them used.
func (p *packer) checkDenseFinite(srcs []*srcTensor) error {
	for _, s := range srcs {
		s.used = true
		if err := p.ck.checkFinite(s, s.data, "", 0); err != nil {
			return err
		}
	}
	return nil
}
