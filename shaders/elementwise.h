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
