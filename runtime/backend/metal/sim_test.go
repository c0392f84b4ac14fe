package metal

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The simulator device: the Backend's real dispatch code drives the Metal
// build of the kernels, executed by shaders/mock/metalsim.cc on the CPU.

var (
	simMu     sync.Mutex
	simBuilds = map[string]*simBuild{}
	simDir    string
)

type simBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if simDir != "" {
		os.RemoveAll(simDir)
	}
	os.Exit(code)
}

// buildSim compiles the simulator of the repository's kernels with C++
// compiler cc, once per test process.
func buildSim(t testing.TB, cc string) string {
	t.Helper()
	return buildSimWith(t, cc, "-O1", metalForMock())
}

// buildSimWith compiles the simulator of the Metal translation unit src
// with compiler cc at optimisation level opt, once per process for each
// (cc, opt, src).
func buildSimWith(t testing.TB, cc, opt, src string) string {
	t.Helper()
	key := cc + "\x00" + opt + "\x00" + src
	simMu.Lock()
	if simDir == "" {
		d, err := os.MkdirTemp("", "metalsim")
		if err != nil {
			simMu.Unlock()
			t.Fatal(err)
		}
		simDir = d
	}
	b := simBuilds[key]
	if b == nil {
		b = &simBuild{dir: filepath.Join(simDir, strconv.Itoa(len(simBuilds)))}
		simBuilds[key] = b
	}
	simMu.Unlock()
	b.once.Do(func() { b.bin, b.err = compileSim(repoRoot(t), b.dir, cc, opt, src) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

func compileSim(root, dir, cc, opt, src string) (string, error) {
	var inc strings.Builder
	for _, m := range regexp.MustCompile(`(?m)^\s*kernel\s+void\s+(\w+)\s*\(`).FindAllStringSubmatch(expandKernels(src), -1) {
		fmt.Fprintf(&inc, "FM_KERNEL(%s)\n", m[1])
	}
	if inc.Len() == 0 {
		return "", fmt.Errorf("no kernels found in the Metal source")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "kernels.metal"), []byte(src), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "kernels.inc"), []byte(inc.String()), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "metalsim")
	args := []string{"-std=c++17", opt, "-g0", "-DFMOE_MOCK", "-I", dir, "-I", filepath.Join(root, "shaders", "mock"),
		"-o", bin, filepath.Join(root, "shaders", "mock", "metalsim.cc")}
	if cc == "clang++" {
		args = append(args, "-Wno-unknown-attributes")
	} else {
		args = append(args, "-Wno-attributes")
	}
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the simulator with %s %s: %v\n%s", cc, opt, err, out)
	}
	return bin, nil
}

// expandKernels lists entry points without a preprocessor: the KERNEL lines
// and the MATVEC_KERNEL instantiations, as `kernel void name(`.
func expandKernels(src string) string {
	var b strings.Builder
	for _, m := range regexp.MustCompile(`(?m)^(?:KERNEL|MATVEC_KERNEL)\((\w+)`).FindAllStringSubmatch(src, -1) {
		fmt.Fprintf(&b, "kernel void %s(\n", m[1])
	}
	return b.String()
}

type simDevice struct {
	cmd     *exec.Cmd
	in      *bufio.Writer
	out     *bufio.Reader
	next    uint64
	threads int    // maxThreads for every kernel
	err     string // host-side dispatch error, reported at wait
	names   map[string]bool
	maxTG   int
}

func newSimDevice(t testing.TB, cc string, env ...string) *simDevice {
	return startSim(t, buildSim(t, cc), env...)
}

// startSim starts a simulator binary as a device.
func startSim(t testing.TB, bin string, env ...string) *simDevice {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &simDevice{cmd: cmd, in: bufio.NewWriterSize(w, 1<<16), out: bufio.NewReader(r), threads: 1024,
		names: map[string]bool{}, maxTG: 32 << 10}
	d.in.WriteByte('N')
	d.in.Flush()
	var n uint32
	binary.Read(d.out, binary.LittleEndian, &n)
	list := make([]byte, n)
	io.ReadFull(d.out, list)
	for _, k := range strings.Fields(string(list)) {
		d.names[k] = true
	}
	return d
}

