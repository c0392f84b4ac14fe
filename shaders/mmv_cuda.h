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
// Two launches: mmv_stage writes x's digits (as the B fragments, in the
// order the MMA takes them) and per-block sums to a scratch area once, then
// the matvec's blocks start loading weights at once. A block is one 16-row
// tile of nw warps (blockDim.x / 32, the host's choice: enough warps in all
// to keep every SM's loads in flight), splitting the tile's columns; the
// sums are added in an order fixed by the shape alone (mmv_body).

#define MMV_MAXW 16  // warps a tile at most

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

#ifndef MMA_EMULATED
// mmv_cp16 copies 16 bytes from global to shared memory without a register
// (cp.async, sm_80 and later, like the MMA above); mmv_cp_wait waits for
// this lane's copies and then for the warp's. Only the SMX matvecs call
// them, and they are compiled where the host asks (FMOE_MMV_SMX, below: by
// default since run 15).
DEVICE_FN void mmv_cp16(void* s, const void* g) {
#if defined(FMOE_MMV_SMX) && __CUDA_ARCH__ >= 800
    unsigned sa;
    asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(sa) : "l"(s));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sa), "l"(g));
#endif
}
DEVICE_FN void mmv_cp_wait() {
#if defined(FMOE_MMV_SMX) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_all;" ::: "memory");
#endif
    __syncwarp();
}
// mmv_cp8 is mmv_cp16 for 8 bytes (cp.async.ca: .cg takes only 16): a Q2
// lane's words of one chunk and row in the PIPE matvecs.
DEVICE_FN void mmv_cp8(void* s, const void* g) {
#if defined(FMOE_MMV_SMX) && defined(FMOE_MMV_PIPE) && __CUDA_ARCH__ >= 800
    unsigned sa;
    asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(sa) : "l"(s));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(sa), "l"(g));
#endif
}
#endif

// PIPE (opt-in: FMOE_CUDA_MMV_PIPE=1 or Options.MMVPipe; compiled with
// FMOE_MMV_PIPE besides FMOE_MMV_SMX): the segment's weights go to shared
// memory by cp.async too, as x's fragments do in SMX, instead of into
// registers that hold them through the load's latency. Run 14's ncu put
// the matvec at 84 registers, 29% of an SM's warps and DRAM at 44%: bytes
// in flight are what it lacks. Here a lane holds one chunk's words at a
// time, read from shared memory as its MMAs need them, so more warps fit
// an SM and each warp's 4 KB of weights are in flight without registers.
// A warp's area: its SMX words, then 4 KB of weights: for chunk u and row
// half h (rows g, g+8) the lanes' words in BITS/4 planes of uint4 (Q2: one
// of uint2), so that each plane is 512 (256) contiguous bytes, written and
// read without bank conflicts. The same words reach the same MMAs in the
// same order: the same bits as the default.
#define MMV_PIPE_WORDS(BITS) (MMV_SMX_WORDS(BITS) + 512)

// mmv_wcopy queues lane's words of chunk u, rows W0 and W1 (at the chunk),
// into the warp's weight area wq (PIPE).
template <int BITS>
DEVICE_FN void mmv_wcopy(uint4* wq, int u, int lane, const uint* W0, const uint* W1) {
    if (BITS == 2) {
        uint2* q = (uint2*)wq;
        mmv_cp8(q + (u * 2 + 0) * 32 + lane, W0);
        mmv_cp8(q + (u * 2 + 1) * 32 + lane, W1);
    } else {
        UNROLL for (int i = 0; i < BITS / 4; i++) {
            mmv_cp16(wq + ((u * 2 + 0) * (BITS / 4) + i) * 32 + lane, W0 + 4 * i);
            mmv_cp16(wq + ((u * 2 + 1) * (BITS / 4) + i) * 32 + lane, W1 + 4 * i);
        }
    }
}

