// mmv_cuda.h (CUDA only, sm_80 and later; after batch_cuda.h and
// mma_cuda.h): one token's matvec y[R] = W·x on the tensor cores, for W in
// Q2/Q4/Q8 (MLX affine, group G a multiple of 64), alone or as a batch of
// jobs (the routed experts).
//
// Why: matvec.h spends about three instructions an element (the decode's
// mask and FMA, the product's FMA), which on an H200 is about what the SMs
// can issue while HBM delivers the bytes: it reaches 2.5 TB/s on lm_head
// and 1.1–1.3 on a layer's projections, of 4.2 (docs/benchmarks.md). Here
// two elements are decoded by a shift, a mask and one bf16x2 FMA, and the
// products go to the tensor cores: about 1.5 instructions an element.
//
// Exactness is mma_cuda.h's: the weights enter as the centred integers
// q − m (exact in bf16), x as three bf16 pieces hi + mid + lo (exact), and
// the products accumulate in f32; the scale and bias apply per group in f32
// in the centred form acc += s·Σ(q−m)x + (b + m·s)·Σx. The three pieces are
// the MMA's columns n = 0, 1, 2 (the other five are zero), so one
// m16n8k16 covers a 16-row × 16-column tile where a product per piece
// would take three; the pieces' sums are added at the end.
//
// Layout: a warp computes 16 rows over steps of 64 columns (a step lies in
// one scale group). Lane (g, c) (g = lane/4, c = lane%4) decodes columns
// [64s + 16c, +16) of rows g and g+8 into 8 bf16 pairs each, which are its
// A fragments of the step's 4 MMAs. Which column a k-slot holds is the
// decode's order (mmv_col); x's pieces are staged in shared memory in that
// order, lane (n, c) holding piece n's B fragment, so every slot multiplies
// its own column. A block of 8 warps takes a 16-row tile at a time
// (persistent: tiles bx, bx + grid, ...), its warps splitting the tile's
// steps (warp w: w, w+8, ...) and adding their partial sums in warp order
// through shared memory: a rerun gives the same bits, and which block
// computes a tile changes none.

#define MMV_WARPS 8
#define MMV_U 4  // steps whose weights a lane loads before decoding them

// mmv_col is the column, within a lane's 16, of the low (hi = 0) or high
// element of decoded pair k (0..7): pair k = i·HALF + p of word i holds
// elements p and p + HALF of that word (PER = 32/BITS elements a word).
template <int BITS>
DEVICE_FN int mmv_col(int k, int hi) {
    const int PER = 32 / BITS, HALF = PER / 2;
    return (k / HALF) * PER + (k % HALF) + (hi ? HALF : 0);
}

