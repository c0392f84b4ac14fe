// mmv_cuda.h (CUDA only, sm_80 and later; after batch_cuda.h): one token's
// matvec y[R] = W·x on the integer tensor cores, for W in Q2/Q4/Q8 (MLX
// affine, group G 64 times a power of two), alone or as a batch of jobs
// (the routed experts). docs/gpu-decode.md ("The one-token matvec on the
// integer tensor cores") gives the design and its error bound.
//
// Why integers: matvec.h spends about three instructions an element
// (decode, scale, product), and so did the first tensor-core version of
// this kernel (bf16, session 9: the decode to bf16 cost what the products
// saved): the SMs cannot issue that as fast as HBM delivers the bytes.
// Here the weights enter the MMA as they lie in memory: a Q4 word's eight
// nibbles are two int8x4 registers after one AND and one shift-AND, a Q8
// word is one as it is. So about 0.03 instructions a weight.
//
// x becomes integers once a launch, per 64-column block b: x_j =
// 2^(E_b − 30)·n_j with |n_j| < 2^30 (E_b: max|x| of the block < 2^E_b)
// and n_j in four balanced base-256 digits (int8), carried as four of the
// MMA's B columns. Every product and sum inside a block is then exact in
// int32; the error is the rounding of n_j, at most 2^(E_b − 31) ≤ 2^-30 of
// the block's largest |x| an element: none for an element within a factor
// 64 of that largest (x_j·2^(30 − E_b) is then an integer already), and
// below float32's own rounding of the sum for the rest. The scale and bias apply
// per block in float32 in the centred form acc += s·Σ(q − c)x + (b + c·s)·Σx
// (c = 2^(BITS−1)), Σ(q − c)·n formed exactly as D − c·Σn. A block holding
// an inf or NaN makes the rows it touches NaN. E_b is at least −96, so an
// element below 2^-127 counts as zero (float32 has no normal number there).
//
// Layout: a warp computes 16 rows (the MMA's A rows g and g+8 of lane
// (g, t), g = lane/4, t = lane%4) over 128-column chunks: lane t loads
// columns [128p + 32t, +32) of rows g and g+8, BITS words each, so lanes
// 0–1 hold block 2p and lanes 2–3 block 2p+1. Decoded, the 32 elements are
// eight int8x4 registers; MMA m (0..3) takes registers 2m and 2m+1 as its
// k-slots [4t, +4) and [16 + 4t, +4). Which column a k-slot holds is the
// decode's order (mmv_col), and x's digits are staged in that order. One
// m16n8k32 mixes the two blocks, whose scales differ; B keeps them apart:
// its column n = 4h + k is digit k of block 2p + h on that block's k-slots,
// zero on the other's. So lane (g, t)'s D columns 2t, 2t+1 are digits
// 2(t%2), +1 of block 2p + t/2, for rows g and g+8.
//
// A block of 8 warps takes a 16-row tile at a time (persistent: tiles bx,
// bx + grid, ...); warp w takes a contiguous range of the chunks, and the
// warps' partial sums are added in warp order through shared memory: a
// rerun gives the same bits, and which block computes a tile changes none.
// The tile's scales and biases (one contiguous range of each array) are
// staged in shared memory by the whole block, the next tile's loaded while
// this one computes.

#define MMV_WARPS 8
#define MMV_SCV 2    // uint4s of scales and biases a thread stages per tile, at most (ng ≤ 128)

