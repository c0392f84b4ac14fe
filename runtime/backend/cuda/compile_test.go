//go:build linux && cgo

package cuda

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/fmoe/fmoe/shaders"
)

// TestKernelsCompile compiles the kernel source with whatever NVRTC is
// installed, for sm_90 (the H200 the project measures on), with no driver
// or device: a syntax or type error in a kernel fails here, on a machine
// without a GPU (Debian's libnvrtc11.2 will do), rather than at the first
// New on one. .ci/run installs Debian's NVRTC and sets FMOE_NVRTC_REQUIRE=1,
// so that in CI a missing NVRTC fails instead of skipping. Besides the
// default matvec settings (with the integer matvec's SMX kernels, which New adds by default) it compiles
// the sweep grid's extremes (fewest and most registers per warp), in
// parallel as BenchmarkMatVecSweep does.
func TestKernelsCompile(t *testing.T) {
	needNVRTC(t)
	cfgs := []MatvecConfig{{Rows: DefaultMatvecRows, Unroll: DefaultMatvecUnroll}, {Rows: 1, Unroll: 2}, {Rows: DefaultBatchMatvecRows, Unroll: DefaultBatchMatvecUnroll},
		{Rows: DefaultMatvecRows, Unroll: DefaultMatvecUnroll, Depth: 2}, {Rows: DefaultMatvecRows, Unroll: DefaultMatvecUnroll, MinBlocks: 4},
		{Rows: DefaultMatvecRows, Unroll: DefaultMatvecUnroll}} // the last with the PIPE matvecs (opt-in)
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defs := c.defines()
			names := append(mmaNames[:], batchNames[:]...)
			// batchKernels.load's own (route_cuda.h's, moe_combine1).
			names = append(names, "moe_combine1", "route_topk", "experts_jobs", "moe_combine_idx", "read_mapped", "write_mapped")
			switch i {
			case 0:
				// The integer matvec's SMX kernels (cp.async), on by default.
				defs = append(defs, "-DFMOE_MMV_SMX=1")
			case len(cfgs) - 1:
				// And its PIPE kernels (Options.MMVPipe).
				defs = append(defs, "-DFMOE_MMV_SMX=1", "-DFMOE_MMV_PIPE=1")
				for _, f := range []string{"q2", "q4", "q8"} {
					names = append(names, "mmvp_"+f, "mmvp_batch_"+f)
				}
			}
			im, _, err := compile(shaders.CUDA(), "90", defs)
			if err != nil {
				t.Errorf("sm_90 %v: %v", defs, err)
				return
			}
			t.Logf("sm_90 %v: %s, %d bytes", defs, im.desc, len(im.data))
			// The entry points the backend looks up by name at New are there.
			for _, name := range names {
				if !bytes.Contains(im.data, []byte(name)) {
					t.Errorf("sm_90 %v: no entry point %s", defs, name)
				}
			}
		}()
	}
	wg.Wait()
}

// TestImageKeyCoversOptions: modules compiled with other matvec settings
// must not be taken from the cache for these.
func TestImageKeyCoversOptions(t *testing.T) {
	a := MatvecConfig{Rows: 2, Unroll: 4}.defines()
	b := MatvecConfig{Rows: 4, Unroll: 2}.defines()
	ka, kb := imageKey("src", "90", "13.0", a), imageKey("src", "90", "13.0", b)
	if ka == kb || ka == imageKey("src", "90", "13.0", nil) {
		t.Errorf("keys %s (%v), %s (%v) collide", ka, a, kb, b)
	}
	if ka != imageKey("src", "90", "13.0", a) {
		t.Error("key not deterministic")
	}
}

// TestMMVRegisters compiles the integer matvecs for sm_90 with NVRTC (no
// GPU) and reads each one's registers from the cubin: the PIPE variant
// (Options.MMVPipe) must fit two blocks of 16 warps an SM (64 registers a
// thread), its reason to exist. FMOE_NVRTC_LOG=1 prints ptxas's report
// beside it (registers, spills: a few bytes for Q4, none for Q8 with
// NVRTC 11.8).
func TestMMVRegisters(t *testing.T) {
	defs := []string{"-DFMOE_MMV_SMX=1", "-DFMOE_MMV_PIPE=1"}
	if os.Getenv("FMOE_NVRTC_LOG") == "1" {
		defs = append(defs, "--ptxas-options=-v")
	}
	regs, _ := compiledInfo(t, defs...)
	for _, f := range []string{"q2", "q4", "q8"} {
		for _, k := range []string{"mmvs_", "mmvs_batch_", "mmvp_", "mmvp_batch_"} {
			n, ok := regs[k+f]
			if !ok {
				t.Fatalf("no register count for %s in the cubin", k+f)
			}
			t.Logf("%s: %d registers", k+f, n)
			if strings.HasPrefix(k, "mmvp") && n > 64 {
				t.Errorf("%s: %d registers, want at most 64 (two blocks of 16 warps an SM)", k+f, n)
			}
		}
	}
}

