package mmap

import (
	"bytes"
	"testing"
)

// TestZero: a stand-in reads as its head and then zeros, for its full size, and refuses a head
// longer than itself.
func TestZero(t *testing.T) {
	head := []byte("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}        ")
	const size = 3<<20 + 5
	f, err := Zero("shard", size, head)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Data) != size || !bytes.Equal(f.Data[:len(head)], head) {
		t.Fatalf("stand-in of %d bytes, head %q", len(f.Data), f.Data[:len(head)])
	}
	for i, b := range f.Data[len(head):] {
		if b != 0 {
			t.Fatalf("byte %d is %#x, want 0", len(head)+i, b)
		}
	}
	if err := f.Overwrite(2<<20, []byte{1}); err != nil || f.Data[2<<20] != 1 {
		t.Errorf("Overwrite: %v", err)
	}
	if _, err := Zero("shard", 4, head); err == nil {
		t.Error("a head longer than the stand-in was accepted")
	}
	if z, err := Zero("empty", 0, nil); err != nil || len(z.Data) != 0 {
		t.Errorf("empty stand-in: %v", err)
	}
}