// mmv_wread reads lane's words of chunk u back from wq into a (row g) and
// b (row g + 8), as the default's registers hold them.
template <int BITS>
DEVICE_FN void mmv_wread(const uint4* wq, int u, int lane, uint (&a)[BITS], uint (&b)[BITS]) {
    if (BITS == 2) {
        const uint2* q = (const uint2*)wq;
        const uint2 x = q[(u * 2 + 0) * 32 + lane], y = q[(u * 2 + 1) * 32 + lane];
        a[0] = x.x, a[1] = x.y, b[0] = y.x, b[1] = y.y;
    } else {
        UNROLL for (int i = 0; i < BITS / 4; i++) {
            const uint4 x = wq[((u * 2 + 0) * (BITS / 4) + i) * 32 + lane];
            const uint4 y = wq[((u * 2 + 1) * (BITS / 4) + i) * 32 + lane];
            a[4 * i] = x.x, a[4 * i + 1] = x.y, a[4 * i + 2] = x.z, a[4 * i + 3] = x.w;
            b[4 * i] = y.x, b[4 * i + 1] = y.y, b[4 * i + 2] = y.z, b[4 * i + 3] = y.w;
        }
    }
}

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

// mmv_stage_block writes one 64-column block b of x (one warp): E_b from
// max|x| of the block (at least −96; NaN factor if it holds an inf or NaN),
// its elements' digits into the B fragments — for chunk p, MMA m, digit k
// and lane slice t one uint2 (registers 2m and 2m+1) at xs[(p·4 + m)·16 +
// 4k + t] — and the block's stats after the fragments (xs + 128·np, eight
// words a block): c·Σd_k for k = 0..3 (c = 2^(BITS−1): the centring's exact
// correction), the factor 2^(E_b − 30), Σx = 2^(E_b − 30)·Σn (exact in
// int64 before its one rounding). Lane L builds register L%8 of slice L/8%2
// of the block, digits 2·(L/16) and +1.
//
// With u (not null) the block staged is SwiGLU's output swiglu_(x, u), the
// value the swiglu kernel writes: the down projection of the batched
// experts stages it straight from their gate and up rows (one launch fewer).
template <int BITS>
DEVICE_FN void mmv_stage_block(const float* x, const float* u, uint* xs, int C, int b, int lane) {
    const float INF = __uint_as_float(0x7f800000u), NAN_ = __uint_as_float(0x7fc00000u);
    const int r = lane & 7, t = 2 * (b & 1) + ((lane >> 3) & 1), p = b >> 1, kp = 2 * (lane >> 4);
    const int base = 128 * p + 32 * t;
    float v[4], m = 0.f;
    UNROLL for (int i = 0; i < 4; i++) {
        const int k = base + mmv_col<BITS>(r, i);
        v[i] = u ? swiglu_(x[k], u[k]) : x[k];
        m = fmaxf(m, isfinite(v[i]) ? fabsf(v[i]) : INF);
    }
    UNROLL for (int s = 16; s >= 1; s >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, s));
    const bool bad = !(m < INF);
    int E = 0;
    if (!bad) {
        frexpf(m, &E);  // m < 2^E (0 for m = 0)
        E = max(E, -96);
    }
    uint w0 = 0u, w1 = 0u;
    float s0 = 0.f, s1 = 0.f;  // this lane's sums of digits kp, kp + 1 (exact: |Σ| ≤ 2^13)
    UNROLL for (int i = 0; i < 4; i++) {
        int d[4];
        mmv_digits(bad ? 0 : mmv_fixed(v[i], E), d);
        const int a = kp ? d[2] : d[0], c = kp ? d[3] : d[1];
        w0 |= (uint)(a & 255) << (8 * i);
        w1 |= (uint)(c & 255) << (8 * i);
        s0 += (float)a, s1 += (float)c;
    }
    const int mi = r >> 1, e = r & 1;
    xs[2 * ((p * 4 + mi) * 16 + 4 * kp + t) + e] = w0;
    xs[2 * ((p * 4 + mi) * 16 + 4 * (kp + 1) + t) + e] = w1;
    UNROLL for (int s = 8; s >= 1; s >>= 1) {
        s0 += __shfl_xor_sync(0xffffffffu, s0, s);
        s1 += __shfl_xor_sync(0xffffffffu, s1, s);
    }
    const float s2 = __shfl_xor_sync(0xffffffffu, s0, 16), s3 = __shfl_xor_sync(0xffffffffu, s1, 16);
    if (lane == 0) {
        uint* st = xs + 128 * (C / 128) + 8 * b;
        const int P[4] = {(int)s0, (int)s1, (int)s2, (int)s3};
        i64 n = 0;
        UNROLL for (int k = 3; k >= 0; k--) {
            n = n * 256 + P[k];
            st[k] = (uint)((1 << (BITS - 1)) * P[k]);
        }
        const float f = bad ? NAN_ : ldexpf(1.f, E - 30);
        st[4] = __float_as_uint(f);
        st[5] = __float_as_uint(bad ? NAN_ : ldexpf((float)n, E - 30));
        st[6] = st[7] = 0u;
    }
}

