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
// two large terms whenever x has a non-zero mean. (q − m) is decoded
// exactly in two instructions (see mv_decode).
// The chunk must lie within one scale group (Group % elements-per-chunk ==
// 0) and rows must be whole chunks; the host falls back to matvec_generic
// otherwise.

// MV_NR and MV_U change what each warp holds in registers, never the order
// of a row's sums: lane l always takes chunks l, l+32, l+64, ... in turn,
// one d per chunk, so every setting computes the same bits. The CUDA
// backend passes both as -D options (its defaults and FMOE_CUDA_MV live in
// runtime/backend/cuda/mvconfig.go); Metal takes these.
#ifndef MV_NR
#define MV_NR 2  // rows per warp: each x value read from shared memory feeds MV_NR rows
#endif
#ifndef MV_U
#define MV_U 4  // chunks per lane loaded together: that many 16-byte loads in flight per row
#endif
// MV_DEPTH 2: while a lane computes one batch of chunks, the next batch
// (its row group's next chunks, or the next row group's first) is already
// loading into a second set of registers, so a warp's loads and FMAs
// overlap instead of alternating; 1: load, then compute. The same sums in
// the same order either way.
#ifndef MV_DEPTH
#define MV_DEPTH 1
#endif

// mv_load fetches batch c0 (chunks c0 + 32u) of the warp's rows; a chunk
// past the row end or a row past R is clamped to a valid address and its
// result dropped.
template <int FMT>
DEVICE_FN void mv_load(GLOBAL_PTR(const uint4) W, GLOBAL_PTR(const ushort) S, GLOBAL_PTR(const ushort) B,
                       int R, int nch, int ng, int G, int r0, int c0, THREAD uint4 (&wv)[MV_U][MV_NR],
                       THREAD float (&sc)[MV_U][MV_NR], THREAD float (&bm)[MV_U][MV_NR]) {
    const bool QUANT = FMT <= FMT_Q8;
    const int EPC = FMT == FMT_Q2 ? 64 : FMT == FMT_Q4 ? 32 : FMT == FMT_Q8 ? 16 : FMT == FMT_F32 ? 4 : 8;
    const float CENTRE = FMT == FMT_Q2 ? 2.0f : FMT == FMT_Q4 ? 8.0f : 128.0f;
    UNROLL for (int u = 0; u < MV_U; u++) {
        int c = c0 + 32 * u < nch ? c0 + 32 * u : nch - 1;
        UNROLL for (int r = 0; r < MV_NR; r++) {
            int row = r0 + r < R ? r0 + r : R - 1;
            wv[u][r] = W[(i64)row * nch + c];
            if (QUANT) {
                int g = (c * EPC) / G;
                float s = BF16_TO_FLOAT(S[(i64)row * ng + g]);
                sc[u][r] = s;
                bm[u][r] = BF16_TO_FLOAT(B[(i64)row * ng + g]) + CENTRE * s;
            }
        }
    }
}

// mv_decode is element pos of word (0 ≤ pos < 32/bits) as (q − m) for the
// affine formats, or the value for the dense ones. For affine fields the
// low and high 16 bits are handled apart (hi = word >> 16, one shift per
// word) so that a field at bit sh < 16 can be OR-ed under the mantissa of
// 2^23 with no shift: as_float(0x4B000000 | field·2^sh) = 2^23 + q·2^sh,
// and one FMA by 2^−sh minus (2^(23−sh) + m) gives q − m exactly.
template <int FMT>
DEVICE_FN float mv_decode(uint word, uint hi, int pos) {
    const int BITS = FMT == FMT_Q2 ? 2 : FMT == FMT_Q4 ? 4 : FMT == FMT_Q8 ? 8 : FMT == FMT_F32 ? 32 : 16;
    if (FMT <= FMT_Q8) {
        const int PER = 32 / BITS;
        const uint MASK = (1u << (BITS & 31)) - 1u;
        const float CENTRE = (float)(1 << ((BITS - 1) & 31));
        int p = pos < PER / 2 ? pos : pos - PER / 2;
        uint part = pos < PER / 2 ? word : hi;
        int sh = BITS * p;
        float inv = 1.0f / (float)(1 << sh);
        return FMAF(AS_FLOAT(0x4B000000u | (part & (MASK << sh))), inv, -(8388608.0f * inv + CENTRE));
    }
    if (FMT == FMT_BF16) return AS_FLOAT(pos == 0 ? word << 16 : word & 0xffff0000u);
    if (FMT == FMT_F16) return HALF_TO_FLOAT(pos == 0 ? word & 0xffffu : word >> 16);
    return AS_FLOAT(word);
}