// TestKernelsNoStack compiles the default module for sm_90 and checks
// that no kernel has a stack frame (ptxas puts there the arrays it cannot
// keep in registers, and spills): a frame in a kernel of the decode path
// is memory traffic on its critical path that its source does not show.
// route_topk had one of 128 bytes (its candidates' tree, indexed through a
// loop the unroller did not take); the Q2 integer matvecs spill a few
// bytes under NVRTC 11.8, allowed here.
func TestKernelsNoStack(t *testing.T) {
	regs, frames := compiledInfo(t, "-DFMOE_MMV_SMX=1")
	if len(regs) < 50 || regs["route_topk"] == 0 {
		t.Fatalf("%d kernels' registers read from the cubin (route_topk %d): the reader is wrong", len(regs), regs["route_topk"])
	}
	allowed := map[string]int{"mmv_q2": 16, "mmv_batch_q2": 16, "mmvs_q2": 16, "mmvs_batch_q2": 16}
	for name, n := range frames {
		if n > allowed[name] {
			t.Errorf("%s: a stack frame of %d bytes (allowed %d)", name, n, allowed[name])
		}
	}
}

// compiledInfo compiles the kernels for sm_90 with the default matvec
// settings and defs (skipping t without NVRTC) and returns cubinInfo's.
func compiledInfo(t *testing.T, defs ...string) (regs, frames map[string]int) {
	t.Helper()
	needNVRTC(t)
	im, _, err := compile(shaders.CUDA(), "90", append(MatvecConfig{Rows: DefaultMatvecRows, Unroll: DefaultMatvecUnroll}.defines(), defs...))
	if err != nil {
		t.Fatal(err)
	}
	regs, frames, err = cubinInfo(im.data)
	if err != nil {
		t.Fatal(err)
	}
	return regs, frames
}

// cubinInfo reads each kernel's register count and stack frame from a
// cubin: the EIATTR_REGCOUNT (0x2f) and EIATTR_FRAME_SIZE (0x11) entries
// (format EIFMT_SVAL: a symbol index and the value) of its .nv.info
// section, named through .symtab. The cubin's ELF header carries a CUDA
// version where debug/elf wants EV_CURRENT, so the few fields needed are
// read by hand.
func cubinInfo(b []byte) (regs, frames map[string]int, err error) {
	le := binary.LittleEndian
	if len(b) < 0x40 || string(b[1:4]) != "ELF" || b[4] != 2 {
		return nil, nil, errors.New("not a 64-bit ELF")
	}
	shoff, shsize, shnum, shstr := int(le.Uint64(b[0x28:])), int(le.Uint16(b[0x3A:])), int(le.Uint16(b[0x3C:])), int(le.Uint16(b[0x3E:]))
	if shoff+shnum*shsize > len(b) || shstr >= shnum {
		return nil, nil, errors.New("section headers out of range")
	}
	type section struct {
		name      string
		data      []byte
		link, off int // the section linked to; the name's offset in the names
	}
	cstr := func(t []byte, o int) string {
		if o < 0 || o >= len(t) {
			return ""
		}
		n := bytes.IndexByte(t[o:], 0)
		if n < 0 {
			return ""
		}
		return string(t[o : o+n])
	}
	secs := make([]section, shnum)
	for i := range secs {
		h := b[shoff+i*shsize:]
		off, size := int(le.Uint64(h[0x18:])), int(le.Uint64(h[0x20:]))
		if off < 0 || size < 0 || off+size > len(b) {
			return nil, nil, fmt.Errorf("section %d out of range", i)
		}
		secs[i] = section{data: b[off : off+size], link: int(le.Uint32(h[0x28:])), off: int(le.Uint32(h))}
	}
	for i := range secs {
		secs[i].name = cstr(secs[shstr].data, secs[i].off)
	}
	var symtab, symstr []byte
	for _, s := range secs {
		if s.name == ".symtab" && s.link < shnum {
			symtab, symstr = s.data, secs[s.link].data
		}
	}
	regs, frames = map[string]int{}, map[string]int{}
	for _, s := range secs {
		if s.name != ".nv.info" {
			continue
		}
		for p := 0; p+4 <= len(s.data); {
			format, attr := s.data[p], s.data[p+1]
			n := 0
			if format == 0x04 { // EIFMT_SVAL: a 16-bit size, then the value
				n = int(le.Uint16(s.data[p+2:]))
			}
			if format == 0x04 && (attr == 0x2f || attr == 0x11) && n == 8 && p+12 <= len(s.data) {
				sym := int(le.Uint32(s.data[p+4:]))
				if (sym+1)*24 <= len(symtab) {
					name, v := cstr(symstr, int(le.Uint32(symtab[sym*24:]))), int(le.Uint32(s.data[p+8:]))
					if attr == 0x2f {
						regs[name] = v
					} else if v > 0 {
						frames[name] = v
					}
				}
			}
			p += 4 + n
		}
	}
	return regs, frames, nil
}

// needNVRTC skips t where NVRTC cannot be loaded, and fails it there in
// CI (FMOE_NVRTC_REQUIRE, set by .ci/run, which installs NVRTC).
func needNVRTC(t *testing.T) {
	t.Helper()
	if err := loadNVRTC(); err != nil {
		if os.Getenv("FMOE_NVRTC_REQUIRE") != "" {
			t.Fatalf("FMOE_NVRTC_REQUIRE is set: %v", err)
		}
		t.Skipf("no NVRTC: %v", err)
	}
}
