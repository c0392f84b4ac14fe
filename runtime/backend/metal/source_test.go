package metal

import (
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/shaders"
)

var defineRE = regexp.MustCompile(`(?m)^\s*#\s*define\s+([A-Za-z_]\w*)`)

// TestPreludesDefineSameDialect: the bodies can only compile the same on
// both APIs if both preludes define every name of the dialect.
func TestPreludesDefineSameDialect(t *testing.T) {
	names := func(src string) []string {
		var n []string
		for _, m := range defineRE.FindAllStringSubmatch(src, -1) {
			n = append(n, m[1])
		}
		slices.Sort(n)
		return slices.Compact(n)
	}
	cu, mt := names(shaders.PreludeCUDA()), names(shaders.PreludeMetal())
	if len(cu) < 20 {
		t.Fatalf("found only %d #defines in prelude_cuda.h: %v", len(cu), cu)
	}
	for _, n := range cu {
		if !slices.Contains(mt, n) {
			t.Errorf("prelude_cuda.h defines %s, prelude_metal.h does not", n)
		}
	}
	for _, n := range mt {
		if !slices.Contains(cu, n) {
			t.Errorf("prelude_metal.h defines %s, prelude_cuda.h does not", n)
		}
	}
	for _, p := range []struct{ name, src string }{{"cuda", shaders.PreludeCUDA()}, {"metal", shaders.PreludeMetal()}} {
		if !regexp.MustCompile(`typedef\s+[\w ]+\s+i64;`).MatchString(p.src) {
			t.Errorf("prelude_%s.h does not typedef i64", p.name)
		}
	}
}

// signature is one kernel entry point after macro expansion.
type signature struct {
	name  string
	slots []int // [[buffer(n)]] indices in parameter order (Metal)
	nargs int   // parameters before the thread ids
}

var (
	cudaKernelRE  = regexp.MustCompile(`extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(`)
	metalKernelRE = regexp.MustCompile(`\bkernel\s+void\s+(\w+)\s*\(`)
	slotRE        = regexp.MustCompile(`\[\[buffer\((\d+)\)\]\]`)
)

// preprocess expands src with the C++ preprocessor, <metal_stdlib> being
// empty, so the output shows each API's real entry-point declarations.
func preprocess(t *testing.T, src string) string {
	t.Helper()
	cc := needCXX(t)
	dir := t.TempDir()
	writeFile(t, dir, "metal_stdlib", "")
	in := writeFile(t, dir, "tu.h", src)
	out, err := runCmd(t, dir, cc, "-E", "-P", "-x", "c++", "-std=c++17", "-I", dir, in)
	if err != nil {
		t.Fatalf("%s -E: %v\n%s", cc, err, out)
	}
	return out
}

func entryPoints(t *testing.T, expanded string, re *regexp.Regexp) map[string]signature {
	t.Helper()
	eps := map[string]signature{}
	for _, m := range re.FindAllStringSubmatchIndex(expanded, -1) {
		name := expanded[m[2]:m[3]]
		// The parameter list runs to the matching parenthesis.
		depth, end := 0, m[1]-1
		for i := m[1] - 1; i < len(expanded); i++ {
			if expanded[i] == '(' {
				depth++
			} else if expanded[i] == ')' {
				if depth--; depth == 0 {
					end = i
					break
				}
			}
		}
		params := expanded[m[1]:end]
		sig := signature{name: name}
		for _, s := range slotRE.FindAllStringSubmatch(params, -1) {
			n, _ := strconv.Atoi(s[1])
			sig.slots = append(sig.slots, n)
		}
		sig.nargs = strings.Count(params, ",") + 1
		if _, dup := eps[name]; dup {
			t.Errorf("entry point %s declared twice", name)
		}
		eps[name] = sig
	}
	return eps
}

