package gpu

import (
	"slices"
	"testing"
)

// TestScatterGroups: every source row lands in its destination's group
// once, groups in ascending destination and each in ascending source row
// (scatter_add's order of addition), rows nothing adds into have none.
func TestScatterGroups(t *testing.T) {
	rows := []int{3, 0, 3, 5, 0, 3, 5}
	order, starts, drow := scatterGroups(rows, 7)
	if want := []int{0, 3, 5}; !slices.Equal(drow, want) {
		t.Fatalf("destination rows %v, want %v", drow, want)
	}
	if want := []int{0, 2, 5, 7}; !slices.Equal(starts, want) {
		t.Fatalf("starts %v, want %v", starts, want)
	}
	if want := []int{1, 4, 0, 2, 5, 3, 6}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}