#ifndef MMA_EMULATED
// D += A·B on the integer tensor cores: A 16×32 u8 (row), B 32×8 s8
// (col), D 16×8 s32. sm_80 and later only: a module built as PTX for an
// older card must still load there (the path is off on such cards:
// mmvState.load).
DEVICE_FN void mma_16832_u8s8(int (&d)[4], uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
#if __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}
#endif

// mmv_reg is int8x4 register r (0..7) of a lane's 32 elements of a row, from
// its BITS words: Q8 the word itself; Q4 word r/2's low or high nibbles; Q2
// word r/4's 2-bit fields at one offset.
template <int BITS>
DEVICE_FN uint mmv_reg(const uint (&w)[BITS], int r) {
    if (BITS == 8) return w[r];
    if (BITS == 4) return (w[r >> 1] >> (4 * (r & 1))) & 0x0F0F0F0Fu;
    return (w[r >> 2] >> (2 * (r & 3))) & 0x03030303u;
}

// mmv_col is the column, within a lane's 32, that byte b of register r holds.
template <int BITS>
DEVICE_FN int mmv_col(int r, int b) {
    if (BITS == 8) return 4 * r + b;
    if (BITS == 4) return 8 * (r >> 1) + 2 * b + (r & 1);
    return 16 * (r >> 2) + 4 * b + (r & 3);
}

// mmv_fixed is x as the integer n = round(x·2^(30 − E)), |n| < 2^30 when
// |x| < 2^E; mmv_digits splits n into balanced base-256 digits
// n = d0 + 2^8·d1 + 2^16·d2 + 2^24·d3, each in [−128, 127].
DEVICE_FN int mmv_fixed(float x, int E) { return __float2int_rn(ldexpf(x, 30 - E)); }
DEVICE_FN void mmv_digits(int n, int (&d)[4]) {
    UNROLL for (int k = 0; k < 3; k++) {
        d[k] = ((n & 255) ^ 128) - 128;
        n = (n - d[k]) >> 8;  // exact: n − d[k] is a multiple of 256
    }
    d[3] = n;
}

// mmv_stats finds, per 64-column block b, E_b (xe) and the block's factor
// 2^(E_b − 30) (xf; NaN if the block holds an inf or NaN), and zeroes the
// digit sums (xp). A warp takes four blocks at a time (two elements a lane
// each), so that their loads and reductions overlap.
DEVICE_FN void mmv_stats(const float* x, int C, int* xe, float* xf, int* xp, int tid) {
    const int lane = tid & 31, warp = tid >> 5, nb = C / 64;
    const float INF = __uint_as_float(0x7f800000u);
    for (int i = tid; i < 4 * nb; i += 32 * MMV_WARPS) xp[i] = 0;
    for (int b0 = warp; b0 < nb; b0 += 4 * MMV_WARPS) {
        float m[4];
        UNROLL for (int i = 0; i < 4; i++) {
            const int b = b0 + i * MMV_WARPS;
            m[i] = 0.f;
            if (b < nb) {
                const float v0 = x[64 * b + 2 * lane], v1 = x[64 * b + 2 * lane + 1];
                m[i] = fmaxf(isfinite(v0) ? fabsf(v0) : INF, isfinite(v1) ? fabsf(v1) : INF);
            }
        }
        UNROLL for (int s = 16; s >= 1; s >>= 1) {
            UNROLL for (int i = 0; i < 4; i++) m[i] = fmaxf(m[i], __shfl_xor_sync(0xffffffffu, m[i], s));
        }
        if (lane == 0) {
            UNROLL for (int i = 0; i < 4; i++) {
                const int b = b0 + i * MMV_WARPS;
                if (b >= nb) break;
                int E = 0;
                if (m[i] < INF) {
                    frexpf(m[i], &E);  // m < 2^E (0 for m = 0)
                    E = max(E, -96);
                }
                xe[b] = E;
                xf[b] = m[i] < INF ? ldexpf(1.f, E - 30) : __uint_as_float(0x7fc00000u);
            }
        }
    }
}

// mmv_stageb writes x's digits as the B fragments: for chunk p, MMA m,
// digit k and lane slice t, one uint2 (registers 2m and 2m+1's four
// k-slots) at xb[(p·4 + m)·16 + 4k + t]. A thread builds the four digits'
// words of one register from its four elements, and adds its digits to the
// block's sums (integers: the order of the atomic adds changes nothing).
template <int BITS>
DEVICE_FN void mmv_stageb(const float* x, int C, uint* xb, const int* xe, int* xp, int tid) {
    const int n = (C / 128) * 32;  // (chunk, m, t, register half e)
    for (int i = tid; i < n; i += 32 * MMV_WARPS) {
        const int e = i & 1, t = (i >> 1) & 3, m = (i >> 3) & 3, p = i >> 5;
        const int base = 128 * p + 32 * t, blk = 2 * p + (t >> 1), E = xe[blk];
        uint wv[4] = {0u, 0u, 0u, 0u};
        int sum[4] = {0, 0, 0, 0};
        UNROLL for (int b = 0; b < 4; b++) {
            int d[4];
            mmv_digits(mmv_fixed(x[base + mmv_col<BITS>(2 * m + e, b)], E), d);
            UNROLL for (int k = 0; k < 4; k++) {
                wv[k] |= (uint)(d[k] & 255) << (8 * b);
                sum[k] += d[k];
            }
        }
        UNROLL for (int k = 0; k < 4; k++) {
            xb[2 * ((p * 4 + m) * 16 + 4 * k + t) + e] = wv[k];
            atomicAdd(&xp[4 * blk + k], sum[k]);
        }
    }
}

// mmv_sums turns the digit sums into what the epilogue takes: c·Σd_k (c =
// 2^(BITS−1), the centring's exact correction) and Σx = 2^(E_b − 30)·Σn
// (exact in int64 before the one rounding; NaN with the block's factor).
template <int BITS>
DEVICE_FN void mmv_sums(int C, const int* xe, const float* xf, int* xp, float* xsum, int tid) {
    for (int b = tid; b < C / 64; b += 32 * MMV_WARPS) {
        i64 n = 0;
        UNROLL for (int k = 3; k >= 0; k--) {
            n = n * 256 + xp[4 * b + k];
            xp[4 * b + k] *= 1 << (BITS - 1);
        }
        xsum[b] = isfinite(xf[b]) ? ldexpf((float)n, xe[b] - 30) : xf[b];
    }
}

// mmv_wbatch fetches a lane's weights for U chunks from chunk p0 of a tile
// (rows r0, r1 already clamped to R − 1): BITS words a row and chunk,
// loaded 16 bytes (8 at 2 bits) at a time; chunks past pend load chunk
// pend − 1 again (a valid address; unused).
template <int BITS, int U>
DEVICE_FN void mmv_wbatch(const uint* W, i64 wpr, int r0, int r1, int t, int p0, int pend, uint (&wa)[U][BITS],
                          uint (&wb)[U][BITS]) {
    UNROLL for (int u = 0; u < U; u++) {
        const int p = min(p0 + u, pend - 1);
        const i64 off = (i64)p * 4 * BITS + t * BITS;
        UNROLL for (int h = 0; h < 2; h++) {
            const uint* src = W + (i64)(h ? r1 : r0) * wpr + off;
            uint(&w)[BITS] = h ? wb[u] : wa[u];
            if (BITS == 2) {
                uint2 v = *(const uint2*)src;
                w[0] = v.x, w[1] = v.y;
            } else {
                UNROLL for (int i = 0; i < BITS / 4; i++) {
                    uint4 v = ((const uint4*)src)[i];
                    w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
                }
            }
        }
    }
}

// mmv_scload loads tile's scales and biases (rows tile·16 .. +15, one
// contiguous range of each array; rows past R as zeros) into registers,
// MMV_SCV uint4s a thread at most: 2·ng of each array a tile.
DEVICE_FN void mmv_scload(const ushort* S, const ushort* B, int R, int ng, int tile, int tid, uint4 (&v)[MMV_SCV]) {
    const int per = 2 * ng;  // uint4s of one array in a tile
    UNROLL for (int i = 0; i < MMV_SCV; i++) {
        const int idx = tid + 256 * i;
        v[i] = make_uint4(0u, 0u, 0u, 0u);
        if (idx < 2 * per) {
            const int arr = idx / per, j = idx - arr * per;
            const int row = tile * 16 + (j * 8) / ng;
            const uint4* src = (const uint4*)((arr ? B : S) + (i64)tile * 16 * ng);
            if (row < R) v[i] = src[j];
        }
    }
}

// mmv_scstore writes them to shared memory as [array][16 rows][ng + 8]
// half-words: the 16-byte pad puts the rows' same group in different banks
// (ng half-words alone are a multiple of 128 bytes whenever ng is of 64, and
// the eight rows a warp reads at once would all fall in one bank).
DEVICE_FN void mmv_scstore(uint* ssm, int ng, int tid, const uint4 (&v)[MMV_SCV]) {
    const int per = 2 * ng, rs = (ng + 8) / 8;  // uint4s: one array's tile; one padded row
    UNROLL for (int i = 0; i < MMV_SCV; i++) {
        const int idx = tid + 256 * i;
        if (idx < 2 * per) {
            const int arr = idx / per, j = idx - arr * per;
            const int row = (j * 8) / ng, col = j - row * (ng / 8);
            ((uint4*)ssm)[(arr * 16 + row) * rs + col] = v[i];
        }
    }
}

// mmv_body's shared memory sm holds (the host's mmvShared, in words) x's B
// fragments (128 a chunk), the tile's scales and biases (16·(ng + 8)), the
// warps' partial sums (16·MMV_WARPS), a zero uint2 (4), then per 64-column
// block E, the factor, the four digit sums and Σx (7).
template <int BITS>
DEVICE_FN void mmv_body(const uint* W, const ushort* S, const ushort* B, const float* x, float* y, int R, int C, int G,
                        uint* sm, int bx, int nblocks) {
    const int U = 16 / BITS;  // chunks a lane loads ahead: 16 words a row
    const int np = C / 128, nb = C / 64, ng = C / G;
    const int gsh = 31 - __clz(G / 64);  // a block's group is b >> gsh: G/64 is a power of two
    uint* xb = sm;
    uint* ssm = xb + 128 * np;  // [array][16 rows][ng + 8] half-words
    float* red = (float*)(ssm + 16 * (ng + 8));
    uint* zero = (uint*)(red + 16 * MMV_WARPS);
    int* xe = (int*)(zero + 4);
    float* xf = (float*)(xe + nb);
    int* xp = (int*)(xf + nb);
    float* xsum = (float*)(xp + 4 * nb);
    const int ngp = ng + 8;
    const ushort* ss = (const ushort*)ssm;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int ntiles = (R + 15) / 16;
    const i64 wpr = (i64)C * BITS / 32;
    const float CENTRE = (float)(1 << (BITS - 1));
    const int pbeg = warp * np / MMV_WARPS, pend = (warp + 1) * np / MMV_WARPS;
    // Lane (g, t) feeds B's column g (digit g%4 of block half g/4) on its
    // own slice's k-slots when that slice is in block half t/2; its D
    // columns are digits k0, k0 + 1 of block half t/2.
    const bool feeds = g >> 2 == t >> 1;
    const int bofs = feeds ? 4 * (g & 3) + t : 0, bstep = feeds ? 16 : 0;
    const int half = t >> 1, k0 = 2 * (t & 1);
    const float w0 = k0 ? 65536.f : 1.f, w1 = k0 ? 16777216.f : 256.f;  // 2^(8·k0), 2^(8·(k0 + 1))

    // The first weights and scales go out before x is staged, so the
    // memory latencies overlap.
    uint wa[U][BITS], wb[U][BITS];
    uint4 scv[MMV_SCV];
    if (bx < ntiles) {
        const int r0 = min(bx * 16 + g, R - 1), r1 = min(bx * 16 + g + 8, R - 1);
        if (pbeg < pend) mmv_wbatch<BITS, U>(W, wpr, r0, r1, t, pbeg, pend, wa, wb);
        mmv_scload(S, B, R, ng, bx, tid, scv);
        mmv_scstore(ssm, ng, tid, scv);
    }
    if (tid < 4) zero[tid] = 0u;
    mmv_stats(x, C, xe, xf, xp, tid);
    BARRIER();
    mmv_stageb<BITS>(x, C, xb, xe, xp, tid);
    BARRIER();
    mmv_sums<BITS>(C, xe, xf, xp, xsum, tid);
    BARRIER();

    bool loaded = true;
    for (int tile = bx; tile < ntiles; tile += nblocks) {
        const int r0 = min(tile * 16 + g, R - 1), r1 = min(tile * 16 + g + 8, R - 1);
        if (tile + nblocks < ntiles) mmv_scload(S, B, R, ng, tile + nblocks, tid, scv);
        float acc0 = 0.f, acc1 = 0.f;
        for (int p0 = pbeg; p0 < pend; p0 += U) {
            if (!loaded) mmv_wbatch<BITS, U>(W, wpr, r0, r1, t, p0, pend, wa, wb);
            loaded = false;
            UNROLL for (int u = 0; u < U; u++) {
                const int p = p0 + u;
                if (p >= pend) break;
                // A lane that feeds no column reads the zero uint2 four times.
                const uint2* bp = feeds ? (const uint2*)xb + p * 64 + bofs : (const uint2*)zero;
                int d[4] = {0, 0, 0, 0};
                UNROLL for (int m = 0; m < 4; m++) {
                    const uint2 bv = bp[m * bstep];
                    mma_16832_u8s8(d, mmv_reg<BITS>(wa[u], 2 * m), mmv_reg<BITS>(wb[u], 2 * m),
                                   mmv_reg<BITS>(wa[u], 2 * m + 1), mmv_reg<BITS>(wb[u], 2 * m + 1), bv.x, bv.y);
                }
                const int blk = 2 * p + half, grp = blk >> gsh;
                const int c0 = xp[4 * blk + k0], c1 = xp[4 * blk + k0 + 1];
                const float f = xf[blk];
                // Σ(q − c)·n of rows g and g+8 over this lane's two digits:
                // exact integers (|·| < 2^22), weighted by the digits' powers.
                const float v0 = FMAF((float)(d[1] - c1), w1, (float)(d[0] - c0) * w0);
                const float v1 = FMAF((float)(d[3] - c1), w1, (float)(d[2] - c0) * w0);
                const float s0 = BF16_TO_FLOAT(ss[g * ngp + grp]), s1 = BF16_TO_FLOAT(ss[(g + 8) * ngp + grp]);
                acc0 = FMAF(s0 * f, v0, acc0);
                acc1 = FMAF(s1 * f, v1, acc1);
                if (k0 == 0) {  // the bias term once per block and row
                    const float xs = xsum[blk];
                    acc0 = FMAF(BF16_TO_FLOAT(ss[(16 + g) * ngp + grp]) + CENTRE * s0, xs, acc0);
                    acc1 = FMAF(BF16_TO_FLOAT(ss[(16 + g + 8) * ngp + grp]) + CENTRE * s1, xs, acc1);
                }
            }
        }
        // Row g's sum is over lanes t = 0..3, added in a fixed order.
        acc0 += __shfl_xor_sync(0xffffffffu, acc0, 1);
        acc1 += __shfl_xor_sync(0xffffffffu, acc1, 1);
        acc0 += __shfl_xor_sync(0xffffffffu, acc0, 2);
        acc1 += __shfl_xor_sync(0xffffffffu, acc1, 2);
        if (t == 0) {
            red[warp * 16 + g] = acc0;
            red[warp * 16 + g + 8] = acc1;
        }
        BARRIER();
        if (tid < 16 && tile * 16 + tid < R) {
            float s = red[tid];
            for (int w = 1; w < MMV_WARPS; w++) s += red[w * 16 + tid];
            y[tile * 16 + tid] = s;
        }
        if (tile + nblocks < ntiles) mmv_scstore(ssm, ng, tid, scv);
        BARRIER();
    }
}

#ifndef MMA_EMULATED
// One entry point per format: grid = blocks (persistent over the 16-row
// tiles), block = 256 threads, shared = mmvShared(C, G) bytes.
#define MMV_KERNEL(name, BITS)                                                                                   \
    extern "C" __global__ void __launch_bounds__(256, 2) name(const uint* W, const ushort* S, const ushort* B,   \
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
    extern "C" __global__ void __launch_bounds__(256, 2) name(const mv_job* jobs, int R, int C, int G) {          \
        extern __shared__ __align__(16) uint mmv_sm[];                                                       \
        const mv_job j = jobs[blockIdx.y];                                                                   \
        if (j.W == 0) return;                                                                                \
        mmv_body<BITS>((const uint*)j.W, j.S, j.B, j.x, j.y, R, C, G, mmv_sm, blockIdx.x, gridDim.x);       \
    }
MMV_BATCH_KERNEL(mmv_batch_q2, 2)
MMV_BATCH_KERNEL(mmv_batch_q4, 4)
MMV_BATCH_KERNEL(mmv_batch_q8, 8)
#endif
