package model

// A first read of an expert block is checksummed (integrity.go). One core
// runs CRC32C over 7 MB in about a millisecond on the GPU machine, longer
// than the block's four concurrent preads from the page cache and five
// times its copy over PCIe, so each of the preads checksums its own part
// and the parts' checksums are combined: the check costs a quarter.

// crc32cCombine returns the CRC32C of a‖b from crcA = CRC32C(a), crcB =
// CRC32C(b) and len(b), by appending len(b) zero bytes to crcA in GF(2)
// (the method of zlib's crc32_combine).
func crc32cCombine(crcA, crcB uint32, lenB int64) uint32 {
	if lenB <= 0 {
		return crcA
	}
	var even, odd [32]uint32
	odd[0] = 0x82f63b78 // Castagnoli, reflected
	row := uint32(1)
	for n := 1; n < 32; n++ {
		odd[n] = row
		row <<= 1
	}
	gf2Square(&even, &odd) // two zero bits
	gf2Square(&odd, &even) // four
	for {
		gf2Square(&even, &odd) // one zero byte, then 4, 16, ...
		if lenB&1 != 0 {
			crcA = gf2Times(&even, crcA)
		}
		if lenB >>= 1; lenB == 0 {
			break
		}
		gf2Square(&odd, &even)
		if lenB&1 != 0 {
			crcA = gf2Times(&odd, crcA)
		}
		if lenB >>= 1; lenB == 0 {
			break
		}
	}
	return crcA ^ crcB
}

func gf2Times(m *[32]uint32, v uint32) uint32 {
	var s uint32
	for i := 0; v != 0; i, v = i+1, v>>1 {
		if v&1 != 0 {
			s ^= m[i]
		}
	}
	return s
}

func gf2Square(sq, m *[32]uint32) {
	for n := range sq {
		sq[n] = gf2Times(m, m[n])
	}
}
