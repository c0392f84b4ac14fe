package pack

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fmoe/fmoe/format"
)

// streamUnit is one unit of output a streaming pack writes as soon as every shard it reads has
// arrived: a layer (its dense tensors and its experts' file), or a tensor outside the layers.
type streamUnit struct {
	name   string
	dense  []int // schema indices
	layer  int   // the layer whose experts' file it writes; -1 for none
	shards []string
}

func (p *packer) schema() []format.TensorSpec {
	if p.specs == nil {
		p.specs = format.Schema(p.cfg)
	}
	return p.specs
}

// streamUnits groups the schema into units and gives each every shard holding a tensor of its
// layer (or of its module, outside the layers): a superset of what packing it reads, which
// checkArrived enforces.
func (p *packer) streamUnits() []*streamUnit {
	var units []*streamUnit
	byKey := map[string]*streamUnit{}
	get := func(key string, layer int) *streamUnit {
		u := byKey[key]
		if u == nil {
			u = &streamUnit{name: key, layer: layer}
			byKey[key] = u
			units = append(units, u)
		}
		return u
	}
	key := func(name string) string {
		if l, ok := layerOf(name); ok && l < p.cfg.NumHiddenLayers {
			return "layer " + strconv.Itoa(l)
		}
		return "tensor " + moduleOf(name)
	}
	for l := range p.cfg.NumHiddenLayers {
		get(key(format.LayerPrefix(l)), l)
	}
	for i, spec := range p.schema() {
		u := get(key(spec.Name), -1)
		u.dense = append(u.dense, i)
	}
	seen := map[*streamUnit]map[string]bool{}
	for _, name := range sortedKeys(p.ck.tensors) {
		u := byKey[key(name)]
		sh := p.ck.tensors[name].shard.name
		if u == nil || seen[u][sh] {
			continue
		}
		if seen[u] == nil {
			seen[u] = map[string]bool{}
		}
		seen[u][sh] = true
		u.shards = append(u.shards, sh)
	}
	return units
}

// layerOf is the layer of a canonical tensor name "model.layers.N.…".
func layerOf(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return 0, false
	}
	n, _, _ := strings.Cut(rest, ".")
	l, err := strconv.Atoi(n)
	return l, err == nil
}

// moduleOf strips the parameter suffix a matrix is stored under with its scales.
func moduleOf(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return name
	}
	switch name[i+1:] {
	case "weight", "scales", "biases", "bias", "weight_scale_inv":
		return name[:i]
	}
	return name
}

// scheduler says which units can be written once a shard arrives, and which shards nothing
// needs any more once a unit is written. The plan runs it on sizes alone, the pack on the
// arriving shards, so the window the plan reports is the one the pack keeps.
type scheduler struct {
	unitsOf map[string][]*streamUnit // shard -> units reading it
	missing map[*streamUnit]int      // shards a unit still waits for
	pending map[string]int           // units reading a shard not yet written
	arrived map[string]bool
	idle    []*streamUnit // units reading no shard: ready at the first arrival
	left    int
}

func newScheduler(units []*streamUnit, shards []SourceShard) *scheduler {
	s := &scheduler{unitsOf: map[string][]*streamUnit{}, missing: map[*streamUnit]int{}, pending: map[string]int{},
		arrived: map[string]bool{}, left: len(units)}
	for _, u := range units {
		s.missing[u] = len(u.shards)
		if len(u.shards) == 0 {
			s.idle = append(s.idle, u)
		}
		for _, sh := range u.shards {
			s.unitsOf[sh] = append(s.unitsOf[sh], u)
			s.pending[sh]++
		}
	}
	return s
}

// arrive returns the units shard completes and, if no unit reads it, the shard itself as free.
func (s *scheduler) arrive(shard string) (ready []*streamUnit, free []string) {
	ready, s.idle = s.idle, nil
	s.arrived[shard] = true
	for _, u := range s.unitsOf[shard] {
		if s.missing[u]--; s.missing[u] == 0 {
			ready = append(ready, u)
		}
	}
	if s.pending[shard] == 0 {
		free = append(free, shard)
	}
	return ready, free
}

// done returns the shards that nothing needs once u is written.
func (s *scheduler) done(u *streamUnit) (free []string) {
	s.left--
	for _, sh := range u.shards {
		if s.pending[sh]--; s.pending[sh] == 0 && s.arrived[sh] {
			free = append(free, sh)
		}
	}
	return free
}

func (s *scheduler) finished() bool { return s.left == 0 }

