// common.h: helpers shared by the kernel bodies (shared dialect).

// Weight formats, numbered as backend.Format.
#define FMT_Q2 1
#define FMT_Q4 2
#define FMT_Q8 3
#define FMT_BF16 4
#define FMT_F16 5
#define FMT_F32 6

DEVICE_FN float sigmoid_(float x) { return 1.0f / (1.0f + EXPF(-x)); }
DEVICE_FN float silu_(float x) { return x / (1.0f + EXPF(-x)); }
// swiglu_ is SwiGLU's element, written once for every kernel that forms it
// (the swiglu kernel, the integer matvec's staging), so they agree bit for bit.
DEVICE_FN float swiglu_(float g, float u) { return silu_(g) * u; }

DEVICE_FN uint u4_at(uint4 v, int j) { return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; }
DEVICE_FN float f4_at(float4 v, int j) { return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; }

// block_sum reduces v over the whole threadgroup (a multiple of 32 threads,
// at most 1024); every thread gets the same value, summed in the same order.
DEVICE_FN float block_sum(float v, SHARED_PTR(float) red, int tid, int nthreads) {
    v = SIMD_SUM(v);
    if ((tid & 31) == 0) red[tid >> 5] = v;
    BARRIER();
    float s = 0.0f;
    for (int i = 0; i < (nthreads >> 5); i++) s += red[i];
    BARRIER();
    return s;
}

// dequant_elem is element (r, j) of a [*, C] weight in any format, in the
// plain form w = q*scale + bias: the definition the fast kernels must match.
DEVICE_FN float dequant_elem(int fmt, GLOBAL_PTR(const uint) W, GLOBAL_PTR(const ushort) S,
                             GLOBAL_PTR(const ushort) B, i64 r, int j, int C, int G) {
    if (fmt <= FMT_Q8) {
        int bits = fmt == FMT_Q2 ? 2 : fmt == FMT_Q4 ? 4 : 8;
        int per = 32 / bits;
        uint word = W[r * (C / per) + j / per];
        uint q = (word >> (bits * (j % per))) & ((1u << bits) - 1u);
        i64 g = r * (C / G) + j / G;
        return (float)q * BF16_TO_FLOAT(S[g]) + BF16_TO_FLOAT(B[g]);
    }
    if (fmt == FMT_F32) return AS_FLOAT(W[r * C + j]);
    i64 e = r * C + j;
    uint h = (W[e >> 1] >> (16 * (int)(e & 1))) & 0xffffu;
    return fmt == FMT_BF16 ? BF16_TO_FLOAT(h) : HALF_TO_FLOAT(h);
}
