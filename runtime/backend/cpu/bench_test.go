package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// The 397B expert projections: gate/up [1024, 4096] and down [4096, 1024],
// 4-bit group 64. b.SetBytes counts weight bytes (data + scales + biases), so
// the MB/s column is the weight streaming rate, comparable with BenchmarkCopy.
//
// Each iteration cycles through enough distinct experts (64 MiB in all) that
// the weights come from memory, not cache, as they do at run time.
func benchMatMul(b *testing.B, hot bool, opts Options, f backend.Format, R, C, T int) {
	be := New(opts)
	defer be.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	w, _ := backendtest.RandomWeight(rng, f, R, C, 64)
	size := len(w.Data) + len(w.Scales) + len(w.Biases)
	n := max(1, (64<<20)/size)
	if hot {
		n = 1
	}
	ts := make([]backend.Tensor, n)
	for i := range ts {
		c := w
		c.Data = append([]byte(nil), w.Data...)
		c.Scales = append([]byte(nil), w.Scales...)
		c.Biases = append([]byte(nil), w.Biases...)
		t, err := be.Register(c)
		if err != nil {
			b.Fatal(err)
		}
		ts[i] = t
	}
	x, _ := be.Alloc(T * C)
	y, _ := be.Alloc(T * R)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := be.MatMul(y, ts[i%n], x, T); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatVecQ4(b *testing.B) {
	for _, p := range []Path{PathAuto, PathGo} {
		for _, th := range []int{1, 2} {
			for _, s := range [][2]int{{1024, 4096}, {4096, 1024}} {
				b.Run(fmt.Sprintf("%v/threads%d/%dx%d", p, th, s[0], s[1]), func(b *testing.B) {
					benchMatMul(b, false, Options{Path: p, Threads: th}, backend.Q4, s[0], s[1], 1)
				})
			}
		}
	}
}

func BenchmarkMatVecOther(b *testing.B) {
	for _, f := range []backend.Format{backend.Q2, backend.Q8, backend.BF16} {
		b.Run(fmt.Sprintf("%v/1024x4096", f), func(b *testing.B) {
			benchMatMul(b, false, Options{}, f, 1024, 4096, 1)
		})
	}
}

// BenchmarkMatMulQ4Batch is prefill: 16 tokens through one expert.
func BenchmarkMatMulQ4Batch(b *testing.B) {
	benchMatMul(b, false, Options{}, backend.Q4, 1024, 4096, 16)
}

// BenchmarkCopy is the machine's memory bandwidth yardstick: copy() of a
// 64 MiB buffer (bytes counted once, as read, like the matvec's weights).
func BenchmarkCopy(b *testing.B) {
	src := make([]byte, 64<<20)
	dst := make([]byte, 64<<20)
	for i := range src {
		src[i] = byte(i)
	}
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(dst, src)
	}
}

// BenchmarkMatVecQ4Hot re-uses one expert, so its weights stay in cache:
// the kernel's compute rate without the memory system.
func BenchmarkMatVecQ4Hot(b *testing.B) {
	for _, p := range []Path{PathAuto, PathGo} {
		b.Run(fmt.Sprintf("%v/threads1/1024x4096", p), func(b *testing.B) {
			benchMatMul(b, true, Options{Path: p, Threads: 1}, backend.Q4, 1024, 4096, 1)
		})
	}
}