// TestSameKernelsBothAPIs expands both translation units and checks that
// every CUDA entry point has a Metal one and vice versa (they come from
// the same KERNEL lines, but a prelude macro that swallowed or duplicated
// one would show here), and that each Metal entry point's buffer indices
// are 0, 1, 2, … in parameter order, which the host's argument lists
// assume. The batched matvecs of batch_cuda.h are CUDA's alone
// (shaders.CUDAShared leaves them out).
func TestSameKernelsBothAPIs(t *testing.T) {
	cu := entryPoints(t, preprocess(t, shaders.CUDAShared()), cudaKernelRE)
	mt := entryPoints(t, preprocess(t, metalSource()), metalKernelRE)
	if len(cu) < 20 {
		t.Fatalf("found only %d CUDA entry points", len(cu))
	}
	for n := range cu {
		if _, ok := mt[n]; !ok {
			t.Errorf("CUDA exports %s, the Metal build has no such entry point", n)
		}
	}
	for n, sig := range mt {
		if _, ok := cu[n]; !ok {
			t.Errorf("Metal entry point %s is not a CUDA kernel", n)
		}
		for i, s := range sig.slots {
			if s != i {
				t.Errorf("%s: parameter %d is [[buffer(%d)]], want %d", n, i, s, i)
			}
		}
		// Metal parameters = buffer slots + 4 thread ids (+1 threadgroup
		// memory); CUDA's = the buffer slots (+0).
		extra := sig.nargs - len(sig.slots)
		if extra != 4 && extra != 5 {
			t.Errorf("%s: %d parameters, %d buffer slots: want 4 thread-id parameters (+1 threadgroup)", n, sig.nargs, len(sig.slots))
		}
		if c := cu[n]; c.nargs != len(sig.slots) {
			t.Errorf("%s: CUDA takes %d parameters, Metal binds %d buffer slots", n, c.nargs, len(sig.slots))
		}
	}
	t.Logf("%d entry points in both builds", len(mt))
}

// TestMetalSourceParses parses the Metal build of every kernel as C++17
// against shaders/mock (g++ and clang++ where present), in the Metal branch
// and in the simulator's (FMOE_MOCK) branch; with clang also with Metal's
// address spaces as clang address spaces.
func TestMetalSourceParses(t *testing.T) {
	ccs := cxx()
	if len(ccs) == 0 {
		t.Skip("no C++ compiler (g++ or clang++) on PATH: cannot parse the Metal build against shaders/mock")
	}
	mock := filepath.Join(repoRoot(t), "shaders", "mock")
	dir := t.TempDir()
	src := writeFile(t, dir, "kernels.metal", metalForMock())
	for _, cc := range ccs {
		variants := [][]string{nil, {"-DFMOE_MOCK"}}
		if cc == "clang++" {
			variants = append(variants, []string{"-DFMOE_MOCK", "-DFMOE_MOCK_ADDRESS_SPACES"})
		}
		for _, v := range variants {
			name := strings.TrimSpace(cc + " " + strings.Join(v, " "))
			t.Run(name, func(t *testing.T) {
				out, err := parse(t, cc, mock, src, v...)
				if err != nil {
					t.Fatalf("%s: %v\n%s", name, err, out)
				}
				if strings.Contains(out, "warning") {
					t.Errorf("%s warns:\n%s", name, out)
				}
			})
		}
	}
}

func parse(t *testing.T, cc, mock, src string, defs ...string) (string, error) {
	args := []string{"-fsyntax-only", "-std=c++17", "-x", "c++", "-Wall", "-Wextra", "-Wno-unused-parameter",
		"-Wno-unknown-pragmas", "-I", mock}
	if cc == "clang++" {
		args = append(args, "-Wno-unknown-attributes")
	} else {
		args = append(args, "-Wno-attributes")
	}
	args = append(append(args, defs...), src)
	return runCmd(t, filepath.Dir(src), cc, args...)
}