// mmv_words is the scratch one x takes: the fragments and the stats.
DEVICE_FN int mmv_words(int C) { return 128 * (C / 128) + 8 * (C / 64); }

// norm_stage_body is a norm and the staging of its output for the integer
// matvec in one launch (backend.NormMatMuler; opt-in, FMOE_CUDA_FOLD=1):
// rmsnorm_row, the rmsnorm kernel's own code, so the same y, then
// mmv_stage_block on that y, so the same words, without the staging's
// launch in front of the matvec. perHead: block blk normalises head blk
// (dim values at x + off + blk·dim, the heads contiguous, dim a multiple
// of 64; gated or not, y may alias x) and stages the head's dim/64 blocks.
// Otherwise one vector of dim = C at x + off: every block computes the
// whole norm and writes every y, the same value (so y must not alias x, nor
// x be added to: flags bit 2), and stages the blocks blk·(n/32) + warp.
#ifdef NORM_UNROLL  // norm.h's rmsnorm_row is in the unit (mmvemu takes this file alone)
template <int BITS>
DEVICE_FN void norm_stage_body(float* y, float* x, const float* z, const float* w, int dim, int off, float eps,
                               int flags, uint* xs, int C, bool perHead, int blk, int tid, int n, float* red) {
    const i64 o = (i64)off + (perHead ? (i64)blk * dim : 0);
    rmsnorm_row(y, x, z, w, dim, o, eps, flags, tid, n, red);
    BARRIER();  // the block's y, written above, before its staging reads it
    const int warp = tid >> 5, nw = n >> 5, lane = tid & 31;
    if (perHead) {
        for (int b = warp; b < dim / 64; b += nw) mmv_stage_block<BITS>(y + off, 0, xs, C, blk * (dim / 64) + b, lane);
    } else if (blk * nw + warp < C / 64) {
        mmv_stage_block<BITS>(y + off, 0, xs, C, blk * nw + warp, lane);
    }
}
#endif

