package pack

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/fmoe/fmoe/format"
)

// layerExperts locates one layer's routed experts in whichever form the checkpoint stores them.
type layerExperts struct {
	layer int
	// Float sources: per projection, the bytes of expert e's [rows, cols] matrix.
	float func(e int, proj string) []byte
	// source names the tensor float(e, proj) is cut from and the slice's first element in it.
	source func(e int, proj string) (*srcTensor, int)
	dtype  string
	// Quantised (MLX stacked) sources: per projection, weight/scales/biases tensors [E, ...].
	q           map[string][3]*srcTensor
	bits, group int
	srcs        []*srcTensor
	// done releases expert e's source pages once its block is written.
	done func(e int)
}

// findExperts resolves layer l's experts: per-expert HF tensors, fused HF release tensors, or
// MLX stacked switch_mlp tensors.
func (p *packer) findExperts(l int) (*layerExperts, error) {
	ck, cfg := p.ck, p.cfg
	E, I, H := cfg.NumExperts, cfg.MoeIntermediateSize, cfg.HiddenSize
	pre := format.LayerPrefix(l) + "mlp."
	le := &layerExperts{layer: l}
	missing := func(name string) error {
		return fmt.Errorf("source checkpoint %s: layer %d routed experts: tensor %s is missing", ck.dir, l, ck.origName(name))
	}
	checkFloat := func(t *srcTensor, want []int) error {
		if !isFloat(t.dtype) {
			return fmt.Errorf("source checkpoint %s: tensor %s has dtype %s, want BF16, F16 or F32", ck.dir, t.orig, t.dtype)
		}
		if le.dtype != "" && t.dtype != le.dtype {
			return fmt.Errorf("source checkpoint %s: tensor %s is %s but other experts of layer %d are %s", ck.dir, t.orig, t.dtype, l, le.dtype)
		}
		le.dtype = t.dtype
		if !slices.Equal(t.shape, want) {
			return fmt.Errorf("source checkpoint %s: tensor %s has shape %v, the config implies %v", ck.dir, t.orig, t.shape, want)
		}
		le.srcs = append(le.srcs, t)
		return nil
	}
	if le, ok, err := p.findExpertsFP8(l); ok {
		return le, err
	}
	if _, ok := ck.tensors[pre+"switch_mlp.gate_proj.weight"]; ok {
		if _, quantised := ck.tensors[pre+"switch_mlp.gate_proj.scales"]; quantised {
			return p.findStackedQuantised(l, le)
		}
		stacked := map[string]*srcTensor{}
		for _, proj := range format.ExpertProjections {
			t, ok := ck.tensors[pre+"switch_mlp."+proj+".weight"]
			if !ok {
				return nil, missing(pre + "switch_mlp." + proj + ".weight")
			}
			shape, _ := format.ExpertShape(cfg, proj)
			if err := checkFloat(t, append([]int{E}, shape...)); err != nil {
				return nil, err
			}
			stacked[proj] = t
		}
		le.float = func(e int, proj string) []byte { return sliceExpert(stacked[proj].data, E, e) }
		le.source = func(e int, proj string) (*srcTensor, int) {
			t := stacked[proj]
			return t, e * (len(t.data) / E) / elemSize(t.dtype)
		}
		le.done = func(e int) {
			for _, t := range stacked {
				t.releaseExpert(E, e)
			}
		}
		return le, nil
	}
	if gu, ok := ck.tensors[pre+"experts.gate_up_proj"]; ok {
		dn, ok := ck.tensors[pre+"experts.down_proj"]
		if !ok {
			return nil, missing(pre + "experts.down_proj")
		}
		if err := checkFloat(gu, []int{E, 2 * I, H}); err != nil {
			return nil, err
		}
		if err := checkFloat(dn, []int{E, H, I}); err != nil {
			return nil, err
		}
		le.float = func(e int, proj string) []byte {
			if proj == "down_proj" {
				return sliceExpert(dn.data, E, e)
			}
			both := sliceExpert(gu.data, E, e)
			if proj == "gate_proj" { // gate rows first, then up
				return both[:len(both)/2]
			}
			return both[len(both)/2:]
		}
		le.source = func(e int, proj string) (*srcTensor, int) {
			t, half := dn, 0
			if proj != "down_proj" {
				t = gu
				if proj == "up_proj" {
					half = len(gu.data) / E / 2
				}
			}
			return t, (e*(len(t.data)/E) + half) / elemSize(t.dtype)
		}
		le.done = func(e int) { gu.releaseExpert(E, e); dn.releaseExpert(E, e) }
		return le, nil
	}
	per := make([]map[string]*srcTensor, E)
	for e := 0; e < E; e++ {
		per[e] = map[string]*srcTensor{}
		for _, proj := range format.ExpertProjections {
			name := fmt.Sprintf("%sexperts.%d.%s.weight", pre, e, proj)
			t, ok := ck.tensors[name]
			if !ok {
				return nil, missing(name)
			}
			shape, _ := format.ExpertShape(cfg, proj)
			if err := checkFloat(t, shape); err != nil {
				return nil, err
			}
			per[e][proj] = t
		}
	}
	le.float = func(e int, proj string) []byte { return per[e][proj].data }
	le.source = func(e int, proj string) (*srcTensor, int) { return per[e][proj], 0 }
	le.done = func(e int) {
		for _, t := range per[e] {
			t.release()
		}
	}
	return le, nil
}

