package verify

import "hash/crc32"

// A block's CRC-32C tells us only that it changed. But CRC is linear: for two messages of equal
// length, crc(a) XOR crc(b) is the raw CRC (zero initial state, no final XOR) of a XOR b. A
// single damaged byte d at position p therefore leaves the syndrome Z^(L-1-p)(T[d]), where T is
// the CRC table and Z the state update for a zero byte. Z is invertible, so walking the syndrome
// backwards one byte at a time and looking it up among the 255 values T[d] finds every position
// a single-byte error could be at, in O(L) after the read and without a second copy of the data.
//
// A 32-bit syndrome cannot always be unique: over L bytes about L*255/2^32 other single-byte
// errors share it (0.2% for the tiny model's 36 KB blocks, ~0.4 for 397B's 7 MB blocks), so
// callers report every candidate and call the result ambiguous when they disagree.

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)
	// topIndex inverts the zero-byte step: the top byte of Z(s) is the top byte of T[s&0xff],
	// and for a CRC table those top bytes are a permutation of 0..255.
	topIndex [256]byte
	// byteOf maps T[d] back to d for the 255 non-zero byte errors.
	byteOf = map[uint32]byte{}
	// maybe filters byteOf lookups on the syndrome's low 16 bits: a bit test per byte walked
	// instead of a map lookup keeps locating a 7 MB block near 10 ms.
	maybe [1 << 16]bool
)

func init() {
	for i := 0; i < 256; i++ {
		topIndex[crcTable[i]>>24] = byte(i)
		if i > 0 {
			byteOf[crcTable[i]] = byte(i)
			maybe[crcTable[i]&0xffff] = true
		}
	}
}

// unstep is the inverse of the CRC state update for one zero byte.
func unstep(s uint32) uint32 {
	i := topIndex[s>>24]
	return (s^crcTable[i])<<8 | uint32(i)
}

// byteError is one position/value that explains a checksum mismatch as a single damaged byte.
type byteError struct {
	Offset int64 // within the checksummed range
	XOR    byte  // stored byte XOR expected byte
}

// locateByteError returns every single-byte error in a range of n bytes that turns a CRC-32C
// of want into got, at most max of them. None means the damage is more than one byte.
func locateByteError(want, got uint32, n int64, max int) []byteError {
	s := want ^ got
	if s == 0 {
		return nil
	}
	var out []byteError
	for k := int64(0); k < n; k++ {
		if maybe[s&0xffff] {
			if d, ok := byteOf[s]; ok {
				out = append(out, byteError{Offset: n - 1 - k, XOR: d})
				if len(out) >= max {
					break
				}
			}
		}
		s = unstep(s)
	}
	return out
}
