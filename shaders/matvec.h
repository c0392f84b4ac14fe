// matvec.h: y[t, r] = Σ_j w[r, j]·x[t, j], dequantising w on the fly.
//
// The fast kernel streams each row as 16-byte chunks (one uint4 per lane per
// step, so a warp reads 512 contiguous bytes) and gives every warp NR rows
// so that each x value read from shared memory feeds NR rows. x for TT
// tokens is staged in shared memory once per block, chunk by chunk with 4
// floats of padding where a chunk's float4 count is even, so that the 8
// lanes of a quarter-warp reading their chunks' float4s hit distinct banks.
//
// Affine formats use the centred group-sum form of the CPU backend: per
// chunk d = Σ (q−m)·x with m = 2^(bits−1), then acc += s·d + (b + m·s)·Σx.
// Centring matters: MLX biases sit near −m·s, so s·Σq·x + b·Σx would cancel
// two large terms whenever x has a non-zero mean. (q − m) comes exactly from
// the float whose mantissa is q: as_float(0x4B000000 | q) − (2^23 + m).
// The chunk must lie within one scale group (Group % elements-per-chunk ==
// 0) and rows must be whole chunks; the host falls back to matvec_generic
// otherwise.

#define MV_NR 2

template <int FMT, int TT>
DEVICE_FN void matvec(GLOBAL_PTR(const uint4) W, GLOBAL_PTR(const ushort) S, GLOBAL_PTR(const ushort) B,
                      GLOBAL_PTR(const float) x, GLOBAL_PTR(float) y, int R, int C, int G, int tok0,
                      SHARED_PTR(float) xs, int tid, int nthreads, int bx) {
    const int BITS = FMT == FMT_Q2 ? 2 : FMT == FMT_Q4 ? 4 : FMT == FMT_Q8 ? 8 : FMT == FMT_F32 ? 32 : 16;
    const bool QUANT = FMT <= FMT_Q8;
    const int PER = 32 / BITS;  // elements per word
    const int EPC = 4 * PER;    // elements per uint4 chunk
    const int STRIDE = EPC + ((EPC / 4) % 2 == 0 ? 4 : 0);
    const uint MASK = (1u << (BITS & 31)) - 1u;
    const float CENTRE = QUANT ? (float)(1 << ((BITS - 1) & 31)) : 0.0f;
    const float MAGIC = 8388608.0f + CENTRE;

    const int nch = C / EPC;
    const int plane = nch * STRIDE;
    for (int i = tid; i < TT * C; i += nthreads) {
        int t = i / C;
        int e = i - t * C;
        int c = e / EPC;
        xs[t * plane + c * STRIDE + (e - c * EPC)] = x[(i64)(tok0 + t) * C + e];
    }
    BARRIER();

    const int lane = tid & 31;
    const int r0 = (bx * (nthreads >> 5) + (tid >> 5)) * MV_NR;
    if (r0 >= R) return;  // whole warps leave; no barrier follows
    const int ng = QUANT ? C / G : 1;

    float acc[MV_NR][TT];
    UNROLL for (int r = 0; r < MV_NR; r++) UNROLL for (int t = 0; t < TT; t++) acc[r][t] = 0.0f;

    for (int c = lane; c < nch; c += 32) {
        uint4 wv[MV_NR];
        float sc[MV_NR];
        float bm[MV_NR];
        const int g = QUANT ? (c * EPC) / G : 0;
        UNROLL for (int r = 0; r < MV_NR; r++) {
            int row = r0 + r < R ? r0 + r : R - 1;  // a clamped row's result is dropped
            wv[r] = W[(i64)row * nch + c];
            if (QUANT) {
                float s = BF16_TO_FLOAT(S[(i64)row * ng + g]);
                sc[r] = s;
                bm[r] = BF16_TO_FLOAT(B[(i64)row * ng + g]) + CENTRE * s;
            }
        }
        float d[MV_NR][TT];
        float sx[TT];
        UNROLL for (int t = 0; t < TT; t++) {
            sx[t] = 0.0f;
            UNROLL for (int r = 0; r < MV_NR; r++) d[r][t] = 0.0f;
        }
        SHARED_PTR(const float4) xc = (SHARED_PTR(const float4))(xs + c * STRIDE);
        UNROLL for (int v = 0; v < EPC / 4; v++) {
            float4 xv[TT];
            UNROLL for (int t = 0; t < TT; t++) xv[t] = xc[t * (plane / 4) + v];
            UNROLL for (int k = 0; k < 4; k++) {
                const int e = 4 * v + k;
                const int pos = e % PER;
                UNROLL for (int t = 0; t < TT; t++) if (QUANT) sx[t] += f4_at(xv[t], k);
                UNROLL for (int r = 0; r < MV_NR; r++) {
                    uint word = u4_at(wv[r], e / PER);
                    float w;
                    if (QUANT) {
                        w = AS_FLOAT(0x4B000000u | ((word >> (BITS * pos)) & MASK)) - MAGIC;
                    } else if (FMT == FMT_BF16) {
                        w = AS_FLOAT(pos == 0 ? word << 16 : word & 0xffff0000u);
                    } else if (FMT == FMT_F16) {
                        w = HALF_TO_FLOAT(pos == 0 ? word & 0xffffu : word >> 16);
                    } else {
                        w = AS_FLOAT(word);
                    }
                    UNROLL for (int t = 0; t < TT; t++) d[r][t] = FMAF(w, f4_at(xv[t], k), d[r][t]);
                }
            }
        }
        UNROLL for (int r = 0; r < MV_NR; r++) UNROLL for (int t = 0; t < TT; t++) {
            if (QUANT) acc[r][t] += FMAF(sc[r], d[r][t], bm[r] * sx[t]);
            else acc[r][t] += d[r][t];
        }
    }
    UNROLL for (int r = 0; r < MV_NR; r++) UNROLL for (int t = 0; t < TT; t++) {
        float v = SIMD_SUM(acc[r][t]);
        if (lane == 0 && r0 + r < R) y[(i64)(tok0 + t) * R + r0 + r] = v;
    }
}

