package gpu

import "github.com/fmoe/fmoe/runtime/backend"

func (o *Ops[A]) SwiGLU(y, g, u backend.Buffer) error {
	var p [3]A
	var n [3]int
	if err := o.buffers(p[:], n[:], []string{"swiglu y", "swiglu gate", "swiglu up"}, y, g, u); err != nil {
		return err
	}
	if err := o.chk.SwiGLU(n[0], n[1], n[2]); err != nil {
		return err
	}
	return o.dev.Launch(o.elementwise(kSwiGLU, n[0]).ptr(p[0]).ptr(p[1]).ptr(p[2]).i32(n[0]))
}

func (o *Ops[A]) Gather(dst, src backend.Buffer, rows []int, n int) error {
	var p [2]A
	var ln [2]int
	if err := o.buffers(p[:], ln[:], []string{"gather dst", "gather src"}, dst, src); err != nil {
		return err
	}
	if err := o.chk.Gather(rows, n, ln[0], ln[1]); err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	st, err := o.dev.Stage(int32Bytes(rows))
	if err != nil {
		return err
	}
	l := o.elementwise(kGather, len(rows)*n)
	return o.dev.Launch(l.ptr(p[0]).ptr(p[1]).ptr(st[0]).i32(n).i32(len(rows) * n))
}

func (o *Ops[A]) ScatterAdd(dst, src backend.Buffer, rows []int, weights []float32, n int) error {
	var p [2]A
	var ln [2]int
	if err := o.buffers(p[:], ln[:], []string{"scatter dst", "scatter src"}, dst, src); err != nil {
		return err
	}
	if err := o.chk.ScatterAdd(rows, weights, n, ln[0], ln[1]); err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	order, starts, drow := scatterGroups(rows, ln[0]/n)
	st, err := o.dev.Stage(int32Bytes(order), int32Bytes(starts), int32Bytes(drow), floatBytes(weights))
	if err != nil {
		return err
	}
	l := o.elementwise(kScatterAdd, len(drow)*n)
	return o.dev.Launch(l.ptr(p[0]).ptr(p[1]).ptr(st[0]).ptr(st[1]).ptr(st[2]).ptr(st[3]).i32(n).i32(len(drow) * n))
}

// scatterGroups groups the source rows i by destination rows[i] (< D),
// each group's i ascending, for scatter_add: group g is order[starts[g]:
// starts[g+1]] and adds into row drow[g]; only rows something adds into
// have a group.
func scatterGroups(rows []int, D int) (order, starts, drow []int) {
	cnt := make([]int, D+1)
	for _, d := range rows {
		cnt[d+1]++
	}
	for d := range D {
		if cnt[d+1] > 0 {
			drow = append(drow, d)
			starts = append(starts, cnt[d])
		}
		cnt[d+1] += cnt[d]
	}
	starts = append(starts, len(rows))
	order = make([]int, len(rows))
	for i, d := range rows { // ascending i within each row's group
		order[cnt[d]] = i
		cnt[d]++
	}
	return order, starts, drow
}

func (o *Ops[A]) GatedAdd(h, x, gate backend.Buffer, T int) error {
	var p [3]A
	var n [3]int
	if err := o.buffers(p[:], n[:], []string{"gated add h", "gated add x", "gated add gate"}, h, x, gate); err != nil {
		return err
	}
	if err := o.chk.GatedAdd(T, n[0], n[1], n[2]); err != nil {
		return err
	}
	l := o.elementwise(kGatedAdd, n[0])
	return o.dev.Launch(l.ptr(p[0]).ptr(p[1]).ptr(p[2]).i32(n[0] / T).i32(n[0]))
}

func (o *Ops[A]) Add(dst, src backend.Buffer) error {
	var p [2]A
	var n [2]int
	if err := o.buffers(p[:], n[:], []string{"add dst", "add src"}, dst, src); err != nil {
		return err
	}
	if err := o.chk.Add(n[0], n[1]); err != nil {
		return err
	}
	return o.dev.Launch(o.elementwise(kAdd, n[0]).ptr(p[0]).ptr(p[1]).i32(n[0]))
}

var _ backend.ArgMaxer = (*Ops[int])(nil)

// ArgMax is backend.ArgMaxer: one block (argmax_finite, elementwise.h) of
// the most threads the pipeline allows up to 1,024, lowered to a power of
// two for the kernel's tree.
func (o *Ops[A]) ArgMax(dst, x backend.Buffer) error {
	var p [2]A
	var n [2]int
	if err := o.buffers(p[:], n[:], []string{"argmax dst", "argmax x"}, dst, x); err != nil {
		return err
	}
	if err := o.chk.ArgMax(n[0], n[1]); err != nil {
		return err
	}
	th := 32
	for th*2 <= o.lim.threads(kArgMax, argMaxThreads) {
		th *= 2
	}
	return o.dev.Launch(o.launch(kArgMax, 1, 1, th, 0).ptr(p[0]).ptr(p[1]).i32(n[1]))
}

// argMaxThreads is elementwise.h's ARGMAX_T.
const argMaxThreads = 1024