#ifndef MMA_EMULATED
// d = a·b + c on two bf16 lanes at once (round to nearest).
DEVICE_FN uint mmv_fma_bf16x2(uint a, uint b, uint c) {
    uint d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
#endif

// mmv_decode turns a lane's BITS/2 words of one row (16 elements) into 8
// bf16 pairs q − m. Q2/Q4: the two fields of pair k sit at the bottom of
// each 16-bit half after one shift; OR-ed under bf16's 128.0 they are
// 128 + q, and one FMA subtracts 128 + m exactly. Q8: 2^23 + q through
// float32's mantissa, minus 2^23 + 128, then the high halves (exact: at
// most 8 significant bits).
template <int BITS>
DEVICE_FN void mmv_decode(const uint (&w)[BITS / 2], uint (&a)[8]) {
    const int PER = 32 / BITS, HALF = PER / 2;
    if (BITS == 8) {
        UNROLL for (int k = 0; k < 8; k++) {
            const int i = k / HALF, p = k % HALF;
            float f0 = __uint_as_float(__byte_perm(w[i], 0x4B000000u, 0x7440 + p)) - 8388736.0f;
            float f1 = __uint_as_float(__byte_perm(w[i], 0x4B000000u, 0x7440 + p + 2)) - 8388736.0f;
            a[k] = __byte_perm(__float_as_uint(f0), __float_as_uint(f1), 0x7632);
        }
        return;
    }
    const uint MASK = (1u << BITS) - 1u;
    const uint M2 = MASK | (MASK << 16);
    const uint NEG = 0xC300u | (1u << (BITS - 1));  // bf16 −(128 + m)
    UNROLL for (int k = 0; k < 8; k++) {
        const int i = k / HALF, p = k % HALF;
        uint t = ((w[i] >> (BITS * p)) & M2) | 0x43004300u;
        a[k] = mmv_fma_bf16x2(t, 0x3F803F80u, NEG | (NEG << 16));
    }
}

// mmv_wload fetches this lane's 16 elements of a row in one step: BITS/2
// words, one 4-, 8- or 16-byte load.
template <int BITS>
DEVICE_FN void mmv_wload(const uint* p, uint (&w)[BITS / 2]) {
    if (BITS == 2) {
        w[0] = p[0];
    } else if (BITS == 4) {
        uint2 v = *(const uint2*)p;
        w[0] = v.x, w[1] = v.y;
    } else {
        uint4 v = *(const uint4*)p;
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
    }
}

// mmv_load fetches a lane's weights for the MMV_U steps s0, s0 + 8, ... of
// a tile (rows r0 = tile·16 + g and r1 = r0 + 8, clamped to R − 1), with
// each step's scale and centred bias (b + m·s) as floats. A step past the
// row's end loads the last step again (a valid address; unused).
template <int BITS>
DEVICE_FN void mmv_load(const uint* W, const ushort* S, const ushort* B, int R, int C, int G, int tile, int s0,
                        int lane, uint (&wa)[MMV_U][BITS / 2], uint (&wb)[MMV_U][BITS / 2], float (&sc)[MMV_U][2],
                        float (&bm)[MMV_U][2]) {
    const int WPL = BITS / 2;  // words a lane loads per row and step
    const int g = lane >> 2, c = lane & 3, nst = C / 64, ng = C / G;
    const i64 wpr = (i64)C * BITS / 32;
    const float CENTRE = (float)(1 << (BITS - 1));
    const int r0 = min(tile * 16 + g, R - 1), r1 = min(tile * 16 + g + 8, R - 1);
    UNROLL for (int u = 0; u < MMV_U; u++) {
        const int s = min(s0 + u * MMV_WARPS, nst - 1);
        mmv_wload<BITS>(W + (i64)r0 * wpr + (i64)s * 4 * WPL + c * WPL, wa[u]);
        mmv_wload<BITS>(W + (i64)r1 * wpr + (i64)s * 4 * WPL + c * WPL, wb[u]);
        const int grp = (64 * s) / G;
        sc[u][0] = BF16_TO_FLOAT(S[(i64)r0 * ng + grp]);
        sc[u][1] = BF16_TO_FLOAT(S[(i64)r1 * ng + grp]);
        bm[u][0] = BF16_TO_FLOAT(B[(i64)r0 * ng + grp]) + CENTRE * sc[u][0];
        bm[u][1] = BF16_TO_FLOAT(B[(i64)r1 * ng + grp]) + CENTRE * sc[u][1];
    }
}

// mmv_stage writes x's pieces and Σx per step to shared memory: warp w
// takes steps w, w+8, ..., four at a time (their loads go out together);
// lane l the pair l%8 of quarter l/8 of a step, split into three pieces.
template <int BITS>
DEVICE_FN void mmv_stage(const float* x, int C, uint* xp, float* xsum, int lane, int warp) {
    const int nst = C / 64, cc = lane >> 3, k = lane & 7;
    for (int s0 = warp; s0 < nst; s0 += 4 * MMV_WARPS) {
        float v[4][2];
        UNROLL for (int u = 0; u < 4; u++) {
            const int s = min(s0 + u * MMV_WARPS, nst - 1);
            const float* xc = x + 64 * s + 16 * cc;
            v[u][0] = xc[mmv_col<BITS>(k, 0)];
            v[u][1] = xc[mmv_col<BITS>(k, 1)];
        }
        UNROLL for (int u = 0; u < 4; u++) {
            const int s = s0 + u * MMV_WARPS;
            if (s >= nst) break;  // warp-uniform
            uint pw[3];
            mma_split3(v[u][0], v[u][1], pw);
            UNROLL for (int n = 0; n < 3; n++) xp[((s * 2 + (k >> 2)) * 12 + n * 4 + cc) * 4 + (k & 3)] = pw[n];
            float sum = SIMD_SUM(v[u][0] + v[u][1]);
            if (lane == 0) xsum[s] = sum;
        }
    }
}

// mmv_body's shared memory sm holds (C/64)·97 + 16·MMV_WARPS words (the
// host's mmvShared): x's pieces (96 words a step: [step][half][piece
// n][c][4 words]), Σx per step, the warps' partial sums.
template <int BITS>
DEVICE_FN void mmv_body(const uint* W, const ushort* S, const ushort* B, const float* x, float* y, int R, int C, int G,
                        uint* sm, int bx, int nblocks) {
    const int nst = C / 64;
    uint* xp = sm;
    float* xsum = (float*)(sm + nst * 96);
    float* red = xsum + nst;  // [warp][16 rows]
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, c = lane & 3;
    const int ntiles = (R + 15) / 16;

    // The first weights go out before x is staged, so the two memory
    // latencies overlap.
    uint wa[MMV_U][BITS / 2], wb[MMV_U][BITS / 2];
    float sc[MMV_U][2], bm[MMV_U][2];
    if (bx < ntiles && warp < nst) mmv_load<BITS>(W, S, B, R, C, G, bx, warp, lane, wa, wb, sc, bm);
    mmv_stage<BITS>(x, C, sm, xsum, lane, warp);
    BARRIER();

    bool loaded = true;
    for (int tile = bx; tile < ntiles; tile += nblocks) {
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
        for (int s0 = warp; s0 < nst; s0 += MMV_WARPS * MMV_U) {
            if (!loaded) mmv_load<BITS>(W, S, B, R, C, G, tile, s0, lane, wa, wb, sc, bm);
            loaded = false;
            UNROLL for (int u = 0; u < MMV_U; u++) {
                const int s = s0 + u * MMV_WARPS;
                if (s >= nst) break;
                uint a0[8], a1[8], b[8];
                mmv_decode<BITS>(wa[u], a0);
                mmv_decode<BITS>(wb[u], a1);
                if (g < 3) {
                    const uint4* bp = (const uint4*)xp;
                    uint4 lo = bp[(s * 2) * 12 + g * 4 + c], hi = bp[(s * 2 + 1) * 12 + g * 4 + c];
                    b[0] = lo.x, b[1] = lo.y, b[2] = lo.z, b[3] = lo.w;
                    b[4] = hi.x, b[5] = hi.y, b[6] = hi.z, b[7] = hi.w;
                } else {
                    UNROLL for (int k = 0; k < 8; k++) b[k] = 0u;
                }
                float d[4] = {0.f, 0.f, 0.f, 0.f};
                UNROLL for (int j = 0; j < 4; j++) mma_16816(d, a0[2 * j], a1[2 * j], a0[2 * j + 1], a1[2 * j + 1], b[2 * j], b[2 * j + 1]);
                acc[0] = FMAF(sc[u][0], d[0], acc[0]);
                acc[1] = FMAF(sc[u][0], d[1], acc[1]);
                acc[2] = FMAF(sc[u][1], d[2], acc[2]);
                acc[3] = FMAF(sc[u][1], d[3], acc[3]);
                if (c == 0) {  // columns n = 0 (hi) and 1: the bias term once a row
                    acc[0] = FMAF(bm[u][0], xsum[s], acc[0]);
                    acc[2] = FMAF(bm[u][1], xsum[s], acc[2]);
                }
            }
        }
        // Row g's sum is lane (g, 0)'s pieces hi + mid plus lane (g, 1)'s
        // lo; the other columns are zero.
        float v0 = c == 0 ? acc[0] + acc[1] : c == 1 ? acc[0] : 0.f;
        float v1 = c == 0 ? acc[2] + acc[3] : c == 1 ? acc[2] : 0.f;
        v0 += __shfl_xor_sync(0xffffffffu, v0, 1);
        v1 += __shfl_xor_sync(0xffffffffu, v1, 1);
        if (c == 0) {
            red[warp * 16 + g] = v0;
            red[warp * 16 + g + 8] = v1;
        }
        BARRIER();
        if (tid < 16 && tile * 16 + tid < R) {
            float t = red[tid];
            for (int w = 1; w < MMV_WARPS; w++) t += red[w * 16 + tid];
            y[tile * 16 + tid] = t;
        }
        BARRIER();
    }
}

#ifndef MMA_EMULATED
// One entry point per format: grid = blocks (persistent over the 16-row
// tiles), block = 256 threads, shared = mmvShared(C) bytes.
#define MMV_KERNEL(name, BITS)                                                                                   \
    extern "C" __global__ void __launch_bounds__(256, 3) name(const uint* W, const ushort* S, const ushort* B,   \
                                                           const float* x, float* y, int R, int C, int G) {  \
        extern __shared__ __align__(16) uint mmv_sm[];                                                       \
        mmv_body<BITS>(W, S, B, x, y, R, C, G, mmv_sm, blockIdx.x, gridDim.x);                              \
    }
MMV_KERNEL(mmv_q2, 2)
MMV_KERNEL(mmv_q4, 4)
MMV_KERNEL(mmv_q8, 8)

// The batched form: grid = (blocks per job, jobs), each job as batch_cuda.h's
// (a null W is a job experts_jobs found no expert for: skipped, as there).
#define MMV_BATCH_KERNEL(name, BITS)                                                                             \
    extern "C" __global__ void __launch_bounds__(256, 3) name(const mv_job* jobs, int R, int C, int G) {          \
        extern __shared__ __align__(16) uint mmv_sm[];                                                       \
        const mv_job j = jobs[blockIdx.y];                                                                   \
        if (j.W == 0) return;                                                                                \
        mmv_body<BITS>((const uint*)j.W, j.S, j.B, j.x, j.y, R, C, G, mmv_sm, blockIdx.x, gridDim.x);       \
    }
MMV_BATCH_KERNEL(mmv_batch_q2, 2)
MMV_BATCH_KERNEL(mmv_batch_q4, 4)
MMV_BATCH_KERNEL(mmv_batch_q8, 8)
#endif