// TestMockRejects shows the parse is not vacuous: code Metal rejects fails
// against the mock too.
func TestMockRejects(t *testing.T) {
	needCXX(t)
	mock := filepath.Join(repoRoot(t), "shaders", "mock")
	cases := []struct {
		name, cc, body string
		defs           []string
	}{
		// Metal has no double: the float-only builtins must not take one.
		{"double math", "", "float f(double x) { return EXPF(x); }", nil},
		{"CUDA intrinsic", "", "float f(float x) { return __shfl_xor_sync(0xffffffffu, x, 1); }", nil},
		{"unknown builtin", "", "float f(float x) { return SIMD_SUM(x) + simd_prefix_bogus(x); }", nil},
		// A threadgroup pointer passed where a device pointer is expected.
		{"address space", "clang++", "DEVICE_FN float g(GLOBAL_PTR(const float) p) { return p[0]; }\n" +
			"KERNEL(k)(PARAM_PTR(float, y, 0) KERNEL_IDS) { SHARED(float, s, 32); y[0] = g(s); }",
			[]string{"-DFMOE_MOCK", "-DFMOE_MOCK_ADDRESS_SPACES"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cc := cxx()[0]
			if c.cc != "" {
				if !slices.Contains(cxx(), c.cc) {
					t.Skipf("needs %s", c.cc)
				}
				cc = c.cc
			}
			src := writeFile(t, t.TempDir(), "bad.metal", shaders.PreludeMetal()+"\n"+c.body+"\n")
			if out, err := parse(t, cc, mock, src, c.defs...); err == nil {
				t.Errorf("%s accepted %q:\n%s", cc, c.body, out)
			}
		})
	}
}

func TestMetalSourceHasNoCUDA(t *testing.T) {
	// The bodies are shared; a CUDA-only construct in one would reach the
	// Metal compiler. (The preludes are the only per-API text.)
	comment := regexp.MustCompile(`//[^\n]*`)
	for i, b := range shaders.Bodies() {
		b = comment.ReplaceAllString(b, "")
		for _, bad := range []string{"__global__", "__device__", "__shared__", "threadIdx", "blockIdx", "__syncthreads",
			"__shfl", "expf(", "sqrtf(", "double"} {
			if strings.Contains(b, bad) {
				t.Errorf("body %d uses %q, which Metal does not have; use the dialect's macro", i, bad)
			}
		}
	}
}

// TestThreadIdsOnlyInKernels: Metal delivers thread ids as kernel
// parameters ([[thread_position_in_threadgroup]] …), so a DEVICE_FN helper
// cannot read THREAD_ID_X and friends the way CUDA's can; the kernel must
// pass them in.
func TestThreadIdsOnlyInKernels(t *testing.T) {
	ids := regexp.MustCompile(`\b(THREAD_ID_X|BLOCK_ID_X|BLOCK_ID_Y|BLOCK_DIM_X|GRID_DIM_X)\b`)
	comment := regexp.MustCompile(`//[^\n]*`)
	names := []string{"common.h", "matvec.h", "norm.h", "attention.h", "recurrent.h", "elementwise.h"}
	for i, body := range shaders.Bodies() {
		body = comment.ReplaceAllString(body, "")
		// Split into top-level items at DEVICE_FN, KERNEL( and #define.
		starts := regexp.MustCompile(`(?m)^(?:template\s*<[^>]*>\s*)?(DEVICE_FN|KERNEL\(|#define)`).FindAllStringSubmatchIndex(body, -1)
		for j, st := range starts {
			end := len(body)
			if j+1 < len(starts) {
				end = starts[j+1][0]
			}
			if body[st[2]:st[3]] != "DEVICE_FN" {
				continue
			}
			item := body[st[0]:end]
			if m := ids.FindString(item); m != "" {
				line := 1 + strings.Count(body[:st[0]+strings.Index(item, m)], "\n")
				name := "body"
				if i < len(names) {
					name = names[i]
				}
				t.Errorf("%s:%d: %s is used in a DEVICE_FN helper; Metal has thread ids only as kernel parameters, so the KERNEL must pass it in as an argument", name, line, m)
			}
		}
	}
}
