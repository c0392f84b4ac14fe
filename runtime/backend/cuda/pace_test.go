//go:build linux && cgo

package cuda

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fmoe/fmoe/runtime/backend"
	"github.com/fmoe/fmoe/runtime/backend/backendtest"
)

// TestLinkPacer: LinkIdle is true on an idle backend, false right after a
// prefetch of ~100 MB of pinned bytes is queued (~2 ms of the link, against
// microseconds for the query), and true again once PrefetchDone has waited
// for it, on the shared copy stream and on the prefetches' own; ReadReady
// becomes true for an outstanding ReadAsync (whose wait then gives the
// values written) and is an error without one.
func TestLinkPacer(t *testing.T) {
	const R, C = 8192, 8192 // 32 MiB of 4-bit data; the expert is this weight thrice
	var w backend.Weight
	for i, own := range []bool{false, true} {
		be := newOptsOrSkip(t, Options{PrefetchStream: own})
		if i == 0 { // made once there is a GPU: ~2 s of the CPU
			w, _ = backendtest.RandomWeight(rand.New(rand.NewPCG(3, 4)), backend.Q4, R, C, 64)
		}
		linkPacer(t, be, own, w)
		be.Close()
		if _, err := be.LinkIdle(); err == nil {
			t.Errorf("LinkIdle after Close: no error")
		}
	}
}

func linkPacer(t *testing.T, be *Backend, own bool, w0 backend.Weight) {
	idle := func(want bool, when string) {
		t.Helper()
		got, err := be.LinkIdle()
		if err != nil || got != want {
			t.Fatalf("own stream %v, %s: LinkIdle %v, %v; want %v", own, when, got, err, want)
		}
	}
	idle(true, "before any copy")
	var ws []backend.Weight
	size := 0
	for range 3 {
		w := w0
		for _, part := range []*[]byte{&w.Data, &w.Scales, &w.Biases} {
			b, err := be.HostAlloc(len(*part))
			if err != nil {
				t.Fatal(err)
			}
			defer be.HostFree(b)
			copy(b, *part)
			*part = b
			size += len(b)
		}
		ws = append(ws, w)
	}
	if err := be.SetExpertCache(int64(2*size), 1); err != nil {
		t.Fatal(err)
	}
	tok, ok, err := be.PrefetchExpert(0, 0, ws)
	if err != nil || !ok {
		t.Fatalf("prefetch: %v, %v", ok, err)
	}
	idle(false, "with a prefetch just queued")
	if done, err := be.PrefetchDone(tok, true); err != nil || !done {
		t.Fatalf("PrefetchDone: %v, %v", done, err)
	}
	idle(true, "after the prefetch's copy")

	if _, err := be.ReadReady(); err == nil {
		t.Fatalf("ReadReady without an outstanding read: no error")
	}
	want := []float32{1, -2, 3.5, 7}
	buf, err := be.Alloc(len(want))
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Write(buf, want); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(want))
	wait, err := be.ReadAsync(got, buf)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); ; {
		ready, err := be.ReadReady()
		if err != nil {
			t.Fatal(err)
		}
		if ready {
			break
		}
		if time.Now().After(end) {
			t.Fatal("ReadReady: still false after 5 s")
		}
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ReadAsync after ReadReady: value %d is %v, wrote %v", i, got[i], want[i])
		}
	}
	if _, err := be.ReadReady(); err == nil {
		t.Fatalf("ReadReady after the read's wait: no error")
	}
	if err := be.Free(buf); err != nil {
		t.Fatal(err)
	}
}
