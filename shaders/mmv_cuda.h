// mmv_cuda.h (CUDA only, sm_80 and later; after batch_cuda.h and
// mma_cuda.h): one token's matvec y[R] = W·x on the tensor cores, for W in
// Q2/Q4/Q8 (MLX affine, group G 64 times a power of two), alone or as a
// batch of jobs (the routed experts). Off by default: measured slower than
// matvec.h on every decode shape (docs/benchmarks.md run 12), kept as the
// measured starting point (FMOE_CUDA_MMV=N turns it on).
//
// The idea: matvec.h spends about three instructions an element (the
// decode's mask and FMA, the product's FMA), about what the SMs can issue
// while HBM delivers the bytes. Here two elements are decoded by a shift,
// a mask and one bf16x2 FMA, and the products go to the tensor cores. (The
// SASS shows the rest of the loop — scales, fragments, addresses — brings
// it back to matvec.h's count.)
//
// Exactness is mma_cuda.h's: the weights enter as the centred integers
// q − m (exact in bf16), x as three bf16 pieces hi + mid + lo (exact), and
// the products accumulate in f32; the scale and bias apply per 64-column
// step in f32 in the centred form acc += s·Σ(q−m)x + (b + m·s)·Σx.
//
// Layout: a warp computes 16 rows (the MMA's A rows g and g+8 of lane
// (g, c), g = lane/4, c = lane%4) over pairs of 64-column steps: lane c
// loads columns [128p + 32c, +32) of rows g and g+8 in one load each (the
// four lanes of a row read 64 contiguous bytes at 4 bits), so lanes 0–1
// hold step 2p and lanes 2–3 step 2p+1. One m16n8k16 then mixes two
// steps, whose scales differ; B keeps them apart: its columns n = 0–2 are
// x's three pieces on step 2p's k-slots (zero on the other step's), n = 3–5
// the same on step 2p+1's, n = 6–7 zero. So D holds, per row, each step's
// three partial sums, each scaled by its own step's scale. Which column a
// k-slot holds is the decode's order (mmv_col); x's pieces are staged in
// shared memory in that order.
//
// A block of 8 warps takes a 16-row tile at a time (persistent: tiles bx,
// bx + grid, ...); warp w takes a contiguous range of the tile's step
// pairs, and the warps' partial sums are added in warp order through shared
// memory: a rerun gives the same bits, and which block computes a tile
// changes none. The tile's scales and biases (one contiguous range of each
// array) are staged in shared memory by the whole block, the next tile's
// loaded while this one computes.

#define MMV_WARPS 8
#define MMV_U 2      // step pairs whose weights a lane loads before decoding them
#define MMV_SCV 2    // uint4s of scales and biases a thread stages per tile, at most (ng ≤ 128)

// mmv_col is the column, within a lane's 32, of the low (hi = 0) or high
// element of decoded pair k (0..15): pair k = i·HALF + p of word i holds
// elements p and p + HALF of that word (PER = 32/BITS elements a word).
template <int BITS>
DEVICE_FN int mmv_col(int k, int hi) {
    const int PER = 32 / BITS, HALF = PER / 2;
    return (k / HALF) * PER + (k % HALF) + (hi ? HALF : 0);
}

#ifndef MMA_EMULATED
// d = a·b + c on two bf16 lanes at once (round to nearest). sm_80 and
// later only, like mma_16816: a module built as PTX for an older card must
// still load there (the path is off on such cards: mmvState.load).
DEVICE_FN uint mmv_fma_bf16x2(uint a, uint b, uint c) {
    uint d = 0;
#if __CUDA_ARCH__ >= 800
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
#endif
    return d;
}
#endif

