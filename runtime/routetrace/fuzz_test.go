package routetrace

import (
	"reflect"
	"testing"
)

// FuzzDecode: no input makes Decode panic or hang (a trace file comes from
// the user: fmoe-run --route-trace, --expert-load), and a trace it accepts
// survives Encode and Decode unchanged.
func FuzzDecode(f *testing.F) {
	ids, w := []uint16{0, 1, 2, 3}, []float32{0.5, 0.5, 0.25, 0.75}
	f.Add(encodeRaw(`{"layers":1,"experts":8,"k":2,"tokens":2,"model":"recorded","seed":0}`, ids, w))
	f.Add(encodeRaw(`{"layers":2,"experts":4,"k":1,"tokens":2}`, ids, w))
	f.Add(encodeRaw(`{"layers":4611686018427387904,"experts":8,"k":4,"tokens":2}`, nil, nil))
	f.Add([]byte(Magic + "\x02\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := Decode(b)
		if err != nil {
			return
		}
		again, err := tr.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded trace: %v", err)
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("Decode of a re-encoded trace: %v", err)
		}
		if !reflect.DeepEqual(back, tr) {
			t.Fatalf("re-encoding changed the trace: %+v vs %+v", back.Header, tr.Header)
		}
	})
}