func (p *packer) findStackedQuantised(l int, le *layerExperts) (*layerExperts, error) {
	ck, cfg := p.ck, p.cfg
	pre := format.LayerPrefix(l) + "mlp.switch_mlp."
	le.q = map[string][3]*srcTensor{}
	for _, proj := range format.ExpertProjections {
		var ts [3]*srcTensor
		for i, part := range []string{"weight", "scales", "biases"} {
			t, ok := ck.tensors[pre+proj+"."+part]
			if !ok {
				return nil, fmt.Errorf("source checkpoint %s: layer %d routed experts: tensor %s is missing", ck.dir, l, ck.origName(pre+proj+"."+part))
			}
			ts[i] = t
			le.srcs = append(le.srcs, t)
		}
		bits, group := ck.quant.forModule(strings.TrimSuffix(ts[0].orig, ".weight"))
		if le.bits != 0 && (bits != le.bits || group != le.group) {
			return nil, fmt.Errorf("source checkpoint %s: layer %d experts mix %d-bit and %d-bit projections; fmoe needs one expert format", ck.dir, l, le.bits, bits)
		}
		le.bits, le.group = bits, group
		shape, _ := format.ExpertShape(cfg, proj)
		if err := checkQuantShape(proj, ts[0], ts[1], ts[2], []int{cfg.NumExperts}, shape[0], shape[1], bits, group); err != nil {
			return nil, err
		}
		le.q[proj] = ts
	}
	le.done = func(e int) {
		for _, ts := range le.q {
			for _, t := range ts {
				t.releaseExpert(cfg.NumExperts, e)
			}
		}
	}
	return le, nil
}

// sliceExpert returns expert e's part of a tensor stacked over n experts.
func sliceExpert(data []byte, n, e int) []byte {
	per := len(data) / n
	return data[e*per : (e+1)*per]
}

// expertSetLayout places the three projections inside an expert block, each part on a 4096-byte
// boundary so a page-aligned read buffer gives aligned component pointers.
func expertSetLayout(cfg *format.Config, bits, group int) (format.ExpertSet, error) {
	set := format.ExpertSet{Bits: bits, Align: format.ExpertAlign}
	var off int64
	place := func(size int64) format.Span {
		s := format.Span{Offset: off, Size: size}
		off = alignUp(off+size, format.ExpertAlign)
		return s
	}
	for _, proj := range format.ExpertProjections {
		shape, _ := format.ExpertShape(cfg, proj)
		t := format.Tensor{Name: proj, Shape: shape}
		if bits == 16 {
			t.DType = format.DTypeBF16
		} else {
			t.DType, t.Bits, t.GroupSize = format.DTypeU32, bits, group
		}
		size, err := format.DataSize(t.DType, shape, t.Bits)
		if err != nil {
			return set, fmt.Errorf("expert %s: %w", proj, err)
		}
		t.Data = place(size)
		if bits != 16 {
			gs, err := format.GroupParamSize(shape, group)
			if err != nil {
				return set, fmt.Errorf("expert %s: %w", proj, err)
			}
			s, b := place(gs), place(gs)
			t.Scales, t.Biases = &s, &b
		}
		set.Projections = append(set.Projections, t)
	}
	set.Stride = off
	return set, nil
}

// packExperts writes packed_experts/layer_NN.bin for every layer (empty for a dense layer).
func (p *packer) packExperts() error {
	x, err := p.planExperts()
	if err != nil {
		return err
	}
	for l := 0; l < p.cfg.NumHiddenLayers; l++ {
		if err := p.packExpertLayer(x, l); err != nil {
			return err
		}
	}
	return p.finishExperts(x)
}