// mmv_body computes rows tile·16 .. +15 of y = W·x from x's staged form xs.
// The chunks fall in segments of U (the chunks a lane loads at once: 4 KB
// of weights a warp); warp w of nw takes a contiguous range of segments, a
// segment's sum is formed from zero and stored (red: 16 floats a segment,
// MMV_MAXSEG at most), and the segments are added in order: the result's
// bits do not depend on nw, so a batch job computes what MatMul does.
//
// SMX (the host's default since run 15 measured it faster on every decode
// shape, docs/gpu-decode.md): a warp copies its
// segment's x fragments and sums into shared memory (xsm: MMV_SMX_WORDS
// uint2 a warp) with cp.async right after it issues the weights' loads, so
// that both are in flight at once without registers to hold x; without it
// a warp reads them from L1/L2 only when it uses them, a second latency after the
// weights'. (Issued before the weights, with loops over the copies, the
// copies cost 34 registers more a thread under NVRTC 11.8; after them and
// unrolled, 12 on the batch and 12 fewer on the single matvec.) The same
// values in the same order: the same bits.
#define MMV_MAXSEG 64
#define MMV_SMX_WORDS(BITS) ((16 / (BITS)) * 72)
template <int BITS, bool SMX, bool PIPE = false>
DEVICE_FN void mmv_body(const uint* W, const ushort* S, const ushort* B, const uint* xs, float* y, int R, int C, int G,
                        int tile, int tid, int nw, float* red, uint2* xsm) {
    const int U = 16 / BITS;
    const int np = C / 128, ng = C / G, nseg = (np + U - 1) / U;
    const int gsh = 31 - __clz(G / 64);  // a block's group is b >> gsh: G/64 is a power of two
    const uint2* xb = (const uint2*)xs;
    const uint2* st = (const uint2*)(xs + 128 * np);  // four uint2 a block
    const int lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int r0 = min(tile * 16 + g, R - 1), r1 = min(tile * 16 + g + 8, R - 1);
    const i64 wpr = (i64)C * BITS / 32;
    const float CENTRE = (float)(1 << (BITS - 1));
    // Lane (g, t) feeds B's column g (digit g%4 of block half g/4) on its
    // own slice's k-slots when that slice is in block half t/2; its D
    // columns are digits k0, k0 + 1 of block half t/2.
    const bool feeds = g >> 2 == t >> 1;
    const int bofs = 4 * (g & 3) + t;
    const int half = t >> 1, k0 = 2 * (t & 1);
    const float w0 = k0 ? 65536.f : 1.f, w1 = k0 ? 16777216.f : 256.f;  // 2^(8·k0), 2^(8·(k0 + 1))
    const uint* W0 = W + (i64)r0 * wpr + t * BITS;
    const uint* W1 = W + (i64)r1 * wpr + t * BITS;
    const ushort *S0 = S + (i64)r0 * ng, *S1 = S + (i64)r1 * ng, *B0 = B + (i64)r0 * ng, *B1 = B + (i64)r1 * ng;

    // This warp's copy: U·64 fragments, U·8 sums (SMX), then its weights (PIPE).
    uint2* wx = xsm + (SMX ? warp * (PIPE ? MMV_PIPE_WORDS(BITS) : MMV_SMX_WORDS(BITS)) : 0);
    uint4* wq = (uint4*)(wx + MMV_SMX_WORDS(BITS));
    for (int seg = warp * nseg / nw; seg < (warp + 1) * nseg / nw; seg++) {
        const int p0 = seg * U, pend = min(np, p0 + U);
        // The segment's weights and scales are loaded first (chunks past
        // pend load chunk pend − 1 again: a valid address, unused); x's
        // fragments and sums, read by every warp (L1), when used.
        uint wa[U][BITS], wb[U][BITS];  // unused with PIPE
        float sc[U][4];                  // PIPE: packed in sp instead, two bf16 a word
        uint sp[U][2];
        if (PIPE) __syncwarp();  // the segment before is consumed
        UNROLL for (int u = 0; u < U; u++) {
            const int p = min(p0 + u, pend - 1), grp = (2 * p + half) >> gsh;
            const i64 off = (i64)p * 4 * BITS;
            if (PIPE) {
                mmv_wcopy<BITS>(wq, u, lane, W0 + off, W1 + off);
            } else if (BITS == 2) {
                const uint2 a = *(const uint2*)(W0 + off), c = *(const uint2*)(W1 + off);
                wa[u][0] = a.x, wa[u][1] = a.y, wb[u][0] = c.x, wb[u][1] = c.y;
            } else {
                UNROLL for (int i = 0; i < BITS / 4; i++) {
                    const uint4 a = ((const uint4*)(W0 + off))[i], c = ((const uint4*)(W1 + off))[i];
                    wa[u][4 * i] = a.x, wa[u][4 * i + 1] = a.y, wa[u][4 * i + 2] = a.z, wa[u][4 * i + 3] = a.w;
                    wb[u][4 * i] = c.x, wb[u][4 * i + 1] = c.y, wb[u][4 * i + 2] = c.z, wb[u][4 * i + 3] = c.w;
                }
            }
            if (PIPE) {
                sp[u][0] = (uint)S0[grp] | ((uint)S1[grp] << 16);
                sp[u][1] = (uint)B0[grp] | ((uint)B1[grp] << 16);
            } else {
                sc[u][0] = BF16_TO_FLOAT(S0[grp]), sc[u][1] = BF16_TO_FLOAT(S1[grp]);
                sc[u][2] = BF16_TO_FLOAT(B0[grp]), sc[u][3] = BF16_TO_FLOAT(B1[grp]);
            }
        }
        if (SMX) {
            if (!PIPE) __syncwarp();  // the segment before is consumed
            // Chunk u's 512 bytes of fragments, 16 a lane; its 64 bytes of
            // sums, 16 a lane of the first 4·U (U ≤ 8).
            UNROLL for (int u = 0; u < U; u++) {
                if (p0 + u < pend) mmv_cp16(wx + 2 * (lane + 32 * u), xb + p0 * 64 + 2 * (lane + 32 * u));
            }
            if (lane < (pend - p0) * 4) mmv_cp16(wx + U * 64 + 2 * lane, st + p0 * 8 + 2 * lane);
            mmv_cp_wait();
        }
        float acc0 = 0.f, acc1 = 0.f;
        UNROLL for (int u = 0; u < U; u++) {
            const int p = p0 + u;
            if (p >= pend) break;
            const int blk = 2 * p + half;
            // Chunk u's words and scales: the registers' (copies the
            // compiler drops), or read back and unpacked (PIPE).
            uint ra[BITS], rb[BITS];
            float s0, s1, c0, c1;
            if (PIPE) {
                mmv_wread<BITS>(wq, u, lane, ra, rb);
                s0 = BF16_TO_FLOAT(sp[u][0] & 0xFFFFu), s1 = BF16_TO_FLOAT(sp[u][0] >> 16);
                c0 = BF16_TO_FLOAT(sp[u][1] & 0xFFFFu), c1 = BF16_TO_FLOAT(sp[u][1] >> 16);
            } else {
                UNROLL for (int i = 0; i < BITS; i++) ra[i] = wa[u][i], rb[i] = wb[u][i];
                s0 = sc[u][0], s1 = sc[u][1], c0 = sc[u][2], c1 = sc[u][3];
            }
            int d[4] = {0, 0, 0, 0};
            UNROLL for (int m = 0; m < 4; m++) {
                const uint2 bv = !feeds ? make_uint2(0u, 0u) : SMX ? wx[u * 64 + bofs + 16 * m] : xb[p * 64 + bofs + 16 * m];
                mma_16832_u8s8(d, mmv_reg<BITS>(ra, 2 * m), mmv_reg<BITS>(rb, 2 * m),
                               mmv_reg<BITS>(ra, 2 * m + 1), mmv_reg<BITS>(rb, 2 * m + 1), bv.x, bv.y);
            }
            // Σ(q − c)·n of rows g and g+8 over this lane's two digits:
            // exact integers (|·| < 2^22), weighted by the digits' powers.
            const uint2* sb = SMX ? wx + U * 64 + 8 * u + 4 * half : st + 4 * blk;
            const uint2 cp = sb[k0 >> 1], fx = sb[2];
            const float f = __uint_as_float(fx.x);
            const float v0 = FMAF((float)(d[1] - (int)cp.y), w1, (float)(d[0] - (int)cp.x) * w0);
            const float v1 = FMAF((float)(d[3] - (int)cp.y), w1, (float)(d[2] - (int)cp.x) * w0);
            acc0 = FMAF(s0 * f, v0, acc0);
            acc1 = FMAF(s1 * f, v1, acc1);
            if (k0 == 0) {  // the bias term once per block and row
                const float xsum = __uint_as_float(fx.y);
                acc0 = FMAF(c0 + CENTRE * s0, xsum, acc0);
                acc1 = FMAF(c1 + CENTRE * s1, xsum, acc1);
            }
        }
        // Row g's segment sum is over lanes t = 0..3, in a fixed order.
        acc0 += __shfl_xor_sync(0xffffffffu, acc0, 1);
        acc1 += __shfl_xor_sync(0xffffffffu, acc1, 1);
        acc0 += __shfl_xor_sync(0xffffffffu, acc0, 2);
        acc1 += __shfl_xor_sync(0xffffffffu, acc1, 2);
        if (t == 0) {
            red[seg * 16 + g] = acc0;
            red[seg * 16 + g + 8] = acc1;
        }
    }
    BARRIER();
    if (tid < 16 && tile * 16 + tid < R) {
        float s = red[tid];
        for (int k = 1; k < nseg; k++) s += red[k * 16 + tid];
        y[tile * 16 + tid] = s;
    }
}

