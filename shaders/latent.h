// latent.h: DeepSeek-V3's Multi-head Latent Attention with kv_b_proj absorbed
// (Backend.LatentAttention), in three kernels: each head's query taken into the
// latent space by its key rows of kv_b_proj, attention over the cached latents
// and rotary keys, and each head's latent output taken out by its value rows.
// kv_b_proj is [H·(nope+V), L]: head h's key rows start at h·(nope+V), its
// value rows nope rows later.

#define LAT_MAXL 16 // latent dims per lane: L ≤ 32·LAT_MAXL
#define LAT_MAXR 4  // rotary-key dims per lane: R ≤ 32·LAT_MAXR
#define LAT_MAXW 8  // warps per block

// mla_qabsorb: ql[t, h, c] = Σ_i q[t, h, i]·W[h·(nope+V) + i, c] over the
// nope dims of the query. grid = (H, T); the block's threads stride over c,
// so that each row of W is read coalesced.
KERNEL(mla_qabsorb)(PARAM_PTR(const uint, W, 0), PARAM_PTR(const ushort, S, 1), PARAM_PTR(const ushort, B, 2),
                    PARAM_PTR(const float, q, 3), PARAM_PTR(float, ql, 4), PARAM(int, H, 5), PARAM(int, nope, 6),
                    PARAM(int, qw, 7), PARAM(int, V, 8), PARAM(int, L, 9), PARAM(int, G, 10),
                    PARAM(int, fmt, 11) KERNEL_IDS) {
    GRID_WAIT();
    int h = BLOCK_ID_X, t = BLOCK_ID_Y;
    i64 th = (i64)t * H + h;
    i64 r0 = (i64)h * (nope + V);
    for (int c = THREAD_ID_X; c < L; c += BLOCK_DIM_X) {
        float acc = 0.0f;
        for (int i = 0; i < nope; i++) acc = FMAF(q[th * qw + i], dequant_elem(fmt, W, S, B, r0 + i, c, L, G), acc);
        ql[th * L + c] = acc;
    }
}

// mla_attention: for query t (position pos0+t) and head h, scores
// scale·(ql·lat[p] + qr·kr[p]) over p ≤ pos0+t, softmax, and
// ol[t, h] = Σ_p w_p·lat[p]. One block per (head, token); as attention.h,
// each warp walks positions warp, warp+nw, ... with an online softmax (lane
// i owns dims i, i+32, ...) and the warps merge through shared memory.
KERNEL(mla_attention)(PARAM_PTR(float, ol, 0), PARAM_PTR(const float, ql, 1), PARAM_PTR(const float, q, 2),
                      PARAM_PTR(const float, lat, 3), PARAM_PTR(const float, kr, 4), PARAM(int, H, 5), PARAM(int, L, 6),
                      PARAM(int, R, 7), PARAM(int, qw, 8), PARAM(int, nope, 9), PARAM(int, pos0, 10),
                      PARAM(float, scale, 11) KERNEL_IDS) {
    GRID_WAIT();
    SHARED(float, sm, LAT_MAXW);
    SHARED(float, sl, LAT_MAXW);
    SHARED(float, sacc, LAT_MAXW * 32 * LAT_MAXL);
    int h = BLOCK_ID_X, t = BLOCK_ID_Y, tid = THREAD_ID_X;
    int lane = tid & 31, warp = tid >> 5, nw = BLOCK_DIM_X >> 5;
    i64 th = (i64)t * H + h;
    float qa[LAT_MAXL], qb[LAT_MAXR], acc[LAT_MAXL];
    UNROLL for (int i = 0; i < LAT_MAXL; i++) {
        int d = lane + 32 * i;
        qa[i] = d < L ? ql[th * L + d] * scale : 0.0f;
        acc[i] = 0.0f;
    }
    UNROLL for (int i = 0; i < LAT_MAXR; i++) {
        int d = lane + 32 * i;
        qb[i] = d < R ? q[th * qw + nope + d] * scale : 0.0f;
    }
    float m = -INFINITY_F, l = 0.0f;
    int last = pos0 + t;
    for (int p = warp; p <= last; p += nw) {
        i64 lb = (i64)p * L, rb = (i64)p * R;
        float x[LAT_MAXL];
        float s = 0.0f;
        UNROLL for (int i = 0; i < LAT_MAXL; i++) {
            int d = lane + 32 * i;
            x[i] = d < L ? lat[lb + d] : 0.0f;
            s = FMAF(qa[i], x[i], s);
        }
        UNROLL for (int i = 0; i < LAT_MAXR; i++) {
            int d = lane + 32 * i;
            if (d < R) s = FMAF(qb[i], kr[rb + d], s);
        }
        s = SIMD_SUM(s);
        float mn = FMAXF(m, s);
        float corr = EXPF(m - mn);
        float pw = EXPF(s - mn);
        l = FMAF(l, corr, pw);
        UNROLL for (int i = 0; i < LAT_MAXL; i++) acc[i] = FMAF(pw, x[i], acc[i] * corr);
        m = mn;
    }
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
    UNROLL for (int i = 0; i < LAT_MAXL; i++) {
        int d = lane + 32 * i;
        if (d < L) sacc[warp * L + d] = acc[i];
    }
    BARRIER();
    float M = -INFINITY_F;
    for (int w = 0; w < nw; w++) M = FMAXF(M, sm[w]);
    float Z = 0.0f;
    for (int w = 0; w < nw; w++) Z += sl[w] * EXPF(sm[w] - M);
    for (int d = tid; d < L; d += BLOCK_DIM_X) {
        float a = 0.0f;
        for (int w = 0; w < nw; w++) a += sacc[w * L + d] * EXPF(sm[w] - M);
        ol[th * L + d] = a / Z;
    }
}

// mla_oabsorb: out[t, h·V + v] = Σ_c W[h·(nope+V) + nope + v, c]·ol[t, h, c].
// One warp per (head·V + v, token), as matvec_generic. grid = (H·V, T),
// block = 32.
KERNEL(mla_oabsorb)(PARAM_PTR(const uint, W, 0), PARAM_PTR(const ushort, S, 1), PARAM_PTR(const ushort, B, 2),
                    PARAM_PTR(const float, ol, 3), PARAM_PTR(float, out, 4), PARAM(int, H, 5), PARAM(int, nope, 6),
                    PARAM(int, V, 7), PARAM(int, L, 8), PARAM(int, G, 9), PARAM(int, fmt, 10) KERNEL_IDS) {
    GRID_WAIT();
    int hv = BLOCK_ID_X, t = BLOCK_ID_Y, lane = THREAD_ID_X;
    int h = hv / V, v = hv - h * V;
    i64 r = (i64)h * (nope + V) + nope + v;
    i64 th = (i64)t * H + h;
    float acc = 0.0f;
    for (int c = lane; c < L; c += 32) acc = FMAF(dequant_elem(fmt, W, S, B, r, c, L, G), ol[th * L + c], acc);
    acc = SIMD_SUM(acc);
    if (lane == 0) out[th * V + v] = acc;
}