// expertPlan is the expert set's layout, decided before any layer is written, and the layer
// files as they are written (in any order: a streaming pack writes layers as they arrive).
type expertPlan struct {
	set   format.ExpertSet
	group int
}

// planExperts lays out the expert set (expertLayout) and makes its folder.
func (p *packer) planExperts() (*expertPlan, error) {
	x, err := p.expertLayout()
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(p.out.path(x.set.Dir), 0o755); err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	return x, nil
}

// expertLayout lays out the expert set at the first layer with experts (a leading dense
// layer, GLM-4.5's first, says nothing of their format). It reads only shapes and dtypes, so
// a streaming pack can call it before any shard has arrived.
func (p *packer) expertLayout() (*expertPlan, error) {
	group := 64
	if p.ck.quant != nil {
		group = p.ck.quant.GroupSize
	}
	first := 0
	for first < p.cfg.NumHiddenLayers && p.cfg.Dense(first) && p.anyRouted(first+1) {
		first++
	}
	quantised := false
	if first < p.cfg.NumHiddenLayers && !p.cfg.Dense(first) {
		le, err := p.findExperts(first)
		if err != nil {
			return nil, err
		}
		if le.q != nil {
			group, quantised = le.group, true
		}
	}
	set, err := expertSetLayout(p.cfg, p.expBits, group)
	if err != nil {
		return nil, err
	}
	set.Dir = format.ExpertsDir
	if !quantised && set.Bits != 16 {
		set.SetRule(p.rule.String())
	}
	set.Layers = make([]format.ExpertLayer, p.cfg.NumHiddenLayers)
	return &expertPlan{set: set, group: group}, nil
}

// packExpertLayer writes layer l's expert file (empty for a dense layer).
func (p *packer) packExpertLayer(x *expertPlan, l int) error {
	le := &layerExperts{layer: l, done: func(int) {}}
	if !p.cfg.Dense(l) {
		var err error
		if le, err = p.findExperts(l); err != nil {
			return err
		}
	}
	set := &x.set
	if le.q != nil && (le.bits != set.Bits || le.group != x.group) {
		return fmt.Errorf("source checkpoint %s: layer %d experts are %d-bit group %d, the first layer's are %d-bit group %d; fmoe needs one expert format", p.ck.dir, l, le.bits, le.group, set.Bits, x.group)
	}
	p.bar.Describe(fmt.Sprintf("layer %d/%d", l+1, p.cfg.NumHiddenLayers))
	if err := p.checkArrived(le.srcs); err != nil {
		return err
	}
	for _, s := range le.srcs {
		s.used = true
	}
	lf, err := p.writeLayer(set, le)
	if err != nil {
		return err
	}
	set.Layers[l] = lf
	for _, s := range le.srcs {
		p.stats.BytesIn += int64(len(s.data))
	}
	return nil
}

// finishExperts syncs the layer files and records the set.
func (p *packer) finishExperts(x *expertPlan) error {
	if err := p.syncAll(); err != nil {
		return err
	}
	p.m.Experts = []format.ExpertSet{x.set}
	return nil
}

// anyRouted reports whether a layer from l on has routed experts.
func (p *packer) anyRouted(l int) bool {
	for ; l < p.cfg.NumHiddenLayers; l++ {
		if !p.cfg.Dense(l) {
			return true
		}
	}
	return false
}

