// route_cuda.h (CUDA only, after batch_cuda.h): a decode step routed on the
// device (docs/gpu-decode.md A-C). route_topk picks each token's experts
// from the router's logits; experts_jobs turns the picked ids into the job
// tables of batch_cuda.h's matvecs through the expert cache's device index;
// moe_combine_idx is moe_combine1 with the weights in device memory. None
// of them needs the host between the router and the combine.

#define ROUTE_THREADS 32

// route_before: expert (a, ia) comes before (b, ib) in the router's order:
// a larger logit first, equal logits by lower index (backend.TopK's strict
// '>'). NaN never reaches it (route_topk checks first).
DEVICE_FN bool route_before(float a, int ia, float b, int ib) { return a > b || (a == b && ia < ib); }

// route_min_ keeps in (bv, bi) the earlier of itself and (v, i) by
// selects, no branch; "none" is (−Inf, ROUTE_NONE), which every expert
// comes before (a −Inf logit by its lower index).
#define ROUTE_NONE 0x7fffffff
DEVICE_FN void route_min_(float& bv, int& bi, float v, int i) {
    const bool t = route_before(v, i, bv, bi);
    bv = t ? v : bv;
    bi = t ? i : bi;
}

// route_topk: one warp (ROUTE_THREADS) per token of logits [T, E]. The K
// picks are K warp-wide argmins of the order above, each over the experts
// that come after the previous pick, so no chosen-set is kept and ties
// resolve exactly as on the host. One warp and shuffles, no block
// barriers (a block of 256 threads meeting at two barriers per pick took
// ~18 µs at K=10). A lane keeps its first ROUTE_REGS logits (lane + 32r) in
// registers, read once: read from memory at every pick, the picks waited out
// a load latency each (18 µs at E=512, K=10 on an H200, docs/benchmarks.md
// run 14); experts past 32·ROUTE_REGS are read at each pick. ids [T, K] get
// the ids as floats, in ascending id; w [T, K] their softmax weights in
// double precision as backend.Route computes them: exp(l_i - m) / sum, over
// the K picks (renorm) or all E. A NaN logit makes the token's ids 0..K-1
// (weights 0) and sets status[0] = 1.
#define ROUTE_REGS 16 // the candidates' tree below is written for 16
KERNEL(route_topk)(const float* logits, float* ids, float* w, float* status, int E, int K, int renorm) {
    GRID_WAIT();
    const float* l = logits + (i64)BLOCK_ID_X * E;
    float* oid = ids + (i64)BLOCK_ID_X * K;
    float* ow = w + (i64)BLOCK_ID_X * K;
    const int lane = THREAD_ID_X;
    float v[ROUTE_REGS];
    int nan = 0;
    UNROLL for (int r = 0; r < ROUTE_REGS; r++) {
        const int i = lane + 32 * r;
        v[r] = i < E ? l[i] : 0.0f;
        nan |= v[r] != v[r];
    }
    for (int i = lane + 32 * ROUTE_REGS; i < E; i += 32) nan |= l[i] != l[i];
    UNROLL for (int o = 16; o > 0; o >>= 1) nan |= __shfl_xor_sync(0xffffffffu, nan, o);
    if (nan) {
        for (int j = lane; j < K; j += 32) {
            oid[j] = (float)j;
            ow[j] = 0.0f;
        }
        if (lane == 0) status[0] = 1.0f;
        return;
    }
    float pv = INFINITY_F, m = 0.0f, mv = 0.0f;
    int pi = -1, mi = 0; // (+Inf, -1) comes before every expert; (mv, mi): pick `lane`
    for (int j = 0; j < K; j++) {
        // The lane's candidates (those after the last pick) reduced as a
        // tree by selects: the earliest of a strict order is the same
        // whatever the order of the comparisons, and a chain of branches
        // was most of a pick's time.
        float cv[ROUTE_REGS];
        int ci[ROUTE_REGS];
        UNROLL for (int r = 0; r < ROUTE_REGS; r++) {
            const int i = lane + 32 * r;
            const bool ok = i < E && route_before(pv, pi, v[r], i);
            cv[r] = ok ? v[r] : -INFINITY_F;
            ci[r] = ok ? i : ROUTE_NONE;
        }
        // The tree's four levels written out: as a loop over h >>= 1 (or
        // over the level with h computed) NVRTC left cv and ci in a
        // 128-byte local array (ptxas's stack frame), ~45 dependent local
        // accesses a pick; with constant bounds they are registers (67 a
        // thread, no stack). The same pairs in the same order.
        UNROLL for (int r = 0; r < 8; r++) route_min_(cv[r], ci[r], cv[r + 8], ci[r + 8]);
        UNROLL for (int r = 0; r < 4; r++) route_min_(cv[r], ci[r], cv[r + 4], ci[r + 4]);
        UNROLL for (int r = 0; r < 2; r++) route_min_(cv[r], ci[r], cv[r + 2], ci[r + 2]);
        route_min_(cv[0], ci[0], cv[1], ci[1]);
        float bv = cv[0];
        int bi = ci[0];
        for (int i = lane + 32 * ROUTE_REGS; i < E; i += 32) {
            const float x = l[i];
            if (route_before(pv, pi, x, i)) route_min_(bv, bi, x, i);
        }
        UNROLL for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            route_min_(bv, bi, ov, oi);
        }
        pv = bv;
        pi = bi;
        if (j == 0) m = bv;
        if (lane == j) mv = bv, mi = bi;
        if (K > 32 && lane == 0) {
            oid[j] = (float)bi;
            ow[j] = bv; // the logit, until the weights below
        }
    }
    const double md = (double)m;
    double s = 0.0;
    if (!renorm) {
        UNROLL for (int r = 0; r < ROUTE_REGS; r++) {
            if (lane + 32 * r < E) s += exp((double)v[r] - md);
        }
        for (int i = lane + 32 * ROUTE_REGS; i < E; i += 32) s += exp((double)l[i] - md);
        UNROLL for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    }
    if (K <= 32) {
        // Pick j's weight on lane j; over the picks, the sum in pick order
        // (the host's), broadcast pick by pick; each pick's place in
        // ascending id is the number of picks with a smaller id.
        const double e = lane < K ? exp((double)mv - md) : 0.0;
        if (renorm) {
            for (int j = 0; j < K; j++) s += __shfl_sync(0xffffffffu, e, j);
        }
        int at = 0;
        for (int j = 0; j < K; j++) at += __shfl_sync(0xffffffffu, mi, j) < mi;
        if (lane < K) {
            oid[at] = (float)mi;
            ow[at] = (float)(e / s);
        }
        return;
    }
    if (renorm && lane == 0) {
        for (int j = 0; j < K; j++) s += exp((double)ow[j] - md);
    }
    if (lane == 0) {
        for (int j = 0; j < K; j++) ow[j] = (float)(exp((double)ow[j] - md) / s);
        // In ascending id (the order the host path's combine adds them in):
        // an insertion sort of the K picks with their weights.
        for (int j = 1; j < K; j++) {
            const float fi = oid[j], fw = ow[j];
            int k = j;
            for (; k > 0 && oid[k - 1] > fi; k--) {
                oid[k] = oid[k - 1];
                ow[k] = ow[k - 1];
            }
            oid[k] = fi;
            ow[k] = fw;
        }
    }
}

