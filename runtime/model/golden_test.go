package model

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fmoe/fmoe/pack"
)

const tiny = "../../testdata/tiny/"

// packs holds the tiny fixtures packed once per test binary: packing is
// the slow part of these tests and the packs are read-only.
var packs struct {
	once map[string]*sync.Once
	dir  map[string]string
	err  map[string]error
	mu   sync.Mutex
	root string
}

func TestMain(m *testing.M) {
	root, err := os.MkdirTemp("", "fmoe-model-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	packs.root = root
	// Tests compare configurations bit for bit on the host path; the
	// device-routed path (within 2 ulps of its weights) is on only where a
	// test or benchmark turns it on (devroute_test.go).
	devOff = true
	code := m.Run()
	os.RemoveAll(root)
	os.Exit(code)
}

// packed returns the tiny checkpoint src ("hf", "hf-vl", "mlx-4bit") packed
// with the given expert bits (0: as the source is).
func packed(t testing.TB, src string, bits int) string {
	t.Helper()
	// src may be a path ("../arch/glm4_moe/hf"): the key names a directory.
	key := strings.NewReplacer("/", "_", ".", "_").Replace(fmt.Sprintf("%s-%d", src, bits))
	packs.mu.Lock()
	if packs.once == nil {
		packs.once, packs.dir, packs.err = map[string]*sync.Once{}, map[string]string{}, map[string]error{}
	}
	o := packs.once[key]
	if o == nil {
		o = new(sync.Once)
		packs.once[key] = o
	}
	packs.mu.Unlock()
	o.Do(func() {
		out := filepath.Join(packs.root, key)
		_, err := pack.Convert(context.Background(), pack.Options{In: tiny + src, Out: out, Bits: bits})
		packs.mu.Lock()
		packs.dir[key], packs.err[key] = out, err
		packs.mu.Unlock()
	})
	packs.mu.Lock()
	defer packs.mu.Unlock()
	if err := packs.err[key]; err != nil {
		t.Fatalf("pack %s: %v", key, err)
	}
	return packs.dir[key]
}

// golden is one safetensors file of testdata/tiny/golden.
type golden struct {
	f32 map[string][]float32
	i64 map[string][]int
	dim map[string][]int
}

func readGolden(t testing.TB, name string) *golden {
	t.Helper()
	b, err := os.ReadFile(tiny + "golden/" + name + ".safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 {
		t.Fatalf("%s: short file", name)
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		t.Fatalf("%s: header length %d", name, n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	data := b[8+n:]
	g := &golden{f32: map[string][]float32{}, i64: map[string][]int{}, dim: map[string][]int{}}
	for k, raw := range hdr {
		if k == "__metadata__" {
			continue
		}
		var e struct {
			DType   string `json:"dtype"`
			Shape   []int  `json:"shape"`
			Offsets [2]int `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		d := data[e.Offsets[0]:e.Offsets[1]]
		g.dim[k] = e.Shape
		switch e.DType {
		case "F32":
			v := make([]float32, len(d)/4)
			for i := range v {
				v[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
			}
			g.f32[k] = v
		case "I64":
			v := make([]int, len(d)/8)
			for i := range v {
				v[i] = int(int64(binary.LittleEndian.Uint64(d[8*i:])))
			}
			g.i64[k] = v
		default:
			t.Fatalf("%s: tensor %s has dtype %s", name, k, e.DType)
		}
	}
	return g
}

// rel is ‖got − want‖/‖want‖.
func rel(got, want []float32) float64 {
	var num, den float64
	for i, w := range want {
		d := float64(got[i]) - float64(w)
		num += d * d
		den += float64(w) * float64(w)
	}
	return math.Sqrt(num / den)
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