template <int FMT, int TT>
DEVICE_FN void matvec(GLOBAL_PTR(const uint4) W, GLOBAL_PTR(const ushort) S, GLOBAL_PTR(const ushort) B,
                      GLOBAL_PTR(const float) x, GLOBAL_PTR(float) y, int R, int C, int G, int tok0,
                      SHARED_PTR(float) xs, int tid, int nthreads, int bx, int nblocks) {
    const int BITS = FMT == FMT_Q2 ? 2 : FMT == FMT_Q4 ? 4 : FMT == FMT_Q8 ? 8 : FMT == FMT_F32 ? 32 : 16;
    const bool QUANT = FMT <= FMT_Q8;
    const int PER = 32 / BITS;  // elements per word
    const int EPC = 4 * PER;    // elements per uint4 chunk
    const int STRIDE = EPC + ((EPC / 4) % 2 == 0 ? 4 : 0);

    const int nch = C / EPC;
    const int plane = nch * STRIDE;
    const int lane = tid & 31;
    const int nw = nthreads >> 5;
    // Blocks are persistent: warp w of block bx takes row groups bx·nw+w,
    // then every gridDim·nw-th, so x is staged once per block, not once per
    // 2·nw rows.
    const int rstep = nblocks * nw * MV_NR;
    int r0 = (bx * nw + (tid >> 5)) * MV_NR;
    const int ng = QUANT ? C / G : 1;

    // The first weight loads go out before x is staged, so the two
    // memory latencies overlap.
    uint4 wv[MV_U][MV_NR];
    float sc[MV_U][MV_NR];
    float bm[MV_U][MV_NR];
    if (r0 < R) mv_load<FMT>(W, S, B, R, nch, ng, G, r0, lane, wv, sc, bm);

    // Stage x; after it, for the affine formats, Σx of each chunk (per
    // token) in xsum, so the row loop does not redo it per row.
    SHARED_PTR(float) xsum = xs + TT * plane;
    UNROLL for (int t = 0; t < TT; t++) {
        for (int e = tid; e < C; e += nthreads) {
            int c = e / EPC;  // EPC is a power of two: a shift
            xs[t * plane + c * STRIDE + (e - c * EPC)] = x[(i64)(tok0 + t) * C + e];
        }
    }
    BARRIER();
    if (QUANT) {
        UNROLL for (int t = 0; t < TT; t++) {
            for (int c = tid; c < nch; c += nthreads) {
                SHARED_PTR(const float4) p = (SHARED_PTR(const float4))(xs + t * plane + c * STRIDE);
                float s = 0.0f;
                UNROLL for (int v = 0; v < EPC / 4; v++) {
                    float4 q = p[v];
                    s += (q.x + q.y) + (q.z + q.w);
                }
                xsum[t * nch + c] = s;
            }
        }
        BARRIER();
    }

    bool loaded = true;  // the first batch of the first row group is in wv
#if MV_DEPTH > 1
    uint4 nwv[MV_U][MV_NR];
    float nsc[MV_U][MV_NR];
    float nbm[MV_U][MV_NR];
#endif
    for (; r0 < R; r0 += rstep) {  // whole warps; no barrier follows
        float acc[MV_NR][TT];
        UNROLL for (int r = 0; r < MV_NR; r++) UNROLL for (int t = 0; t < TT; t++) acc[r][t] = 0.0f;
        for (int c0 = lane; c0 < nch; c0 += 32 * MV_U) {
#if MV_DEPTH > 1
            // wv holds this batch (loaded before the staging, or moved in
            // from nwv at the end of the previous one); the next goes out now.
            int nc0 = c0 + 32 * MV_U, nr0 = r0;
            if (nc0 >= nch) {
                nc0 = lane;
                nr0 = r0 + rstep;
            }
            const bool more = nr0 < R;
            if (more) mv_load<FMT>(W, S, B, R, nch, ng, G, nr0, nc0, nwv, nsc, nbm);
            (void)loaded;
#else
            if (!loaded) mv_load<FMT>(W, S, B, R, nch, ng, G, r0, c0, wv, sc, bm);
            loaded = false;
#endif
            UNROLL for (int u = 0; u < MV_U; u++) {
                const int c = c0 + 32 * u;
                if (c >= nch) break;
                float d[MV_NR][TT];
                UNROLL for (int r = 0; r < MV_NR; r++) UNROLL for (int t = 0; t < TT; t++) d[r][t] = 0.0f;
                SHARED_PTR(const float4) xc = (SHARED_PTR(const float4))(xs + c * STRIDE);
                UNROLL for (int v = 0; v < EPC / 4; v++) {
                    float4 xv[TT];
                    UNROLL for (int t = 0; t < TT; t++) xv[t] = xc[t * (plane / 4) + v];
                    UNROLL for (int k = 0; k < 4; k++) {
                        const int e = 4 * v + k;
                        UNROLL for (int r = 0; r < MV_NR; r++) {
                            uint word = u4_at(wv[u][r], e / PER);
                            float w = mv_decode<FMT>(word, word >> 16, e % PER);
                            UNROLL for (int t = 0; t < TT; t++) d[r][t] = FMAF(w, f4_at(xv[t], k), d[r][t]);
                        }
                    }
                }
                UNROLL for (int r = 0; r < MV_NR; r++) UNROLL for (int t = 0; t < TT; t++) {
                    if (QUANT) acc[r][t] += FMAF(sc[u][r], d[r][t], bm[u][r] * xsum[t * nch + c]);
                    else acc[r][t] += d[r][t];
                }
            }
#if MV_DEPTH > 1
            if (more) {
                UNROLL for (int u = 0; u < MV_U; u++) UNROLL for (int r = 0; r < MV_NR; r++) {
                    wv[u][r] = nwv[u][r];
                    sc[u][r] = nsc[u][r];
                    bm[u][r] = nbm[u][r];
                }
            }
#endif
        }
        UNROLL for (int r = 0; r < MV_NR; r++) UNROLL for (int t = 0; t < TT; t++) {
            float v = SIMD_SUM(acc[r][t]);
            if (lane == 0 && r0 + r < R) y[(i64)(tok0 + t) * R + r0 + r] = v;
        }
    }
}

