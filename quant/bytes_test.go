package quant

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestDecodeEncodeFloats(t *testing.T) {
	vals := []float32{0, 1, -2.5, 3.140625, 65504, 1e-3, float32(math.Inf(-1))}
	for _, dt := range []string{"BF16", "F16", "F32"} {
		size, err := ElemSize(dt)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, size*len(vals))
		if err := EncodeFloats(dt, vals, buf); err != nil {
			t.Fatal(err)
		}
		// Byte layout is little-endian per element.
		for i, v := range vals {
			var want []byte
			switch dt {
			case "BF16":
				want = binary.LittleEndian.AppendUint16(nil, F32ToBF16(v))
			case "F16":
				want = binary.LittleEndian.AppendUint16(nil, F32ToF16(v))
			case "F32":
				want = binary.LittleEndian.AppendUint32(nil, math.Float32bits(v))
			}
			if got := buf[i*size : (i+1)*size]; !bytes.Equal(got, want) {
				t.Errorf("%s: element %d encoded % x, want % x", dt, i, got, want)
			}
		}
		back := make([]float32, len(vals))
		if err := DecodeFloats(dt, buf, back); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			want := v
			switch dt {
			case "BF16":
				want = BF16ToF32(F32ToBF16(v))
			case "F16":
				want = F16ToF32(F32ToF16(v))
			}
			if back[i] != want {
				t.Errorf("%s: element %d decoded %g, want %g", dt, i, back[i], want)
			}
		}
	}
}

func TestCodecErrors(t *testing.T) {
	f := make([]float32, 3)
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"bad dtype decode", DecodeFloats("F64", make([]byte, 24), f), "unsupported float dtype"},
		{"bad dtype encode", EncodeFloats("bf16", f, make([]byte, 6)), "unsupported float dtype"},
		{"short decode", DecodeFloats("BF16", make([]byte, 5), f), "5 bytes for 3 elements"},
		{"long encode", EncodeFloats("F32", f, make([]byte, 13)), "13 bytes for 3 elements"},
		{"u16", DecodeUint16s(make([]byte, 3), make([]uint16, 2)), "3 bytes"},
		{"u16 enc", EncodeUint16s(make([]uint16, 2), make([]byte, 3)), "3 bytes"},
		{"u32", DecodeUint32s(make([]byte, 7), make([]uint32, 2)), "7 bytes"},
		{"u32 enc", EncodeUint32s(make([]uint32, 2), make([]byte, 9)), "9 bytes"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}
}

func TestUintCodecs(t *testing.T) {
	u16 := []uint16{0, 1, 0xbeef, 0xffff}
	b := make([]byte, 8)
	if err := EncodeUint16s(u16, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, []byte{0, 0, 1, 0, 0xef, 0xbe, 0xff, 0xff}) {
		t.Errorf("uint16 bytes % x", b)
	}
	back16 := make([]uint16, 4)
	if err := DecodeUint16s(b, back16); err != nil || !slices.Equal(back16, u16) {
		t.Errorf("uint16 round trip %v %v", back16, err)
	}
	u32 := []uint32{0x89abcdef, 1}
	b = make([]byte, 8)
	if err := EncodeUint32s(u32, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, []byte{0xef, 0xcd, 0xab, 0x89, 1, 0, 0, 0}) {
		t.Errorf("uint32 bytes % x", b)
	}
	back32 := make([]uint32, 2)
	if err := DecodeUint32s(b, back32); err != nil || !slices.Equal(back32, u32) {
		t.Errorf("uint32 round trip %v %v", back32, err)
	}
}