// mmv_decode turns a lane's BITS words of one row (32 elements) into 16
// bf16 pairs q − m. Q2/Q4: the two fields of pair k sit at the bottom of
// each 16-bit half after one shift; OR-ed under bf16's 128.0 they are
// 128 + q, and one FMA subtracts 128 + m exactly. Q8: 2^23 + q through
// float32's mantissa, minus 2^23 + 128, then the high halves (exact: at
// most 8 significant bits).
template <int BITS>
DEVICE_FN void mmv_decode(const uint (&w)[BITS], uint (&a)[16]) {
    const int PER = 32 / BITS, HALF = PER / 2;
    if (BITS == 8) {
        UNROLL for (int k = 0; k < 16; k++) {
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
    // 128.0 twice in a register: with the mask an immediate, the AND-OR is
    // then one LOP3 (it takes one immediate), not two.
    uint magic = 0x43004300u;
#ifndef MMA_EMULATED
    asm("" : "+r"(magic));
#endif
    UNROLL for (int k = 0; k < 16; k++) {
        const int i = k / HALF, p = k % HALF;
        uint t = ((w[i] >> (BITS * p)) & M2) | magic;
        a[k] = mmv_fma_bf16x2(t, 0x3F803F80u, NEG | (NEG << 16));
    }
}

// mmv_wload fetches this lane's 32 elements of a row in one step pair:
// BITS words, loaded 16 bytes (or 8 at 2 bits) at a time.
template <int BITS>
DEVICE_FN void mmv_wload(const uint* p, uint (&w)[BITS]) {
    if (BITS == 2) {
        uint2 v = *(const uint2*)p;
        w[0] = v.x, w[1] = v.y;
    } else {
        UNROLL for (int i = 0; i < BITS / 4; i++) {
            uint4 v = ((const uint4*)p)[i];
            w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
        }
    }
}

// mmv_wbatch fetches a lane's weights for MMV_U step pairs from pair p0 of
// a tile (rows r0, r1 already clamped to R − 1); pairs past pend load pair
// pend − 1 again (a valid address; unused).
template <int BITS>
DEVICE_FN void mmv_wbatch(const uint* W, i64 wpr, int r0, int r1, int c, int p0, int pend, uint (&wa)[MMV_U][BITS],
                          uint (&wb)[MMV_U][BITS]) {
    UNROLL for (int u = 0; u < MMV_U; u++) {
        const int p = min(p0 + u, pend - 1);
        const i64 off = (i64)p * 4 * BITS + c * BITS;
        mmv_wload<BITS>(W + (i64)r0 * wpr + off, wa[u]);
        mmv_wload<BITS>(W + (i64)r1 * wpr + off, wb[u]);
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

// mmv_stage writes x's pieces and Σx per step to shared memory. Each thread
// loads float4s of x (all of them at once, so one latency) and writes each
// element's three bf16 pieces at the half-word its k-slot takes:
// [pair][quarter q][piece][c][4 words], word k%4 of quarter k/4 of lane c's
// pairs, low or high half. Σx of a 64-column step is the 16 float4s of a
// half-warp, added by shuffles in a fixed order.
template <int BITS>
DEVICE_FN void mmv_stage(const float* x, int C, ushort* xh, float* xsum, int tid) {
    const int PER = 32 / BITS, HALF = PER / 2;
    const int nf = C / 4;
    for (int f0 = 0; f0 < nf; f0 += 256 * 4) {
        float4 v[4];
        UNROLL for (int i = 0; i < 4; i++) {
            const int f = f0 + 256 * i + tid;
            v[i] = f < nf ? ((const float4*)x)[f] : make_float4(0.f, 0.f, 0.f, 0.f);
        }
        UNROLL for (int i = 0; i < 4; i++) {
            const int f = f0 + 256 * i + tid;
            if (f >= nf) break;  // warp-uniform: nf is a multiple of 32
            float e4[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
            UNROLL for (int e = 0; e < 4; e++) {
                const int j = 4 * f + e;
                const int p = j >> 7, c = (j >> 5) & 3, cl = j & 31;
                const int w = cl / PER, el = cl % PER;
                const int k = w * HALF + el % HALF, hi = el / HALF;
                uint pw[3];
                mma_split3(e4[e], 0.f, pw);
                UNROLL for (int n = 0; n < 3; n++)
                    xh[(((((p * 4 + (k >> 2)) * 3 + n) * 4 + c) * 4 + (k & 3)) << 1) + hi] = (ushort)pw[n];
            }
            float s = (e4[0] + e4[1]) + (e4[2] + e4[3]);
            UNROLL for (int m = 8; m >= 1; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
            if ((tid & 15) == 0) xsum[f >> 4] = s;
        }
    }
}

// mmv_body's shared memory sm holds (the host's mmvShared) x's pieces (192
// words a step pair), Σx per step (C/64 floats), the tile's scales and
// biases (2·16·(ng + 8) half-words), the warps' partial sums (16·MMV_WARPS),
// a zero uint4.
template <int BITS>
DEVICE_FN void mmv_body(const uint* W, const ushort* S, const ushort* B, const float* x, float* y, int R, int C, int G,
                        uint* sm, int bx, int nblocks) {
    const int np = C / 128, nst = C / 64, ng = C / G;
    const int gsh = 31 - __clz(G / 64);  // a step's group is step >> gsh: G/64 is a power of two
    uint* xp = sm;
    float* xsum = (float*)(sm + np * 192);
    uint* ssm = (uint*)(xsum + nst);  // [array][16 rows][ng + 8] half-words
    float* red = (float*)(ssm + 16 * (ng + 8));
    uint* zero = (uint*)(red + 16 * MMV_WARPS);  // 4 words
    const int ngp = ng + 8;
    const ushort* ss = (const ushort*)ssm;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, c = lane & 3;
    const int ntiles = (R + 15) / 16;
    const i64 wpr = (i64)C * BITS / 32;
    const float CENTRE = (float)(1 << (BITS - 1));
    // This warp's step pairs, and whether lane (g, c) feeds B: piece g % 3
    // of its own step (g / 3 == c / 2).
    const int pbeg = warp * np / MMV_WARPS, pend = (warp + 1) * np / MMV_WARPS;
    const bool feeds = g < 6 && g / 3 == c >> 1;
    const int piece = g % 3, qs = feeds ? 12 : 0;

    // The first weights and scales go out before x is staged, so the
    // memory latencies overlap.
    uint wa[MMV_U][BITS], wb[MMV_U][BITS];
    uint4 scv[MMV_SCV];
    if (bx < ntiles) {
        const int r0 = min(bx * 16 + g, R - 1), r1 = min(bx * 16 + g + 8, R - 1);
        if (pbeg < pend) mmv_wbatch<BITS>(W, wpr, r0, r1, c, pbeg, pend, wa, wb);
        mmv_scload(S, B, R, ng, bx, tid, scv);
        mmv_scstore(ssm, ng, tid, scv);
    }
    if (tid < 4) zero[tid] = 0u;
    mmv_stage<BITS>(x, C, (ushort*)xp, xsum, tid);
    BARRIER();

    bool loaded = true;
    for (int tile = bx; tile < ntiles; tile += nblocks) {
        const int r0 = min(tile * 16 + g, R - 1), r1 = min(tile * 16 + g + 8, R - 1);
        if (tile + nblocks < ntiles) mmv_scload(S, B, R, ng, tile + nblocks, tid, scv);
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
        for (int p0 = pbeg; p0 < pend; p0 += MMV_U) {
            if (!loaded) mmv_wbatch<BITS>(W, wpr, r0, r1, c, p0, pend, wa, wb);
            loaded = false;
            UNROLL for (int u = 0; u < MMV_U; u++) {
                const int p = p0 + u;
                if (p >= pend) break;
                uint a0[16], a1[16], b[16];
                mmv_decode<BITS>(wa[u], a0);
                mmv_decode<BITS>(wb[u], a1);
                // A lane that feeds no column reads the zero word four times.
                const uint4* bp = feeds ? (const uint4*)xp + (p * 4 * 3 + piece) * 4 + c : (const uint4*)zero;
                UNROLL for (int q = 0; q < 4; q++) {
                    uint4 v = bp[q * qs];
                    b[4 * q] = v.x, b[4 * q + 1] = v.y, b[4 * q + 2] = v.z, b[4 * q + 3] = v.w;
                }
                float d[4] = {0.f, 0.f, 0.f, 0.f};
                UNROLL for (int j = 0; j < 8; j++) mma_16816(d, a0[2 * j], a1[2 * j], a0[2 * j + 1], a1[2 * j + 1], b[2 * j], b[2 * j + 1]);
                // Column n = 2c + e of D is step 2p + n/3's: scale it by that
                // step's scale; the bias term goes in once per step and row,
                // on columns 0 (lane c 0, e 0) and 3 (lane c 1, e 1).
                const int sA = 2 * p, gA = sA >> gsh, gB = (sA + 1) >> gsh;
                UNROLL for (int e = 0; e < 2; e++) {
                    const int n = 2 * c + e;
                    const int grp = n < 3 ? gA : gB;
                    const float s0 = BF16_TO_FLOAT(ss[g * ngp + grp]), s1 = BF16_TO_FLOAT(ss[(g + 8) * ngp + grp]);
                    acc[e] = FMAF(s0, d[e], acc[e]);
                    acc[2 + e] = FMAF(s1, d[2 + e], acc[2 + e]);
                    if (n == 0 || n == 3) {
                        const float xs = xsum[sA + n / 3];
                        const float b0 = BF16_TO_FLOAT(ss[(16 + g) * ngp + grp]) + CENTRE * s0;
                        const float b1 = BF16_TO_FLOAT(ss[(16 + g + 8) * ngp + grp]) + CENTRE * s1;
                        acc[e] = FMAF(b0, xs, acc[e]);
                        acc[2 + e] = FMAF(b1, xs, acc[2 + e]);
                    }
                }
            }
        }
        // Row g's sum is its six columns over lanes c = 0..2 (c = 3 holds
        // the zero columns 6 and 7), added in a fixed order.
        float v0 = acc[0] + acc[1], v1 = acc[2] + acc[3];
        v0 += __shfl_xor_sync(0xffffffffu, v0, 1);
        v1 += __shfl_xor_sync(0xffffffffu, v1, 1);
        v0 += __shfl_xor_sync(0xffffffffu, v0, 2);
        v1 += __shfl_xor_sync(0xffffffffu, v1, 2);
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
        if (tile + nblocks < ntiles) mmv_scstore(ssm, ng, tid, scv);
        BARRIER();
    }
}

#ifndef MMA_EMULATED
// One entry point per format: grid = blocks (persistent over the 16-row
// tiles), block = 256 threads, shared = mmvShared(C) bytes.
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