// One entry point per (format, tokens per pass). grid = (row blocks, token
// passes); block = 32·warps threads; shared = TT·(C/EPC)·(STRIDE+1) floats
// (x, then the chunk sums).
#define MATVEC_KERNEL(name, FMT, TT)                                                                   \
    MV_KERNEL(name)(PARAM_PTR(const uint4, W, 0), PARAM_PTR(const ushort, S, 1), PARAM_PTR(const ushort, B, 2), \
                 PARAM_PTR(const float, x, 3), PARAM_PTR(float, y, 4), PARAM(int, R, 5), PARAM(int, C, 6),  \
                 PARAM(int, G, 7), PARAM(int, t0, 8) KERNEL_IDS_SHARED(float, xs)) {                   \
        DYN_SHARED(float, xs);                                                                         \
        GRID_WAIT();                                                                                   \
        matvec<FMT, TT>(W, S, B, x, y, R, C, G, t0 + BLOCK_ID_Y * TT, xs, THREAD_ID_X, BLOCK_DIM_X,   \
                        BLOCK_ID_X, GRID_DIM_X);                                                       \
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
    GRID_WAIT();
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
    GRID_WAIT();
    int j = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    int i = BLOCK_ID_Y;
    if (j >= C) return;
    i64 r = useIds ? (i64)ids[i] : (i64)row0 + i;
    y[(i64)i * C + j] = dequant_elem(fmt, W, S, B, r, j, C, G);
}