#ifndef MMA_EMULATED
// One pair of entry points per format. Staging: grid = (⌈C/512⌉, jobs),
// block = 256 (a warp a 64-column block); the matvec: grid = (⌈R/16⌉,
// jobs), block = 32·nw. The batched forms take batch_cuda.h's job table
// (a null W is a job experts_jobs found no expert for: skipped, as there)
// and job j's staged x at xs + j·xstride (mmv_words(C), or 0 where every
// job has the same x, staged once by mmv_stage). mmv_stage_swiglu stages
// job j's SwiGLU of its x (a row of g) and the same row of u. mmvs_* are
// the matvecs with SMX, compiled only with FMOE_MMV_SMX defined (the host
// asks for it with the variant): their launch gives nw·MMV_SMX_WORDS(BITS)·8
// bytes of dynamic shared memory.
#define MMV_MATVECS(name, bname, BITS, SMX, XSM) MMV_MATVECS_P(name, bname, BITS, SMX, false, XSM, MMV_BOUNDS)
#define MMV_BOUNDS __launch_bounds__(32 * MMV_MAXW)
// PIPE holds no weights in registers: two blocks of 16 warps an SM (64
// registers a thread) instead of one.
#define MMV_PIPE_BOUNDS __launch_bounds__(32 * MMV_MAXW, 2)
#define MMV_MATVECS_P(name, bname, BITS, SMX, PIPE, XSM, BOUNDS)                                            \
    extern "C" __global__ void BOUNDS name(const uint* W, const ushort* S, const ushort* B, \
                                                               const uint* xs, float* y, int R, int C, int G) { \
        GRID_WAIT();                                                                                            \
        __shared__ float red[16 * MMV_MAXSEG];                                                                    \
        XSM(name)                                                                                               \
        mmv_body<BITS, SMX, PIPE>(W, S, B, xs, y, R, C, G, blockIdx.x, threadIdx.x, blockDim.x >> 5, red, xsm); \
    }                                                                                                           \
    extern "C" __global__ void BOUNDS bname(const mv_job* jobs, const uint* xs, int R, \
                                                                     int C, int G, int xstride) {               \
        GRID_WAIT();                                                                                            \
        __shared__ float red[16 * MMV_MAXSEG];                                                                    \
        XSM(bname)                                                                                              \
        const mv_job j = jobs[blockIdx.y];                                                                      \
        if (j.W == 0) return;                                                                                   \
        mmv_body<BITS, SMX, PIPE>((const uint*)j.W, j.S, j.B, xs + (i64)blockIdx.y * xstride, j.y, R, C, G,    \
                                  blockIdx.x, threadIdx.x, blockDim.x >> 5, red, xsm);                          \
    }