// planStream runs the scheduler over the shards in delivery order, with lookahead shards
// downloading (one of them being delivered), and bounds the pack's size.
func (p *packer) planStream(units []*streamUnit, shards []SourceShard, lookahead int) (*StreamPlan, error) {
	if err := p.checkPresent(); err != nil {
		return nil, err
	}
	plan := &StreamPlan{Shards: len(shards)}
	size := map[string]int64{}
	for _, s := range shards {
		if !s.Kept {
			size[s.Name] = s.Size
			plan.DownloadBytes += s.Size
		}
	}
	sched := newScheduler(units, shards)
	var held int64
	onDisk := map[string]bool{}
	for i, s := range shards {
		ready, free := sched.arrive(s.Name)
		held += size[s.Name]
		onDisk[s.Name] = true
		window, count := held, len(onDisk)
		for _, next := range shards[i+1 : min(i+max(lookahead, 1), len(shards))] {
			window += size[next.Name]
			count++
		}
		if window > plan.WindowBytes {
			plan.WindowBytes, plan.WindowShards = window, count
		}
		plan.HeldBytes = max(plan.HeldBytes, held)
		for _, u := range ready {
			free = append(free, sched.done(u)...)
		}
		for _, f := range free {
			held -= size[f]
			delete(onDisk, f)
		}
	}
	if !sched.finished() {
		return nil, fmt.Errorf("internal error: %d units of output read shards the download does not bring", sched.left)
	}
	x, err := p.expertLayout()
	if err != nil {
		return nil, err
	}
	var blocks int64
	for l := range p.cfg.NumHiddenLayers {
		blocks += int64(p.cfg.LayerExperts(l))
	}
	plan.PackBytes = blocks*x.set.Stride + sideFileBytes(p.ck.dir)
	for _, spec := range p.schema() {
		n := p.denseBound(spec)
		plan.PackBytes += n
		plan.SpoolBytes = max(plan.SpoolBytes, n)
	}
	// The manifest: names, shapes and spans of each tensor, a CRC per expert block.
	plan.PackBytes += 64<<10 + int64(len(p.schema()))*1024 + blocks*16 + int64(p.cfg.NumHiddenLayers)*1024
	return plan, nil
}

// denseBound is at most the bytes model_weights.bin gives spec, alignment included, from the
// shapes and dtypes alone (encodeDense decides the same way, with the data).
func (p *packer) denseBound(spec format.TensorSpec) int64 {
	const align = 3 * format.WeightsAlign // data, scales and biases each start aligned
	elems := int64(1)
	for _, d := range spec.Shape {
		elems *= int64(d)
	}
	ck := p.ck
	fp8 := false
	var stored int64 // bytes the source stores the tensor in
	if t, ok := ck.tensors[spec.Name]; ok {
		fp8, stored = t.scale != nil, int64(len(t.data))
		base := strings.TrimSuffix(spec.Name, ".weight")
		if s, ok := ck.tensors[base+".scales"]; ok && spec.Matrix {
			b := ck.tensors[base+".biases"]
			if b == nil {
				return stored + int64(len(s.data)) + align
			}
			return stored + int64(len(s.data)) + int64(len(b.data)) + align
		}
	} else if f, ok := ck.fused[spec.Name]; ok {
		fp8, stored = f.src.scale != nil, elems*int64(elemSize(f.src.dtype))
		if f.src.dtype == format.DTypeU32 { // MLX-quantised: as stored, with its scales
			return int64(len(f.src.data))*int64(len(f.rows))/int64(max(f.src.shape[0], 1))*3 + align
		}
	} else {
		return 0 // missing: the pack stops with an error naming it
	}
	if fp8 {
		stored = elems * 4 // dequantised to float32
	}
	switch {
	case spec.NormShift && !ck.normShifted:
		return elems*4 + align
	case spec.Matrix && ck.quant == nil && len(spec.Shape) == 2:
		bits := p.denseBits
		if spec.Gate && bits < 8 {
			bits = 8
		}
		rows, cols := int64(spec.Shape[0]), int64(spec.Shape[1])
		if bits == 16 || cols%64 != 0 {
			return stored + align
		}
		return rows*cols*int64(bits)/8 + 2*2*rows*(cols/64) + align
	}
	return stored + align
}

// checkPresent finds every tensor the pack reads, and checks every layer's experts' names,
// shapes and dtypes, from the headers alone: a checkpoint that cannot be packed is refused
// before anything is downloaded, with the errors Convert gives.
func (p *packer) checkPresent() error {
	for _, spec := range p.schema() {
		if _, ok := p.ck.tensors[spec.Name]; ok {
			continue
		}
		if _, ok := p.ck.fused[spec.Name]; !ok {
			return fmt.Errorf("source checkpoint %s: tensor %s is missing (the config's %s needs it)", p.ck.dir, p.ck.origName(spec.Name), layerWhat(spec.Name))
		}
	}
	for l := range p.cfg.NumHiddenLayers {
		if !p.cfg.Dense(l) {
			if _, err := p.findExperts(l); err != nil {
				return err
			}
		}
	}
	return nil
}