// EXPERT_PTRS is the expert cache's device index entry of one expert: the
// data, scales and biases pointers of its gate, up and down projections
// (cache index in runtime/backend/cuda/index.go), all 0 when not held.
#define EXPERT_PTRS 9

// experts_jobs builds the job tables of a decode step's K routed experts
// (K <= 32, one block): gu[i] and gu[K + i] the gate and up matvecs of
// expert ids[i] (x -> g + i*I, u + i*I), dn[i] its down matvec (g + i*I ->
// eo + i*H), each job what MatVecBatch would upload for it. An id that is
// not an integer in [0, E) or whose entry is 0 (not held) is a miss: its
// jobs get null weights (matvec_batch_* skips them), its eo row is zeroed
// and status[0] = 2. With shared (a layer's shared expert: EXPERT_PTRS
// pointers, the same shapes) it is job K of each projection, the tables'
// stride K + 1 (gu[K + 1 + i] the up matvecs, g + K*I, eo + K*H its rows).
// experts_jobs_body is its work, thread tid of nt, missed a block-shared
// array of 32: the kernel's, and mmv_cuda.h's jobs_stage_* block 0's.
DEVICE_FN void experts_jobs_body(const unsigned long long* index, int E, const float* ids, float* status, mv_job* gu,
                                 mv_job* dn, const float* x, float* g, float* u, float* eo, int K, int I, int H,
                                 const unsigned long long* shared, int tid, int nt, int* missed) {
    const int i = tid;
    const int n = shared ? K + 1 : K;  // jobs a projection: the shared expert is job K
    if (i < n) {
        bool ok = i == K;
        const unsigned long long* p = shared;
        if (i < K) {
            const float f = ids[i];
            ok = f >= 0.0f && f < (float)E; // false for NaN
            const int e = ok ? (int)f : 0;
            ok = ok && (float)e == f;
            p = index + (i64)e * EXPERT_PTRS;
        }
        ok = ok && p[0] != 0 && p[3] != 0 && p[6] != 0;
        mv_job a, b, c;
        a.W = ok ? (const uint4*)p[0] : 0;
        a.S = ok ? (const ushort*)p[1] : 0;
        a.B = ok ? (const ushort*)p[2] : 0;
        a.x = x;
        a.y = g + (i64)i * I;
        b.W = ok ? (const uint4*)p[3] : 0;
        b.S = ok ? (const ushort*)p[4] : 0;
        b.B = ok ? (const ushort*)p[5] : 0;
        b.x = x;
        b.y = u + (i64)i * I;
        c.W = ok ? (const uint4*)p[6] : 0;
        c.S = ok ? (const ushort*)p[7] : 0;
        c.B = ok ? (const ushort*)p[8] : 0;
        c.x = g + (i64)i * I;
        c.y = eo + (i64)i * H;
        gu[i] = a;
        gu[n + i] = b;
        dn[i] = c;
        if (i < K) missed[i] = !ok;
        if (!ok) status[0] = 2.0f;
    }
    BARRIER();
    for (int r = 0; r < K; r++) {
        if (!missed[r]) continue;
        for (int j = tid; j < H; j += nt) eo[(i64)r * H + j] = 0.0f;
    }
}

