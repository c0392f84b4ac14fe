// mma_cuda.h (CUDA only, sm_80 and later): the many-row matmul of prefill
// on tensor cores, y[T, R] = x[T, C]·Wᵀ for W in Q2/Q4/Q8 (MLX affine,
// group G) or BF16, with mma.sync.m16n8k16 (bf16 inputs, f32 accumulate).
//
// It computes what matvec.h computes, to float32 accuracy, not bf16's:
//  - the weights enter the MMA exactly: for the affine formats as the
//    centred integer q − m (m = 2^(bits−1)), at most 8 significant bits,
//    which bf16 holds; the scale and bias are applied per group in f32 as
//    in matvec.h, acc += s·Σ(q−m)x + (b + m·s)·Σx (centring keeps the two
//    terms from cancelling when x has a large mean). BF16 weights are bf16.
//  - x is split exactly into three bf16 pieces, x = hi + mid + lo (8 + 8 +
//    8 significant bits cover float32's 24; each remainder is exact by
//    Sterbenz's lemma), and each piece is multiplied in its own MMA.
// So every product is exact and the only rounding is the f32 accumulation,
// as in the CUDA-core kernel: the result meets the same tolerance against
// float64 (backendtest's tolMatMul). The price is three MMAs where
// one bf16 product would do; at prefill sizes the tensor cores have that
// to spare (see docs/benchmarks.md, "Prefill on tensor cores").
//
// Tiling: a block of 8 warps computes a 64 × 128 tile of y (64 tokens, 128
// weight rows), each warp 32 × 32 (2 × 4 MMA tiles), over K in steps of
// 32 columns staged in shared memory: x split into its pieces, W decoded to
// bf16 in the tile loader. The next step's global loads are issued before
// the current step's MMAs. Split-K for few tokens: block column
// BLOCK_ID_X = split·ntiles + ntile computes columns [split·kLen,
// (split+1)·kLen) and, when there are several splits, writes its partial
// tile to part[split] for mma_reduce to sum in split order (deterministic:
// a rerun gives the same bits). kLen is a multiple of 32 and of G.

#define MMA_BM 64
#define MMA_BN 128
#define MMA_BK 32
// Shared row stride in 32-bit words: 32 bf16 + 16 of padding. Within each
// 16-column chunk the words sit in the order 0 4 1 5 2 6 3 7 (mma_pos), so
// that a fragment's two words per row come in one 64-bit shared load; the
// row shift of 24 words keeps a half-warp's loads on distinct banks.
#define MMA_LDW 24

// mma_pos is where logical word w of a shared row (16-column chunk w/8,
// word w%8 of it) sits: the order above, the tiles' shared layout.
DEVICE_FN int mma_pos(int w) { return (w & ~7) | ((w & 3) << 1) | ((w >> 2) & 1); }

