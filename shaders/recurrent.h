// recurrent.h: the GatedDeltaNet pieces with state: the causal depthwise
// conv1d and the gated delta rule.

#define CONV_MAXK 8

// conv1d: one thread per channel walks the T steps in order, keeping the
// previous K-1 inputs in registers (oldest first), so y may alias x: step t
// reads x[t] before writing y[t] and no other thread touches the channel.
// w is [C, K] float32 (tap K-1 multiplies the current input); state is
// [K-1, C] and ends holding the last K-1 inputs.
KERNEL(conv1d)(PARAM_PTR(float, y, 0), PARAM_PTR(const float, x, 1), PARAM_PTR(const float, w, 2),
               PARAM_PTR(float, state, 3), PARAM(int, T, 4), PARAM(int, C, 5), PARAM(int, K, 6) KERNEL_IDS) {
    GRID_WAIT();
    int c = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (c >= C) return;
    float win[CONV_MAXK];
    float wt[CONV_MAXK];
    UNROLL for (int k = 0; k < CONV_MAXK; k++) {
        win[k] = k < K - 1 ? state[(i64)k * C + c] : 0.0f;
        wt[k] = k < K ? w[(i64)c * K + k] : 0.0f;
    }
    for (int t = 0; t < T; t++) {
        float xin = x[(i64)t * C + c];
        float acc = 0.0f;
        UNROLL for (int k = 0; k < CONV_MAXK; k++) {
            if (k < K - 1) acc = FMAF(wt[k], win[k], acc);
            else if (k == K - 1) acc = FMAF(wt[k], xin, acc);
        }
        y[(i64)t * C + c] = silu_(acc);
        UNROLL for (int k = 0; k < CONV_MAXK - 1; k++) {
            if (k < K - 2) win[k] = win[k + 1];
            else if (k == K - 2) win[k] = xin;
        }
    }
    UNROLL for (int k = 0; k < CONV_MAXK; k++)
        if (k < K - 1) state[(i64)k * C + c] = win[k];
}

// delta_prep l2-normalises q and k of every token: qk[t][j] for j < 2·Hk
// (q heads then k heads), q also scaled by 1/sqrt(Dk). grid = (2·Hk, T),
// block = 32, Dk ≤ 32·DELTA_MAXW (delta_step's bound). A lane's elements
// are loaded at once and kept for the second pass (one memory latency, not
// one an element and again for the write); a lane past Dk adds
// fma(0, 0, ss) = ss, so the sums are those of the loop over i < Dk.
#define DELTA_MAXW 8
KERNEL(delta_prep)(PARAM_PTR(float, qk, 0), PARAM_PTR(const float, qkv, 1), PARAM(int, W, 2), PARAM(int, Hk, 3),
                   PARAM(int, Dk, 4), PARAM(float, eps, 5), PARAM(float, qscale, 6) KERNEL_IDS) {
    GRID_WAIT();
    int j = BLOCK_ID_X, t = BLOCK_ID_Y, lane = THREAD_ID_X;
    i64 src = (i64)t * W + (i64)j * Dk;
    i64 dst = ((i64)t * 2 * Hk + j) * Dk;
    float v[DELTA_MAXW];
    float ss = 0.0f;
    UNROLL for (int u = 0; u < DELTA_MAXW; u++) {
        int i = lane + 32 * u;
        v[u] = i < Dk ? qkv[src + i] : 0.0f;
        ss = FMAF(v[u], v[u], ss);
    }
    ss = SIMD_SUM(ss);
    float r = RSQRTF(ss + eps);
    if (j < Hk) r *= qscale;
    UNROLL for (int u = 0; u < DELTA_MAXW; u++) {
        int i = lane + 32 * u;
        if (i < Dk) qk[dst + i] = v[u] * r;
    }
}

// delta_step runs the recurrence for value head h = BLOCK_ID_Y and the 32
// state columns j = 32·BLOCK_ID_X + lane, over all T tokens. Column j of
// S[h] (Dk values) is independent of the other columns, so the state stays
// in registers for the whole call: warp w holds rows 32w .. 32w+31, and the
// two dot products over rows (Sᵀk and Sᵀq) are summed across warps through
// shared memory. block = 32·ceil(Dk/32) threads, Dk ≤ 32·DELTA_MAXW.
//
// The steps are sequential, so a step must not wait for its inputs: token
// t+1's k and q (one element a thread), v, a and b are loaded into
// registers while token t computes, and staged into shared memory (two
// buffers) before token t's last barrier, where every row reads them. A
// step reading them from global memory when it needs them waited out a
// memory latency each time (ncu, a 512-token prompt of the 397B: 1.7 ms a
// layer, 9 of 13 cycles a warp waits per instruction on a load). The same
// values in the same operations: the same bits.