// writeLayer fills expert blocks in parallel, a batch at a time, and writes them in order. Two
// batches alternate so that writing one overlaps filling the next: packing an mlx checkpoint is
// a copy, and read, gather and write should run at the same time, not in turn. The file is
// synced later (see syncAll), so its writeback overlaps the next layer too.
func (p *packer) writeLayer(set *format.ExpertSet, le *layerExperts) (format.ExpertLayer, error) {
	E := p.cfg.LayerExperts(le.layer)
	name := format.LayerFileName(le.layer)
	path := p.out.path(set.Dir, name)
	lf := format.ExpertLayer{File: name, Size: int64(E) * set.Stride, CRC32C: make([]uint32, E)}
	f, err := p.o.create(path)
	if err != nil {
		return lf, fmt.Errorf("creating %s: %w", path, err)
	}
	p.unsynced = append(p.unsynced, unsynced{f, path})
	var srcBytes int64
	for _, s := range le.srcs {
		srcBytes += int64(len(s.data))
	}
	batch := p.o.Workers
	var bufs [2][][]byte
	for k := range bufs {
		for i := 0; i < batch; i++ {
			bufs[k] = append(bufs[k], make([]byte, set.Stride))
		}
	}
	var writing chan error // the write of the previous batch, if any
	wait := func() error {
		if writing == nil {
			return nil
		}
		err := <-writing
		writing = nil
		return err
	}
	for e0, k := 0, 0; e0 < E; e0, k = e0+batch, k^1 {
		if err := p.checkCancelled(); err != nil {
			wait()
			return lf, err
		}
		n := min(batch, E-e0)
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func(i int) {
				err := p.fillBlock(bufs[k][i], set, le, e0+i)
				lf.CRC32C[e0+i] = format.CRC32C(bufs[k][i])
				errs <- err
			}(i)
		}
		var first error
		for i := 0; i < n; i++ {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		if err := wait(); err != nil && first == nil {
			first = err
		}
		if first != nil {
			return lf, first
		}
		writing = make(chan error, 1)
		go func(blocks [][]byte, e0 int) {
			for i, b := range blocks {
				if _, err := f.Write(b); err != nil {
					writing <- fmt.Errorf("writing %s: %w", path, err)
					return
				}
				le.done(e0 + i)
			}
			p.bar.Add(srcBytes * int64(len(blocks)) / int64(E))
			writing <- nil
		}(bufs[k][:n], e0)
		p.stats.Experts += n
	}
	if err := wait(); err != nil {
		return lf, err
	}
	p.stats.BytesOut += lf.Size
	return lf, nil
}

// unsynced is an expert file written but not yet synced.
type unsynced struct {
	f    outFile
	path string
}

// syncAll syncs and closes every expert file, in parallel: the disk writes them back while
// later layers are packed, and this waits only for what is left.
func (p *packer) syncAll() error {
	errs := make(chan error, len(p.unsynced))
	for _, u := range p.unsynced {
		go func() {
			if err := u.f.Sync(); err != nil {
				u.f.Close()
				errs <- fmt.Errorf("syncing %s: %w", u.path, err)
				return
			}
			errs <- u.f.Close()
		}()
	}
	var first error
	for range p.unsynced {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	p.unsynced = nil
	return first
}

// closeUnsynced closes expert files after a failure (the staged directory is then removed).
func (p *packer) closeUnsynced() {
	for _, u := range p.unsynced {
		u.f.Close()
	}
	p.unsynced = nil
}

// fillBlock writes expert e's projections into buf at the set's offsets. Padding is never
// written, so it stays zero from the buffer's allocation.
func (p *packer) fillBlock(buf []byte, set *format.ExpertSet, le *layerExperts, e int) error {
	for i := range set.Projections {
		t := &set.Projections[i]
		if le.q != nil {
			ts := le.q[t.Name]
			n := p.cfg.NumExperts
			for _, q := range ts[1:] { // scales and biases are bf16, copied as they are
				if err := p.ck.checkFinite(q, sliceExpert(q.data, n, e), fmt.Sprintf("expert %d", e), e*(len(q.data)/n)/2); err != nil {
					return err
				}
			}
			copy(buf[t.Data.Offset:t.Data.End()], sliceExpert(ts[0].data, n, e))
			copy(buf[t.Scales.Offset:t.Scales.End()], sliceExpert(ts[1].data, n, e))
			copy(buf[t.Biases.Offset:t.Biases.End()], sliceExpert(ts[2].data, n, e))
			continue
		}
		src := le.float(e, t.Name)
		if st, base := le.source(e, t.Name); st != nil {
			if err := p.ck.checkFinite(st, src, fmt.Sprintf("expert %d %s", e, t.Name), base); err != nil {
				return err
			}
		}
		if set.Bits == 16 {
			b, err := toBF16(src, le.dtype)
			if err != nil {
				return err
			}
			copy(buf[t.Data.Offset:t.Data.End()], b)
			continue
		}
		enc, err := quantizeFloat(p.rule, src, le.dtype, t.Shape[0], t.Shape[1], t.Bits, t.GroupSize, 1, nil)
		if err != nil {
			return fmt.Errorf("layer %d expert %d %s: %w", le.layer, e, t.Name, err)
		}
		copy(buf[t.Data.Offset:t.Data.End()], enc.data)
		copy(buf[t.Scales.Offset:t.Scales.End()], enc.scales)
		copy(buf[t.Biases.Offset:t.Biases.End()], enc.biases)
	}
	return nil
}
