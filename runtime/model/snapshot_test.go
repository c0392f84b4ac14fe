package model

import (
	"slices"
	"strings"
	"testing"
)

// TestSnapshotRestore: forward A, snapshot, forward B, restore, forward B
// again gives the first B's logits exactly, in the same session and in
// another one; a snapshot survives being restored and a later Reset.
func TestSnapshotRestore(t *testing.T) {
	m := open(t, "hf", 16, 0, Options{})
	a, b := []int{1, 5, 9, 13, 2, 7, 11}, []int{3, 8, 4, 300, 6}
	s, _ := m.NewSession()
	if _, err := s.Forward(a); err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if sn.Pos() != len(a) || sn.Bytes() == 0 {
		t.Fatalf("snapshot at %d of %d bytes", sn.Pos(), sn.Bytes())
	}
	want, err := s.ForwardAll(b)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := m.NewSession()
	for i, x := range []*Session{s, s, other} {
		if i == 1 {
			// A reset session, and KV caches that must grow again.
			s.Reset()
		}
		if err := x.Restore(sn); err != nil {
			t.Fatal(err)
		}
		if x.Pos() != len(a) {
			t.Fatalf("restored to position %d", x.Pos())
		}
		got, err := x.ForwardAll(b)
		if err != nil {
			t.Fatal(err)
		}
		for j := range want {
			if got[j] != want[j] {
				t.Fatalf("restore %d: logit %d is %v, want %v", i, j, got[j], want[j])
			}
		}
	}
	// Reusing the memory of an older snapshot gives the same state.
	sn2, err := s.SnapshotReuse(sn)
	if err != nil || sn2.Pos() != len(a)+len(b) {
		t.Fatalf("reused snapshot at %d: %v", sn2.Pos(), err)
	}
	next, _ := s.Forward([]int{42})
	other.Restore(sn2)
	if got, _ := other.Forward([]int{42}); !slices.Equal(got, next) {
		t.Fatal("a reused snapshot restores another state")
	}
	// An empty session's snapshot restores an empty session.
	fresh, _ := m.NewSession()
	empty, err := fresh.Snapshot()
	if err != nil || s.Restore(empty) != nil || s.Pos() != 0 {
		t.Fatalf("empty snapshot: %v, pos %d", err, s.Pos())
	}
	first, _ := fresh.Forward(a)
	if got, _ := s.Forward(a); !slices.Equal(got, first) {
		t.Fatal("restoring an empty snapshot did not empty the session")
	}
	m2 := open(t, "mlx-4bit", 0, 0, Options{})
	s2, _ := m2.NewSession()
	if err := s2.Restore(sn); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Fatalf("restore across models: %v", err)
	}
}