KERNEL(delta_step)(PARAM_PTR(float, y, 0), PARAM_PTR(const float, qk, 1), PARAM_PTR(const float, qkv, 2),
                   PARAM_PTR(const float, a, 3), PARAM_PTR(const float, b, 4), PARAM_PTR(const float, aLog, 5),
                   PARAM_PTR(const float, dtBias, 6), PARAM_PTR(float, state, 7), PARAM(int, T, 8), PARAM(int, Hk, 9),
                   PARAM(int, Dk, 10), PARAM(int, Hv, 11), PARAM(int, Dv, 12) KERNEL_IDS) {
    GRID_WAIT();
    SHARED(float, red, DELTA_MAXW * 32);
    SHARED(float, ks, 2 * DELTA_MAXW * 32);  // token t's k in half t&1
    SHARED(float, qs, 2 * DELTA_MAXW * 32);  // and its q
    int h = BLOCK_ID_Y, tid = THREAD_ID_X;
    int lane = tid & 31, w = tid >> 5, nw = BLOCK_DIM_X >> 5;
    int j = BLOCK_ID_X * 32 + lane;
    bool jok = j < Dv;
    int kh = h / (Hv / Hk);
    i64 W = 2 * (i64)Hk * Dk + (i64)Hv * Dv;
    i64 sh = (i64)h * Dk * Dv;
    float S[32];
    UNROLL for (int r = 0; r < 32; r++) {
        int i = w * 32 + r;
        S[r] = jok && i < Dk ? state[sh + (i64)i * Dv + j] : 0.0f;
    }
    float A = -EXPF(aLog[h]);
    // Token t's inputs as this thread loads them: element tid of k and of
    // q, column j of v, and the head's a and b.
    float kn = 0.0f, qn = 0.0f, vn = 0.0f, an = 0.0f, bn = 0.0f;
    if (T > 0) {
        if (tid < Dk) {
            kn = qk[(i64)(Hk + kh) * Dk + tid];
            qn = qk[(i64)kh * Dk + tid];
        }
        vn = jok ? qkv[2 * (i64)Hk * Dk + (i64)h * Dv + j] : 0.0f;
        an = a[h];
        bn = b[h];
    }
    ks[tid] = kn;
    qs[tid] = qn;
    BARRIER();
    for (int t = 0; t < T; t++) {
        const int cur = (t & 1) * DELTA_MAXW * 32;
        float av = an + dtBias[h];
        float braw = bn, vj = vn;
        if (t + 1 < T) {
            i64 qb = ((i64)(t + 1) * 2 * Hk + kh) * Dk;
            i64 kb = ((i64)(t + 1) * 2 * Hk + Hk + kh) * Dk;
            if (tid < Dk) {
                kn = qk[kb + tid];
                qn = qk[qb + tid];
            }
            vn = jok ? qkv[(i64)(t + 1) * W + 2 * (i64)Hk * Dk + (i64)h * Dv + j] : 0.0f;
            an = a[(i64)(t + 1) * Hv + h];
            bn = b[(i64)(t + 1) * Hv + h];
        }
        float sp = av > 20.0f ? av : LOG1PF(EXPF(av));
        float g = EXPF(A * sp);
        float beta = sigmoid_(braw);
        float mem = 0.0f;
        UNROLL for (int r = 0; r < 32; r++) {
            int i = w * 32 + r;
            if (i < Dk) {
                S[r] *= g;
                mem = FMAF(S[r], ks[cur + i], mem);
            }
        }
        red[w * 32 + lane] = mem;
        BARRIER();
        float tot = 0.0f;
        for (int u = 0; u < nw; u++) tot += red[u * 32 + lane];
        BARRIER();
        float d = (vj - tot) * beta;
        float o = 0.0f;
        UNROLL for (int r = 0; r < 32; r++) {
            int i = w * 32 + r;
            if (i < Dk) {
                S[r] = FMAF(ks[cur + i], d, S[r]);
                o = FMAF(S[r], qs[cur + i], o);
            }
        }
        red[w * 32 + lane] = o;
        BARRIER();
        if (w == 0 && jok) {
            float s = 0.0f;
            for (int u = 0; u < nw; u++) s += red[u * 32 + lane];
            y[((i64)t * Hv + h) * Dv + j] = s;
        }
        // Token t+1's k and q into the other half, read after this barrier;
        // that half was last read before token t's first barrier.
        ks[DELTA_MAXW * 32 - cur + tid] = kn;
        qs[DELTA_MAXW * 32 - cur + tid] = qn;
        BARRIER();
    }
    UNROLL for (int r = 0; r < 32; r++) {
        int i = w * 32 + r;
        if (jok && i < Dk) state[sh + (i64)i * Dv + j] = S[r];
    }
}
