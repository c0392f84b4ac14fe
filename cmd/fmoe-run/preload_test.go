package main

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fmoe/fmoe/internal/cliutil"
	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/cpu"
	"github.com/fmoe/fmoe/runtime/model"
)

// TestPreloadUsage: --preload without a GPU tier (the CPU backend, or
// --gpu-cache 0) exits 2 naming the flag and why, in every command that
// opens a model.
func TestPreloadUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"generate", "--model", "$MODEL", "--ids", "1,5", "--backend", "cpu", "--preload"}, "--preload loads experts into the GPU tier, and backend cpu keeps none"},
		{[]string{"generate", "--model", "$MODEL", "--ids", "1,5", "--gpu-cache", "0", "--preload"}, "--preload loads experts into the GPU tier, and --gpu-cache 0 turns it off"},
		{[]string{"chat", "--model", "$MODEL", "--backend", "cpu", "--preload"}, "backend cpu keeps none"},
		{[]string{"serve", "--model", "$MODEL", "--addr", freeAddr(t), "--backend", "cpu", "--preload"}, "backend cpu keeps none"},
	} {
		_, err := runApp(t, "", tc.args...)
		var msg strings.Builder
		if code := cliutil.Status(err, "fmoe-run", &msg); code != 2 || !strings.Contains(msg.String(), tc.msg) {
			t.Errorf("%q: exit %d, %q; want 2, %q", tc.args, code, msg.String(), tc.msg)
		}
	}
}

// freeAddr is a loopback address with a port free now.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tierCPU is the CPU backend claiming a GPU tier, for --preload's path on
// a machine without a GPU. With held set it keeps every expert bound (as
// a tier with room does); without, it binds uncached, as a tier on a
// device out of memory does.
type tierCPU struct {
	backend.Backend
	held map[[2]int][]backend.Weight
}

func (tierCPU) SetExpertCache(int64, int) error     { return nil }
func (tierCPU) DeviceMemory() (int64, int64, error) { return 1 << 40, 1 << 40, nil }
func (tierCPU) DropExpert(int, int) error           { return nil }
func (b tierCPU) CachedExpert(l, id int) ([]backend.Tensor, bool) {
	ws, ok := b.held[[2]int{l, id}]
	if !ok {
		return nil, false
	}
	ts, err := b.bindAll(ws)
	return ts, err == nil
}
func (b tierCPU) BindExpert(l, id int, ws []backend.Weight) ([]backend.Tensor, error) {
	if b.held != nil {
		// ws is the reader's, valid during the call: a tier keeps its own.
		b.held[[2]int{l, id}] = slices.Clone(ws)
	}
	return b.bindAll(ws)
}

func (b tierCPU) bindAll(ws []backend.Weight) ([]backend.Tensor, error) {
	var out []backend.Tensor
	for _, w := range ws {
		t, err := b.Bind(w)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// TestPreloadMessage: --preload draws its bar and says how many experts
// it loaded of how many, in how long, and, when the tier holds fewer,
// that the rest is read on first use.
func TestPreloadMessage(t *testing.T) {
	dir, err := tinyPack()
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^preload: (\d+) of 128 experts \([0-9.]+ MiB\) in the GPU tier in [0-9.]+s(; --gpu-cache holds no more, the other (\d+) are read on first use)?\n$`)
	for _, budget := range []int64{model.GPUCacheAuto, 1 << 20} {
		be := tierCPU{Backend: cpu.New(cpu.Options{}), held: map[[2]int][]backend.Weight{}}
		m, err := model.Open(dir, model.Options{Backend: be, GPUCache: budget})
		if err != nil {
			t.Fatal(err)
		}
		var msg, bar bytes.Buffer
		err = preload(m, nil, &msg, &bar)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := msg.String()
		f := line.FindStringSubmatch(got)
		if f == nil {
			t.Fatalf("budget %d: %q", budget, got)
		}
		n, _ := strconv.Atoi(f[1])
		rest, _ := strconv.Atoi(f[3])
		if budget == model.GPUCacheAuto && (n != 128 || f[2] != "") || budget > 0 && (n == 0 || n >= 128 || rest != 128-n) {
			t.Errorf("budget %d: %q", budget, got)
		}
		if !strings.Contains(bar.String(), "preloading experts") || !strings.Contains(bar.String(), fmt.Sprintf("(%d/%d", n, n)) {
			t.Errorf("budget %d: the bar drawn: %q", budget, bar.String())
		}
	}
}

// TestPreloadDeviceShort: a tier that binds every expert uncached (its
// device out of memory before its budget) is reported as holding none of
// them, with the reason, not as holding all.
func TestPreloadDeviceShort(t *testing.T) {
	dir, err := tinyPack()
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(dir, model.Options{Backend: tierCPU{Backend: cpu.New(cpu.Options{})}, GPUCache: model.GPUCacheAuto})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var msg, bar bytes.Buffer
	if err := preload(m, nil, &msg, &bar); err != nil {
		t.Fatal(err)
	}
	if want := "preload: 0 of 128 experts (0.0 MiB)"; !strings.HasPrefix(msg.String(), want) ||
		!strings.Contains(msg.String(), "the device ran out of memory before --gpu-cache's budget did (128 experts the budget allowed were not kept): the other 128 are read on first use") {
		t.Errorf("got %q", msg.String())
	}
}
