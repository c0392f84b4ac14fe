// elementwise.h: SwiGLU, gather, scatter-add, gated add, add. 1-D grids of
// BLOCK_DIM_X threads, one element per thread.

KERNEL(swiglu)(PARAM_PTR(float, y, 0), PARAM_PTR(const float, g, 1), PARAM_PTR(const float, u, 2),
               PARAM(int, n, 3) KERNEL_IDS) {
    GRID_WAIT();
    int i = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (i < n) y[i] = swiglu_(g[i], u[i]);
}

KERNEL(add)(PARAM_PTR(float, dst, 0), PARAM_PTR(const float, src, 1), PARAM(int, n, 2) KERNEL_IDS) {
    GRID_WAIT();
    int i = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (i < n) dst[i] += src[i];
}

// gated_add: h[t, j] += sigmoid(gate[t])·x[t, j], rows of m values.
KERNEL(gated_add)(PARAM_PTR(float, h, 0), PARAM_PTR(const float, x, 1), PARAM_PTR(const float, gate, 2),
                  PARAM(int, m, 3), PARAM(int, n, 4) KERNEL_IDS) {
    GRID_WAIT();
    int i = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (i < n) h[i] += sigmoid_(gate[i / m]) * x[i];
}

// gather: dst[i, j] = src[rows[i], j] for i < count, j < m.
KERNEL(gather)(PARAM_PTR(float, dst, 0), PARAM_PTR(const float, src, 1), PARAM_PTR(const int, rows, 2),
               PARAM(int, m, 3), PARAM(int, n, 4) KERNEL_IDS) {
    GRID_WAIT();
    int i = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (i >= n) return;
    int r = i / m;
    dst[i] = src[(i64)rows[r] * m + (i - r * m)];
}

// scatter_add: dst[d, j] += wts[i]·src[i, j] for every i with rows[i] = d,
// fused multiply-adds in ascending i: the bits of a loop over i in order.
// The host groups the i by destination row: group g holds order[starts[g]
// .. starts[g+1]) (ascending) and writes row drow[g]. One thread per (group,
// column): a prompt's T·K rows then run on T·m threads, not on m threads
// that each walk all of them.
KERNEL(scatter_add)(PARAM_PTR(float, dst, 0), PARAM_PTR(const float, src, 1), PARAM_PTR(const int, order, 2),
                    PARAM_PTR(const int, starts, 3), PARAM_PTR(const int, drow, 4), PARAM_PTR(const float, wts, 5),
                    PARAM(int, m, 6), PARAM(int, n, 7) KERNEL_IDS) {
    GRID_WAIT();
    int idx = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (idx >= n) return;
    int g = idx / m, j = idx - g * m;
    i64 o = (i64)drow[g] * m + j;
    float acc = dst[o];
    for (int p = starts[g]; p < starts[g + 1]; p++) {
        int i = order[p];
        acc = FMAF(wts[i], src[(i64)i * m + j], acc);
    }
    dst[o] = acc;
}

// argmax_finite: out[0] = the first index of x's largest value, as a float
// (exact below 2^24), and out[1] = 1 when x holds a NaN or an infinity,
// else 0 (out[0] is then not to be used): a greedy step's next token and
// its logits' check with 8 bytes read back instead of the logits. One
// block of ARGMAX_T threads (at most; a power of two): thread t walks t,
// t + n, … keeping its first maximum, then a tree over the threads keeps
// the larger value, the lower index on ties: the first maximum of x for
// any block size. v − v is 0 exactly for a finite v (the bodies compile
// without fast math on both devices).
#define ARGMAX_T 1024
KERNEL(argmax_finite)(PARAM_PTR(float, out, 0), PARAM_PTR(const float, x, 1), PARAM(int, n, 2) KERNEL_IDS) {
    GRID_WAIT();
    SHARED(float, rv, ARGMAX_T);
    SHARED(int, ri, ARGMAX_T);
    SHARED(int, rb, ARGMAX_T);
    const int tid = THREAD_ID_X, nt = BLOCK_DIM_X;
    float bv = -INFINITY_F;
    int bi = -1, bad = 0;
    for (int i = tid; i < n; i += nt) {
        const float v = x[i];
        if (!(v - v == 0.0f)) {
            bad = 1;
        } else if (bi < 0 || v > bv) {
            bv = v;
            bi = i;
        }
    }
    rv[tid] = bv;
    ri[tid] = bi;
    rb[tid] = bad;
    BARRIER();
    for (int s = nt >> 1; s > 0; s >>= 1) {
        if (tid < s) {
            const float ov = rv[tid + s];
            const int oi = ri[tid + s];
            if (oi >= 0 && (ri[tid] < 0 || ov > rv[tid] || (ov == rv[tid] && oi < ri[tid]))) {
                rv[tid] = ov;
                ri[tid] = oi;
            }
            rb[tid] |= rb[tid + s];
        }
        BARRIER();
    }
    if (tid == 0) {
        out[0] = (float)ri[0];
        out[1] = rb[0] ? 1.0f : 0.0f;
    }
}
