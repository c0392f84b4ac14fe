package metal

import (
	"encoding/binary"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestSimulatorBarriers tests the simulator itself: it must tell a
// divergent barrier or SIMD reduction from a uniform one by its source
// site, whatever code the compiler makes of it (g++ -O1 turns one barrier
// of matvec into several call sites), so with every C++ compiler present,
// at -O1 (the conformance build) and -O2.
func TestSimulatorBarriers(t *testing.T) {
	ccs := cxx()
	if len(ccs) == 0 {
		t.Skip("no C++ compiler (g++ or clang++) on PATH: cannot build the kernel simulator")
	}
	body, err := os.ReadFile("testdata/simcheck.h")
	if err != nil {
		t.Fatal(err)
	}
	src := mockTU(string(body))
	for _, cc := range ccs {
		for _, opt := range []string{"-O1", "-O2"} {
			t.Run(cc+opt, func(t *testing.T) {
				t.Parallel()
				d := startSim(t, buildSimWith(t, cc, opt, src))
				defer d.close()
				checkSimBarriers(t, d)
			})
		}
	}
}

func checkSimBarriers(t *testing.T, d *simDevice) {
	const n = 64
	y, _ := d.newBuffer(4 * n)
	run := func(k string, shared int, args ...arg) error {
		d.dispatch(k, 1, 1, n, shared, append([]arg{{buf: y}}, args...))
		return d.wait()
	}
	uniform := func() {
		t.Helper()
		const rounds = 3
		if err := run("sim_uniform", 4*32, arg{kind: 'i', bits: rounds}); err != nil {
			t.Fatalf("uniform kernel: %v", err)
		}
		got := make([]byte, 4*n)
		d.download(y, 0, got)
		want := float32(0)
		for r := 0; r < rounds; r++ {
			for i := 0; i < n; i++ {
				want += float32(i + r)
			}
		}
		want += n + 31 // the uniform branch's Σ 1, the SIMD max of the lane
		for i := 0; i < n; i++ {
			if v := math.Float32frombits(binary.LittleEndian.Uint32(got[4*i:])); v != want {
				t.Fatalf("uniform kernel: y[%d] = %v, want %v", i, v, want)
			}
		}
	}
	uniform()
	site := `simcheck\.h:(\d+)`
	for _, c := range []struct {
		kernel string
		want   *regexp.Regexp // the report, with the two sites where it names them
	}{
		{"sim_split", regexp.MustCompile(`different barriers.*thread 0 at ` + site + `, thread 16 at ` + site)},
		{"sim_split_line", regexp.MustCompile(`different barriers.*thread 0 at ` + site + `, thread 32 at ` + site)},
		{"sim_loop", regexp.MustCompile(`different barriers.*thread 0 at ` + site + `, thread 1 at ` + site)},
		{"sim_loop_exit", regexp.MustCompile(`1 threads wait at a barrier that 63 threads that already returned`)},
		{"sim_simd_split", regexp.MustCompile(`different SIMD reductions.*lane 0 at ` + site + `, lane 8 at ` + site)},
	} {
		err := run(c.kernel, 0)
		if err == nil {
			t.Errorf("%s: divergent kernel ran without an error", c.kernel)
			continue
		}
		m := c.want.FindStringSubmatch(err.Error())
		if m == nil {
			t.Errorf("%s: got %q, want it to match %s", c.kernel, err, c.want)
			continue
		}
		if len(m) == 3 && m[1] == m[2] && c.kernel != "sim_split_line" { // that one has both on one line
			t.Errorf("%s: %q names the same line twice", c.kernel, err)
		}
		if !strings.HasPrefix(err.Error(), "simulated GPU: "+c.kernel+": ") {
			t.Errorf("%s: %q does not name the kernel", c.kernel, err)
		}
	}
	uniform() // an error is reported once; the simulator still runs
}