// One entry point per (format, tokens per pass). grid = (row blocks, token
// passes); block = 32·warps threads; shared = TT·(C/EPC)·STRIDE floats.
#define MATVEC_KERNEL(name, FMT, TT)                                                                   \
    KERNEL(name)(PARAM_PTR(const uint4, W, 0), PARAM_PTR(const ushort, S, 1), PARAM_PTR(const ushort, B, 2), \
                 PARAM_PTR(const float, x, 3), PARAM_PTR(float, y, 4), PARAM(int, R, 5), PARAM(int, C, 6),  \
                 PARAM(int, G, 7), PARAM(int, t0, 8) KERNEL_IDS_SHARED(float, xs)) {                   \
        DYN_SHARED(float, xs);                                                                         \
        matvec<FMT, TT>(W, S, B, x, y, R, C, G, t0 + BLOCK_ID_Y * TT, xs, THREAD_ID_X, BLOCK_DIM_X,   \
                        BLOCK_ID_X);                                                                   \
    }

MATVEC_KERNEL(matvec_q2_t1, FMT_Q2, 1)
MATVEC_KERNEL(matvec_q2_t4, FMT_Q2, 4)
MATVEC_KERNEL(matvec_q4_t1, FMT_Q4, 1)
MATVEC_KERNEL(matvec_q4_t4, FMT_Q4, 4)
MATVEC_KERNEL(matvec_q8_t1, FMT_Q8, 1)
MATVEC_KERNEL(matvec_q8_t4, FMT_Q8, 4)
MATVEC_KERNEL(matvec_bf16_t1, FMT_BF16, 1)
MATVEC_KERNEL(matvec_bf16_t4, FMT_BF16, 4)
MATVEC_KERNEL(matvec_f16_t1, FMT_F16, 1)
MATVEC_KERNEL(matvec_f16_t4, FMT_F16, 4)
MATVEC_KERNEL(matvec_f32_t1, FMT_F32, 1)
MATVEC_KERNEL(matvec_f32_t4, FMT_F32, 4)

// matvec_generic handles any shape: one warp per (row, token), element by
// element through dequant_elem. grid = (R, T), block = 32.
KERNEL(matvec_generic)(PARAM_PTR(const uint, W, 0), PARAM_PTR(const ushort, S, 1), PARAM_PTR(const ushort, B, 2),
                       PARAM_PTR(const float, x, 3), PARAM_PTR(float, y, 4), PARAM(int, R, 5), PARAM(int, C, 6),
                       PARAM(int, G, 7), PARAM(int, fmt, 8) KERNEL_IDS) {
    int r = BLOCK_ID_X, t = BLOCK_ID_Y, lane = THREAD_ID_X;
    float acc = 0.0f;
    for (int j = lane; j < C; j += 32) acc = FMAF(dequant_elem(fmt, W, S, B, r, j, C, G), x[(i64)t * C + j], acc);
    acc = SIMD_SUM(acc);
    if (lane == 0) y[(i64)t * R + r] = acc;
}

// dequant writes rows ids[i] (or row0+i without ids) of a weight to
// y[i, 0:C] as float32: the embedding lookup, and the decoding of small
// dense vectors (norm weights, conv taps). grid = (ceil(C/256), n).
KERNEL(dequant)(PARAM_PTR(const uint, W, 0), PARAM_PTR(const ushort, S, 1), PARAM_PTR(const ushort, B, 2),
                PARAM_PTR(const int, ids, 3), PARAM_PTR(float, y, 4), PARAM(int, C, 5), PARAM(int, G, 6),
                PARAM(int, fmt, 7), PARAM(int, useIds, 8), PARAM(int, row0, 9) KERNEL_IDS) {
    int j = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    int i = BLOCK_ID_Y;
    if (j >= C) return;
    i64 r = useIds ? (i64)ids[i] : (i64)row0 + i;
    y[(i64)i * C + j] = dequant_elem(fmt, W, S, B, r, j, C, G);
}
