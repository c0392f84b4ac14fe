package backendtest

import (
	"testing"

	"github.com/fmoe/fmoe/runtime/backend"
)

// testReadAsync checks AsyncReader (skipped by backends without it): the
// read sees the work queued before it and none queued after it, even when
// that work overwrites what it reads; misuse is an error.
func testReadAsync(t *testing.T, be backend.Backend) {
	ar, ok := be.(backend.AsyncReader)
	if !ok {
		t.Skip("the backend has no asynchronous read")
	}
	const n = 37
	before, after := make([]float32, n), make([]float32, n)
	for i := range before {
		before[i], after[i] = float32(i)+0.5, -float32(i)
	}
	src := put(t, be, after) // overwritten by the queued copy below
	from := put(t, be, before)
	must(t, be.Copy(src, from))
	dst := make([]float32, n)
	wait, err := ar.ReadAsync(dst, src)
	must(t, err)
	if _, err := ar.ReadAsync(make([]float32, n), src); err == nil {
		t.Error("a second ReadAsync before the first's wait: no error")
	}
	must(t, be.Zero(src))
	must(t, wait())
	for i, v := range dst {
		if v != before[i] {
			t.Fatalf("value %d: got %v, want %v (the value before the later Zero)", i, v, before[i])
		}
	}
	if err := wait(); err == nil {
		t.Error("a wait called twice: no error")
	}
	for i, v := range get(t, be, src) {
		if v != 0 {
			t.Fatalf("after the read, value %d of the zeroed buffer: %v", i, v)
		}
	}
	if _, err := ar.ReadAsync(make([]float32, backend.MaxAsyncRead+1), alloc(t, be, backend.MaxAsyncRead+1)); err == nil {
		t.Errorf("ReadAsync of %d values: no error", backend.MaxAsyncRead+1)
	}
	if _, err := ar.ReadAsync(make([]float32, n+1), src); err == nil {
		t.Errorf("ReadAsync of %d values from a buffer of %d: no error", n+1, n)
	}
	// A well-formed read still works after the refused ones.
	wait, err = ar.ReadAsync(dst[:1], from)
	must(t, err)
	must(t, wait())
	if dst[0] != before[0] {
		t.Errorf("a read after refused ones: got %v, want %v", dst[0], before[0])
	}
}
