package main

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
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

// tierCPU is the CPU backend claiming a GPU tier that caches nothing, for
// --preload's path on a machine without a GPU.
type tierCPU struct{ backend.Backend }

func (tierCPU) SetExpertCache(int64, int) error                { return nil }
func (tierCPU) DeviceMemory() (int64, int64, error)            { return 1 << 40, 1 << 40, nil }
func (tierCPU) CachedExpert(int, int) ([]backend.Tensor, bool) { return nil, false }
func (tierCPU) DropExpert(int, int) error                      { return nil }
func (b tierCPU) BindExpert(_, _ int, ws []backend.Weight) ([]backend.Tensor, error) {
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
		m, err := model.Open(dir, model.Options{Backend: tierCPU{cpu.New(cpu.Options{})}, GPUCache: budget})
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