// The default matvecs' xsm is null; the SMX ones' the launch's dynamic
// shared memory.
#define MMV_XSM_NONE(name) uint2* xsm = 0;
#define MMV_XSM_DYN(name)                          \
    extern __shared__ __align__(16) uint2 xsm_##name[]; \
    uint2* xsm = xsm_##name;
#define MMV_KERNELS(sfx, BITS)                                                                                  \
    extern "C" __global__ void __launch_bounds__(256) mmv_stage_##sfx(const float* x, uint* xs, int C) {        \
        GRID_WAIT();                                                                                            \
        const int b = blockIdx.x * 8 + (threadIdx.x >> 5);                                                      \
        if (b < C / 64) mmv_stage_block<BITS>(x, 0, xs, C, b, threadIdx.x & 31);                                \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(256) mmv_stage_batch_##sfx(const mv_job* jobs, uint* xs, int C) { \
        GRID_WAIT();                                                                                               \
        const mv_job j = jobs[blockIdx.y];                                                                      \
        const int b = blockIdx.x * 8 + (threadIdx.x >> 5);                                                      \
        if (j.W != 0 && b < C / 64)                                                                             \
            mmv_stage_block<BITS>(j.x, 0, xs + (i64)blockIdx.y * mmv_words(C), C, b, threadIdx.x & 31);         \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(256) mmv_stage_swiglu_##sfx(const mv_job* jobs, uint* xs, int C, \
                                                                             const float* g, const float* u) {  \
        GRID_WAIT();                                                                                            \
        const mv_job j = jobs[blockIdx.y];                                                                      \
        const int b = blockIdx.x * 8 + (threadIdx.x >> 5);                                                      \
        if (j.W != 0 && b < C / 64)                                                                             \
            mmv_stage_block<BITS>(j.x, u + (j.x - g), xs + (i64)blockIdx.y * mmv_words(C), C, b, threadIdx.x & 31); \
    }                                                                                                           \
    MMV_MATVECS(mmv_##sfx, mmv_batch_##sfx, BITS, false, MMV_XSM_NONE)

MMV_KERNELS(q2, 2)
MMV_KERNELS(q4, 4)
MMV_KERNELS(q8, 8)

// norm_stage_*: grid = heads (perHead) or ⌈C/64 / warps⌉, block = the
// rmsnorm launch's threads for dim (the same block_sum, so the same sums).
#define NORM_STAGE(sfx, BITS)                                                                                   \
    extern "C" __global__ void norm_stage_##sfx(float* y, float* x, const float* z, const float* w, int dim,     \
                                                int off, float eps, int flags, uint* xs, int C, int perHead) {  \
        GRID_WAIT();                                                                                            \
        __shared__ __align__(16) float red[32];                                                                 \
        norm_stage_body<BITS>(y, x, z, w, dim, off, eps, flags, xs, C, perHead != 0, blockIdx.x, threadIdx.x,    \
                              blockDim.x, red);                                                                 \
    }
