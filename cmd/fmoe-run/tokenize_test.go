package main

import (
	"slices"
	"testing"
)

func TestParseIDs(t *testing.T) {
	ids, err := parseIDs("[1, 2,3]\n4 5", 10)
	if err != nil || !slices.Equal(ids, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("%v %v", ids, err)
	}
	for _, bad := range []string{"1,x", "10", "-1"} {
		if _, err := parseIDs(bad, 10); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