DEVICE_FN uint mma_bf16_rn(float v) {
    uint u = __float_as_uint(v);
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

// mma_split3 packs pieces p of two values into one word per piece (the
// first value in the low half, the MMA fragments' order).
DEVICE_FN void mma_split3(float v0, float v1, uint (&w)[3]) {
    uint h0 = mma_bf16_rn(v0), h1 = mma_bf16_rn(v1);
    float r0 = v0 - __uint_as_float(h0 << 16), r1 = v1 - __uint_as_float(h1 << 16);
    uint m0 = mma_bf16_rn(r0), m1 = mma_bf16_rn(r1);
    r0 -= __uint_as_float(m0 << 16);
    r1 -= __uint_as_float(m1 << 16);
    w[0] = h0 | (h1 << 16);
    w[1] = m0 | (m1 << 16);
    w[2] = mma_bf16_rn(r0) | (mma_bf16_rn(r1) << 16);
}

// d += a·b for one m16n8k16 tile, fragments as PTX lays them out for
// bf16. A host build of this file (runtime/backend/cuda/testdata/mmaemu)
// defines MMA_EMULATED and brings its own, to run the kernel on the CPU.
#ifndef MMA_EMULATED
DEVICE_FN void mma_16816(float (&d)[4], uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}
#endif

// mma_wload fetches this thread's 16 weight elements of a K step: row
// (tid/2) of the tile, elements 16·(tid%2) .. +15, i.e. BITS/2 words.
template <int BITS>
DEVICE_FN void mma_wload(const uint* W, i64 off, uint (&wv)[8]) {
    if (BITS == 2) {
        wv[0] = W[off];
    } else if (BITS == 4) {
        uint2 v = *(const uint2*)(W + off);
        wv[0] = v.x, wv[1] = v.y;
    } else {
        uint4 v = *(const uint4*)(W + off);
        wv[0] = v.x, wv[1] = v.y, wv[2] = v.z, wv[3] = v.w;
        if (BITS == 16) {
            v = *(const uint4*)(W + off + 4);
            wv[4] = v.x, wv[5] = v.y, wv[6] = v.z, wv[7] = v.w;
        }
    }
}

// mma_wdecode turns the 16 elements into 8 words of bf16 pairs: q − m for
// the affine formats (exact: 2^23 + q via the mantissa, minus 2^23 + m,
// then the high half of that small integer's float32), bf16 as stored.
template <int BITS>
DEVICE_FN void mma_wdecode(const uint (&wv)[8], uint (&out)[8]) {
    if (BITS == 16) {
        UNROLL for (int i = 0; i < 8; i++) out[i] = wv[i];
        return;
    }
    const int PER = 32 / BITS;
    const uint MASK = (1u << (BITS & 31)) - 1u;
    const float BASE = 8388608.0f + (float)(1 << ((BITS - 1) & 31));
    UNROLL for (int i = 0; i < 8; i++) {
        const int e0 = 2 * i, e1 = 2 * i + 1;
        uint q0 = (wv[e0 / PER] >> (BITS * (e0 % PER))) & MASK;
        uint q1 = (wv[e1 / PER] >> (BITS * (e1 % PER))) & MASK;
        float f0 = __uint_as_float(0x4B000000u | q0) - BASE;
        float f1 = __uint_as_float(0x4B000000u | q1) - BASE;
        out[i] = __byte_perm(__float_as_uint(f0), __float_as_uint(f1), 0x7632);
    }
}

// mma_body computes the 64 × 128 tile of y at token row m0, weight row n0,
// over columns [split·kLen, (split+1)·kLen) of K (the whole of K for one
// split); part, when not null, takes the partial tile at part[split].
template <int BITS>
DEVICE_FN void mma_body(const uint* W, const ushort* S, const ushort* B, const float* x, float* y, float* part,
                        int T, int R, int C, int G, int kLen, int split, int n0, int m0) {
    const bool QUANT = BITS < 16;
    const float CENTRE = (float)(1 << ((BITS - 1) & 15));
    __shared__ __align__(16) uint As[3][MMA_BM * MMA_LDW];
    __shared__ __align__(16) uint Bs[MMA_BN * MMA_LDW];
    __shared__ float gsum[MMA_BM];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const int wm = warp >> 2, wn = warp & 3;  // warp tile: rows wm·32, cols wn·32
    const int kBeg = split * kLen, kEnd = min(C, kBeg + kLen);
    const int ng = QUANT ? C / G : 1;

    // Loader roles: x row tid/4, columns 8·(tid%4)..+7; W row tid/2,
    // elements 16·(tid%2)..+15.
    const int xr = tid >> 2, xc = (tid & 3) * 8;
    const bool xok = m0 + xr < T;
    const float* xrow = x + (i64)(xok ? m0 + xr : 0) * C + xc;
    const int wr = tid >> 1, wh = tid & 1;
    const i64 wpr = (i64)C * BITS / 32;  // words per weight row
    const uint* wrow = W + (i64)min(n0 + wr, R - 1) * wpr + wh * (BITS / 2);

    float4 xa = make_float4(0.f, 0.f, 0.f, 0.f), xb = xa;
    uint wv[8];
    if (xok) {
        xa = *(const float4*)(xrow + kBeg);
        xb = *(const float4*)(xrow + kBeg + 4);
    }
    mma_wload<BITS>(wrow, (i64)kBeg * BITS / 32, wv);

    float acc[2][4][4], pt[2][4][4];
    UNROLL for (int i = 0; i < 2; i++) UNROLL for (int j = 0; j < 4; j++) UNROLL for (int c = 0; c < 4; c++) {
        acc[i][j][c] = 0.f;
        pt[i][j][c] = 0.f;
    }

    for (int k0 = kBeg; k0 < kEnd; k0 += MMA_BK) {
        // Store the staged step: x's pieces, its row sums, W decoded.
        {
            uint p0[3], p1[3], p2[3], p3[3];
            mma_split3(xa.x, xa.y, p0);
            mma_split3(xa.z, xa.w, p1);
            mma_split3(xb.x, xb.y, p2);
            mma_split3(xb.z, xb.w, p3);
            UNROLL for (int p = 0; p < 3; p++) {
                uint* ar = &As[p][xr * MMA_LDW];
                ar[mma_pos(xc / 2)] = p0[p];
                ar[mma_pos(xc / 2 + 1)] = p1[p];
                ar[mma_pos(xc / 2 + 2)] = p2[p];
                ar[mma_pos(xc / 2 + 3)] = p3[p];
            }
            if (QUANT) {
                float s = ((xa.x + xa.y) + (xa.z + xa.w)) + ((xb.x + xb.y) + (xb.z + xb.w));
                s += __shfl_xor_sync(0xffffffffu, s, 1);
                s += __shfl_xor_sync(0xffffffffu, s, 2);
                if ((tid & 3) == 0) gsum[xr] = k0 % G == 0 ? s : gsum[xr] + s;
            }
            uint dw[8];
            mma_wdecode<BITS>(wv, dw);
            *(uint4*)&Bs[wr * MMA_LDW + wh * 8] = make_uint4(dw[0], dw[4], dw[1], dw[5]);
            *(uint4*)&Bs[wr * MMA_LDW + wh * 8 + 4] = make_uint4(dw[2], dw[6], dw[3], dw[7]);
        }
        __syncthreads();
        // Issue the next step's loads; they complete under the MMAs.
        if (k0 + MMA_BK < kEnd) {
            if (xok) {
                xa = *(const float4*)(xrow + k0 + MMA_BK);
                xb = *(const float4*)(xrow + k0 + MMA_BK + 4);
            }
            mma_wload<BITS>(wrow, (i64)(k0 + MMA_BK) * BITS / 32, wv);
        }
        UNROLL for (int ks = 0; ks < MMA_BK / 16; ks++) {
            uint bf[4][2];
            UNROLL for (int j = 0; j < 4; j++) {
                const uint2 b = *(const uint2*)&Bs[(wn * 32 + j * 8 + g) * MMA_LDW + ks * 8 + 2 * t4];
                bf[j][0] = b.x;
                bf[j][1] = b.y;
            }
            UNROLL for (int i = 0; i < 2; i++) {
                if (m0 + wm * 32 + i * 16 >= T) continue;  // warp-uniform: rows past T
                // Smallest piece first: the f32 sum then rounds least.
                UNROLL for (int p = 2; p >= 0; p--) {
                    const uint* ap = &As[p][(wm * 32 + i * 16 + g) * MMA_LDW + ks * 8 + 2 * t4];
                    const uint2 lo = *(const uint2*)ap, hi = *(const uint2*)(ap + 8 * MMA_LDW);
                    uint a0 = lo.x, a1 = hi.x, a2 = lo.y, a3 = hi.y;
                    UNROLL for (int j = 0; j < 4; j++) {
                        if (QUANT) mma_16816(pt[i][j], a0, a1, a2, a3, bf[j][0], bf[j][1]);
                        else mma_16816(acc[i][j], a0, a1, a2, a3, bf[j][0], bf[j][1]);
                    }
                }
            }
            if (QUANT && (k0 + ks * 16 + 16) % G == 0) {
                // Group end: acc += s·Σ(q−m)x + (b + m·s)·Σx, per column.
                const int grp = (k0 + ks * 16) / G;
                UNROLL for (int j = 0; j < 4; j++) UNROLL for (int cc = 0; cc < 2; cc++) {
                    const i64 n = min(n0 + wn * 32 + j * 8 + 2 * t4 + cc, R - 1);
                    const float s = BF16_TO_FLOAT(S[n * ng + grp]);
                    const float bm = BF16_TO_FLOAT(B[n * ng + grp]) + CENTRE * s;
                    UNROLL for (int i = 0; i < 2; i++) UNROLL for (int rr = 0; rr < 2; rr++) {
                        const float xs = gsum[wm * 32 + i * 16 + g + 8 * rr];
                        acc[i][j][2 * rr + cc] += FMAF(s, pt[i][j][2 * rr + cc], bm * xs);
                        pt[i][j][2 * rr + cc] = 0.f;
                    }
                }
            }
        }
        __syncthreads();
    }

    float* out = part ? part + (i64)split * T * R : y;
    UNROLL for (int i = 0; i < 2; i++) UNROLL for (int rr = 0; rr < 2; rr++) {
        const int m = m0 + wm * 32 + i * 16 + g + 8 * rr;
        if (m >= T) continue;
        UNROLL for (int j = 0; j < 4; j++) UNROLL for (int cc = 0; cc < 2; cc++) {
            const int n = n0 + wn * 32 + j * 8 + 2 * t4 + cc;
            if (n < R) out[(i64)m * R + n] = acc[i][j][2 * rr + cc];
        }
    }
}

// The entry points exist on every architecture, so that the module loads;
// below sm_80 (no bf16 mma.sync) they are empty and the host never
// launches them.
#if __CUDA_ARCH__ >= 800
#define MMA_BODY(call) call
#else
#define MMA_BODY(call)
#endif

// grid = (ntiles·splits, ceil(T/64)), block = 256; part is null with one
// split.
#define MMA_KERNEL(name, BITS)                                                                          \
    extern "C" __global__ void __launch_bounds__(256, 2)                                                 \
        name(const uint* W, const ushort* S, const ushort* B, const float* x, float* y, float* part, int T, \
             int R, int C, int G, int kLen, int ntiles) {                                                 \
        GRID_WAIT();                                                                                      \
        const int split = blockIdx.x / ntiles;                                                            \
        MMA_BODY(mma_body<BITS>(W, S, B, x, y, part, T, R, C, G, kLen, split,                             \
                                (blockIdx.x - split * ntiles) * MMA_BN, blockIdx.y * MMA_BM));            \
    }
MMA_KERNEL(mma_q2, 2)
MMA_KERNEL(mma_q4, 4)
MMA_KERNEL(mma_q8, 8)
MMA_KERNEL(mma_bf16, 16)

// The grouped matmul (MatMulBatch): one launch computes many jobs of one
// weight shape and format, each y_j[T_j, R] = x_j[T_j, C]·W_jᵀ with its
// own weight, x, y and row count, e.g. a prefill layer's routed experts,
// which one by one cost a few launches each. K is split in kLen columns
// whatever the job's rows (the host's mmaGroupedSplit of C alone) and
// mmag_reduce sums a job's partials in split order, so a job's bits are
// what its own launch (a batch of one) computes, whichever jobs share it;
// part is null with one split.
struct mma_job {
    const uint* W;
    const ushort* S;
    const ushort* B;
    const float* x;
    float* y;
    float* part;
    i64 T;
};

// grid = (ntiles·mtiles·splits, jobs), block = 256: block (nt + ntiles·(mt
// + mtiles·split), j) computes job j's tile at weight rows 128·nt, token
// rows 64·mt, over columns [split·kLen, (split+1)·kLen); mtiles covers the
// launch's largest job, and a smaller job's blocks past its rows return at
// once.
#define MMA_GROUPED_KERNEL(name, BITS)                                                                  \
    extern "C" __global__ void __launch_bounds__(256, 2)                                                 \
        name(const mma_job* jobs, int R, int C, int G, int ntiles, int mtiles, int kLen) {                \
        GRID_WAIT();                                                                                      \
        const mma_job j = jobs[blockIdx.y];                                                               \
        const int split = blockIdx.x / (ntiles * mtiles), rest = blockIdx.x - split * ntiles * mtiles;    \
        const int mt = rest / ntiles, m0 = mt * MMA_BM;                                                   \
        if (m0 >= (int)j.T) return;                                                                       \
        MMA_BODY(mma_body<BITS>(j.W, j.S, j.B, j.x, j.y, j.part, (int)j.T, R, C, G, kLen, split,          \
                                (rest - mt * ntiles) * MMA_BN, m0));                                      \
    }
MMA_GROUPED_KERNEL(mmag_q2, 2)
MMA_GROUPED_KERNEL(mmag_q4, 4)
MMA_GROUPED_KERNEL(mmag_q8, 8)
MMA_GROUPED_KERNEL(mmag_bf16, 16)

// The skinny tile: a grouped job of few tokens (a prefill expert's usual
// handful) wastes most of the 64-row tile's MMAs, and the 64 × 128 tile's
// one step of 32 columns in flight (2 KB of Q4 weights a block, two blocks
// an SM) leaves a step's loads waiting out DRAM latency alone: the 64-row
// grouped kernel read 0.32 TB/s on a 512-token prefill (docs/gpu-decode.md,
// run 15). mms_body computes a 16 × 128 tile over K steps of 64 columns
// with D steps' loads in flight (registers, a ring), the scales of a step
// staged with it, and a quarter of the accumulators, so three blocks fit an
// SM. Each output element sees the same sequence of operations as in
// mma_body (the same 16-column MMAs in K order, pieces smallest first, the
// same group sums of x: 8-column partial sums combined over 32 columns in
// the same tree, then 32-column sums in K order, folded in at the same
// group ends), so its bits are mma_body's: the host may give a job either
// kernel (mmaemu checks the equality).
#define MMS_BM 16
#define MMS_BK 64
// Shared row stride in words: 64 bf16 + 8 of padding, conflict-free fragments
// and weight stores. (mma_body's order of a chunk's words, which halves its
// shared loads, made this tile slower: its 128-bit weight stores then meet
// on banks, ncu run 17; an XOR swizzle that kept both conflict-free was
// slower still in a 1,024-token prompt, run 18.)
#define MMS_LD 36

template <int BITS>
struct mms_depth {
    // K steps in flight: the thread's raw weights are BITS words a step.
    static const int D = BITS == 16 ? 1 : BITS == 8 ? 2 : 3;
};

template <int BITS>
DEVICE_FN void mms_body(const uint* W, const ushort* S, const ushort* B, const float* x, float* y, float* part,
                        int T, int R, int C, int G, int kLen, int split, int n0, int m0) {
    const bool QUANT = BITS < 16;
    const int D = mms_depth<BITS>::D;
    const float CENTRE = (float)(1 << ((BITS - 1) & 15));
    __shared__ __align__(16) uint As[3][MMS_BM * MMS_LD];
    __shared__ __align__(16) uint Bs[MMA_BN * MMS_LD];
    __shared__ float csum[MMS_BK / 32][MMS_BM];  // x's 32-column sums, per row
    __shared__ float sS[MMS_BK / 32][MMA_BN];    // a group's scale, where one ends in a 32-column chunk
    __shared__ float sB[MMS_BK / 32][MMA_BN];    // and its bias + centre·scale

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t4 = lane & 3;
    const int kBeg = split * kLen, kEnd = min(C, kBeg + kLen);
    const int ng = QUANT ? C / G : 1;

    // Loader roles: x row tid/16, columns 4·(tid%16)..+3; W row tid/2,
    // columns 32·(tid%2)..+31 (BITS words); the scales of chunk tid/128,
    // row tid%128.
    const int xr = tid >> 4, xc = (tid & 15) * 4;
    const bool xok = m0 + xr < T;
    const float* xrow = x + (i64)(xok ? m0 + xr : 0) * C + xc;
    const int wr = tid >> 1, wh = tid & 1;
    const i64 wpr = (i64)C * BITS / 32;
    const uint* wrow = W + (i64)min(n0 + wr, R - 1) * wpr;
    const int sc = tid >> 7;
    const i64 srow = (i64)min(n0 + (tid & 127), R - 1) * ng;

    uint wv[D][BITS];
    float4 xv[D];
    ushort sv[D], bv[D];
    // load issues step k's loads into ring slot d; columns past kEnd are
    // not read (the last step of a split may be a 32-column half).
    auto load = [&](int d, int k) {
        const int kw = k + wh * 32;
        if (kw < kEnd) {
            const uint* p = wrow + (i64)kw * BITS / 32;
            if (BITS == 2) {
                uint2 v = *(const uint2*)p;
                wv[d][0] = v.x, wv[d][1] = v.y;
            } else {
                UNROLL for (int i = 0; i < BITS / 4; i++) {
                    uint4 v = *(const uint4*)(p + 4 * i);
                    wv[d][4 * i] = v.x, wv[d][4 * i + 1] = v.y, wv[d][4 * i + 2] = v.z, wv[d][4 * i + 3] = v.w;
                }
            }
        }
        xv[d] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (xok && k + xc < kEnd) xv[d] = *(const float4*)(xrow + k);
        if (QUANT) {
            const int c0 = k + 32 * sc;
            if (c0 < kEnd && (c0 + 32) % G == 0) sv[d] = S[srow + c0 / G], bv[d] = B[srow + c0 / G];
        }
    };
    UNROLL for (int d = 0; d < D; d++) if (kBeg + d * MMS_BK < kEnd) load(d, kBeg + d * MMS_BK);

    float acc[2][4], pt[2][4], run[2] = {0.f, 0.f};
    UNROLL for (int j = 0; j < 2; j++) UNROLL for (int c = 0; c < 4; c++) acc[j][c] = 0.f, pt[j][c] = 0.f;

    for (int k0 = kBeg; k0 < kEnd; k0 += D * MMS_BK) {
        UNROLL for (int d = 0; d < D; d++) {
            const int ks0 = k0 + d * MMS_BK;
            if (ks0 >= kEnd) break;
            {
                // Store slot d: x's pieces and 32-column sums, W decoded, the scales.
                const float4 v = xv[d];
                uint p0[3], p1[3];
                mma_split3(v.x, v.y, p0);
                mma_split3(v.z, v.w, p1);
                UNROLL for (int p = 0; p < 3; p++) *(uint2*)&As[p][xr * MMS_LD + xc / 2] = make_uint2(p0[p], p1[p]);
                if (QUANT) {
                    float s = (v.x + v.y) + (v.z + v.w);
                    s += __shfl_xor_sync(0xffffffffu, s, 1);
                    s += __shfl_xor_sync(0xffffffffu, s, 2);
                    s += __shfl_xor_sync(0xffffffffu, s, 4);
                    if ((tid & 7) == 0) csum[(tid & 15) >> 3][xr] = s;
                    const int c0 = ks0 + 32 * sc;
                    if (c0 < kEnd && (c0 + 32) % G == 0) {
                        const float sf = BF16_TO_FLOAT(sv[d]);
                        sS[sc][tid & 127] = sf;
                        sB[sc][tid & 127] = BF16_TO_FLOAT(bv[d]) + CENTRE * sf;
                    }
                }
                UNROLL for (int h = 0; h < 2; h++) {
                    uint q[8], dw[8];
                    UNROLL for (int i = 0; i < 8; i++) q[i] = i < BITS / 2 ? wv[d][h * (BITS / 2) + i] : 0u;
                    mma_wdecode<BITS>(q, dw);
                    uint* bp = &Bs[wr * MMS_LD + wh * 16 + h * 8];
                    *(uint4*)bp = make_uint4(dw[0], dw[1], dw[2], dw[3]);
                    *(uint4*)(bp + 4) = make_uint4(dw[4], dw[5], dw[6], dw[7]);
                }
            }
            __syncthreads();
            if (ks0 + D * MMS_BK < kEnd) load(d, ks0 + D * MMS_BK);
            UNROLL for (int ks = 0; ks < MMS_BK / 16; ks++) {
                const int kc = ks0 + ks * 16;
                if (kc >= kEnd) break;
                if (QUANT && (ks & 1) == 0) {
                    // A 32-column chunk begins: the group's running sum of x, as mma_body's gsum.
                    UNROLL for (int rr = 0; rr < 2; rr++) {
                        const float v = csum[ks >> 1][g + 8 * rr];
                        run[rr] = kc % G == 0 ? v : run[rr] + v;
                    }
                }
                uint bf[2][2];
                UNROLL for (int j = 0; j < 2; j++) {
                    const uint* bp = &Bs[(warp * 16 + j * 8 + g) * MMS_LD + ks * 8 + t4];
                    bf[j][0] = bp[0];
                    bf[j][1] = bp[4];
                }
                UNROLL for (int p = 2; p >= 0; p--) {
                    const uint* ap = &As[p][g * MMS_LD + ks * 8 + t4];
                    uint a0 = ap[0], a1 = ap[8 * MMS_LD], a2 = ap[4], a3 = ap[8 * MMS_LD + 4];
                    UNROLL for (int j = 0; j < 2; j++) {
                        if (QUANT) mma_16816(pt[j], a0, a1, a2, a3, bf[j][0], bf[j][1]);
                        else mma_16816(acc[j], a0, a1, a2, a3, bf[j][0], bf[j][1]);
                    }
                }
                if (QUANT && (kc + 16) % G == 0) {
                    UNROLL for (int j = 0; j < 2; j++) UNROLL for (int cc = 0; cc < 2; cc++) {
                        const int nl = warp * 16 + j * 8 + 2 * t4 + cc;
                        const float s = sS[ks >> 1][nl], bm = sB[ks >> 1][nl];
                        UNROLL for (int rr = 0; rr < 2; rr++) {
                            acc[j][2 * rr + cc] += FMAF(s, pt[j][2 * rr + cc], bm * run[rr]);
                            pt[j][2 * rr + cc] = 0.f;
                        }
                    }
                }
            }
            __syncthreads();
        }
    }

    float* out = part ? part + (i64)split * T * R : y;
    UNROLL for (int rr = 0; rr < 2; rr++) {
        const int m = m0 + g + 8 * rr;
        if (m >= T) continue;
        UNROLL for (int j = 0; j < 2; j++) UNROLL for (int cc = 0; cc < 2; cc++) {
            const int n = n0 + warp * 16 + j * 8 + 2 * t4 + cc;
            if (n < R) out[(i64)m * R + n] = acc[j][2 * rr + cc];
        }
    }
}

// The grouped kernel with the skinny tile: as MMA_GROUPED_KERNEL, token
// rows in tiles of 16 (mtiles of them for the launch's largest job).
#define MMS_GROUPED_KERNEL(name, BITS)                                                                  \
    extern "C" __global__ void __launch_bounds__(256, 3)                                                 \
        name(const mma_job* jobs, int R, int C, int G, int ntiles, int mtiles, int kLen) {                \
        GRID_WAIT();                                                                                      \
        const mma_job j = jobs[blockIdx.y];                                                               \
        const int split = blockIdx.x / (ntiles * mtiles), rest = blockIdx.x - split * ntiles * mtiles;    \
        const int mt = rest / ntiles, m0 = mt * MMS_BM;                                                   \
        if (m0 >= (int)j.T) return;                                                                       \
        MMA_BODY(mms_body<BITS>(j.W, j.S, j.B, j.x, j.y, j.part, (int)j.T, R, C, G, kLen, split,          \
                                (rest - mt * ntiles) * MMA_BN, m0));                                      \
    }
MMS_GROUPED_KERNEL(mmas_q2, 2)
MMS_GROUPED_KERNEL(mmas_q4, 4)
MMS_GROUPED_KERNEL(mmas_q8, 8)
MMS_GROUPED_KERNEL(mmas_bf16, 16)

// mmag_reduce is mma_reduce for each job of a grouped launch with splits:
// y_j[i] = Σ_s part_j[s·n + i] in split order, n = T_j·R. grid =
// (ceil(largest n / 256), jobs), block = 256.
extern "C" __global__ void mmag_reduce(const mma_job* jobs, int R, int splits) {
    GRID_WAIT();
    const mma_job j = jobs[blockIdx.y];
    const i64 n = j.T * R, i = (i64)blockIdx.x * 256 + threadIdx.x;
    if (i >= n) return;
    float s = j.part[i];
    for (int k = 1; k < splits; k++) s += j.part[(i64)k * n + i];
    j.y[i] = s;
}

// mma_reduce sums the splits' partial tiles in split order: y[i] =
// Σ_s part[s·n + i] for i < n. grid = ceil(n/256), block = 256.
extern "C" __global__ void mma_reduce(const float* part, float* y, int n, int splits) {
    GRID_WAIT();
    const i64 i = (i64)blockIdx.x * 256 + threadIdx.x;
    if (i >= n) return;
    float s = part[i];
    for (int k = 1; k < splits; k++) s += part[(i64)k * n + i];
    y[i] = s;
}