func (d *simDevice) put(v ...any) {
	for _, x := range v {
		binary.Write(d.in, binary.LittleEndian, x)
	}
}

func (d *simDevice) describe() string          { return "CPU simulator" }
func (d *simDevice) maxThreadgroupMemory() int { return d.maxTG }
func (d *simDevice) maxThreads(k string) int {
	if !d.names[k] {
		return 0
	}
	return d.threads
}

func (d *simDevice) newBuffer(n int) (bufID, error) {
	d.next++
	d.in.WriteByte('A')
	d.put(d.next, uint64(n))
	return bufID(d.next), nil
}

func (d *simDevice) newBufferNoCopy([]byte) (bufID, bool, error) { return 0, false, nil }

func (d *simDevice) release(b bufID) {
	d.in.WriteByte('F')
	d.put(uint64(b))
}

func (d *simDevice) upload(b bufID, off int, src []byte) {
	d.in.WriteByte('W')
	d.put(uint64(b), uint64(off), uint64(len(src)))
	d.in.Write(src)
}

func (d *simDevice) download(b bufID, off int, dst []byte) {
	d.in.WriteByte('R')
	d.put(uint64(b), uint64(off), uint64(len(dst)))
	d.in.Flush()
	io.ReadFull(d.out, dst)
}

func (d *simDevice) dispatch(k string, gx, gy, threads, shared int, args []arg) {
	// What Metal would refuse before running anything.
	switch {
	case !d.names[k]:
		d.fail("no pipeline %s", k)
	case threads%32 != 0 || threads > d.maxThreads(k):
		d.fail("%s: %d threads per threadgroup (want a multiple of 32, at most %d)", k, threads, d.maxThreads(k))
	case shared > d.maxTG || shared%16 != 0:
		d.fail("%s: threadgroup memory %d bytes (want a multiple of 16, at most %d)", k, shared, d.maxTG)
	}
	d.in.WriteByte('D')
	d.put(uint32(len(k)))
	d.in.WriteString(k)
	d.put(uint32(gx), uint32(gy), uint32(threads), uint32(shared), uint32(len(args)))
	for _, a := range args {
		if a.kind == 0 {
			if a.off%4 != 0 {
				d.fail("%s: buffer offset %d is not 4-byte aligned", k, a.off)
			}
			d.in.WriteByte('b')
			d.put(uint64(a.buf), uint64(a.off))
		} else {
			d.in.WriteByte(a.kind)
			d.put(a.bits)
		}
	}
}

func (d *simDevice) fail(format string, v ...any) {
	if d.err == "" {
		d.err = fmt.Sprintf(format, v...)
	}
}

func (d *simDevice) copyBuf(dst bufID, doff int, src bufID, soff, n int) {
	d.in.WriteByte('C')
	d.put(uint64(dst), uint64(doff), uint64(src), uint64(soff), uint64(n))
}

func (d *simDevice) zeroBuf(b bufID, off, n int) {
	d.in.WriteByte('Z')
	d.put(uint64(b), uint64(off), uint64(n))
}

func (d *simDevice) commit() {}

func (d *simDevice) wait() error {
	d.in.WriteByte('S')
	d.in.Flush()
	var n uint32
	if err := binary.Read(d.out, binary.LittleEndian, &n); err != nil {
		return fmt.Errorf("simulator: %v", err)
	}
	msg := make([]byte, n)
	io.ReadFull(d.out, msg)
	host := d.err
	d.err = ""
	if host != "" {
		return fmt.Errorf("simulated Metal: %s", host)
	}
	if n > 0 {
		return fmt.Errorf("simulated GPU: %s", msg)
	}
	return nil
}

func (d *simDevice) close() error {
	d.in.Flush()
	d.cmd.Process.Kill()
	d.cmd.Wait()
	return nil
}