KERNEL(experts_jobs)(const unsigned long long* index, int E, const float* ids, float* status, mv_job* gu, mv_job* dn,
                     const float* x, float* g, float* u, float* eo, int K, int I, int H,
                     const unsigned long long* shared) {
    GRID_WAIT();
    SHARED(int, missed, 32);
    experts_jobs_body(index, E, ids, status, gu, dn, x, g, u, eo, K, I, H, shared, THREAD_ID_X, BLOCK_DIM_X, missed);
}

// moe_combine_idx is moe_combine1 (batch_cuda.h) with the K (at most 32) weights read
// from w in device memory (as route_topk writes them): the same fused
// multiply-adds in the same order, so the same bits.
KERNEL(moe_combine_idx)(float* h, const float* eo, const float* sd, const float* gate, const float* w, int m, int count,
                        int mode) {
    GRID_WAIT();
    int j = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (j >= m) return;
    // Unrolled as moe_combine1 (count ≤ 32): the rows' loads are issued
    // together rather than one latency each.
    float a = 0.0f;
    UNROLL for (int i = 0; i < 32; i++) {
        if (i < count) a = FMAF(w[i], eo[(i64)i * m + j], a);
    }
    combine_finish_(h, sd, gate, a, mode, j);
}

// read_mapped copies n words of src to dst, pinned host memory the kernel
// writes over the link at its host address (unified addressing): the
// host's small reads (the routed ids a partly held layer waits for, a
// greedy pick); or device memory: a small Copy. A DMA read (cuMemcpyDtoHAsync) queues for a copy engine,
// behind a prefetch's 7 MB crossing the other way when the driver gives
// both to one engine; the SMs' stores do not wait for it. The fence makes
// the stores visible to the host before the kernel counts as finished.
// Words, not floats: the bits as they are (a NaN's payload included).
KERNEL(read_mapped)(uint* dst, const uint* src, int n) {
    GRID_WAIT();
    for (int i = THREAD_ID_X; i < n; i += BLOCK_DIM_X) dst[i] = src[i];
    __threadfence_system();
}

// write_mapped is read_mapped the other way (FMOE_CUDA_UPLOAD=mapped, an
// experiment): n bytes the host left in pinned memory (src, read over the
// link at its host address) to device memory, for the host's small
// uploads (a batch's job table, an expert's index entry). A DMA upload
// queues for a copy engine behind a miss's or a prefetch's 7 MB going the
// same way; the SMs' loads do not. GRID_WAIT first: the kernel before may
// still read the bytes this one overwrites (the params scratch is reused
// in stream order).
KERNEL(write_mapped)(unsigned char* dst, const unsigned char* src, int n) {
    GRID_WAIT();
    for (int i = THREAD_ID_X; i < n; i += BLOCK_DIM_X) dst[i] = src[i];
}