NORM_STAGE(q2, 2)
NORM_STAGE(q4, 4)
NORM_STAGE(q8, 8)

// jobs_stage_*: the indexed experts' job tables (block 0: experts_jobs_body,
// route_cuda.h) and their x staged for the gate and up matvecs (blocks 1..:
// mmv_stage's blocks, 8 a block) in one launch (Options.Fold): two pieces
// of work that read nothing the other writes. grid = 1 + ⌈C/512⌉, block =
// 256.
#define JOBS_STAGE(sfx, BITS)                                                                                     \
    extern "C" __global__ void __launch_bounds__(256)                                                             \
        jobs_stage_##sfx(const unsigned long long* index, int E, const float* ids, float* status, mv_job* gu,     \
                         mv_job* dn, const float* x, float* g, float* u, float* eo, int K, int I, int H,          \
                         const unsigned long long* shared, uint* xs, int C) {                                    \
        GRID_WAIT();                                                                                              \
        __shared__ int missed[32];                                                                                \
        if (blockIdx.x == 0) {                                                                                    \
            experts_jobs_body(index, E, ids, status, gu, dn, x, g, u, eo, K, I, H, shared, threadIdx.x, blockDim.x, \
                              missed);                                                                            \
            return;                                                                                               \
        }                                                                                                         \
        const int b = (blockIdx.x - 1) * 8 + (threadIdx.x >> 5);                                                  \
        if (b < C / 64) mmv_stage_block<BITS>(x, 0, xs, C, b, threadIdx.x & 31);                                  \
    }
JOBS_STAGE(q2, 2)
JOBS_STAGE(q4, 4)
JOBS_STAGE(q8, 8)
#ifdef FMOE_MMV_SMX
MMV_MATVECS(mmvs_q2, mmvs_batch_q2, 2, true, MMV_XSM_DYN)
MMV_MATVECS(mmvs_q4, mmvs_batch_q4, 4, true, MMV_XSM_DYN)
MMV_MATVECS(mmvs_q8, mmvs_batch_q8, 8, true, MMV_XSM_DYN)
#ifdef FMOE_MMV_PIPE
MMV_MATVECS_P(mmvp_q2, mmvp_batch_q2, 2, true, true, MMV_XSM_DYN, MMV_PIPE_BOUNDS)
MMV_MATVECS_P(mmvp_q4, mmvp_batch_q4, 4, true, true, MMV_XSM_DYN, MMV_PIPE_BOUNDS)
MMV_MATVECS_P(mmvp_q8, mmvp_batch_q8, 8, true, true, MMV_XSM_DYN, MMV_PIPE_BOUNDS)
#endif
#endif
#endif
