// elementwise.h: SwiGLU, gather, scatter-add, gated add, add. 1-D grids of
// BLOCK_DIM_X threads, one element per thread.

KERNEL(swiglu)(PARAM_PTR(float, y, 0), PARAM_PTR(const float, g, 1), PARAM_PTR(const float, u, 2),
               PARAM(int, n, 3) KERNEL_IDS) {
    int i = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (i < n) y[i] = swiglu_(g[i], u[i]);
}

KERNEL(add)(PARAM_PTR(float, dst, 0), PARAM_PTR(const float, src, 1), PARAM(int, n, 2) KERNEL_IDS) {
    int i = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (i < n) dst[i] += src[i];
}

// gated_add: h[t, j] += sigmoid(gate[t])·x[t, j], rows of m values.
KERNEL(gated_add)(PARAM_PTR(float, h, 0), PARAM_PTR(const float, x, 1), PARAM_PTR(const float, gate, 2),
                  PARAM(int, m, 3), PARAM(int, n, 4) KERNEL_IDS) {
    int i = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (i < n) h[i] += sigmoid_(gate[i / m]) * x[i];
}

// gather: dst[i, j] = src[rows[i], j] for i < count, j < m.
KERNEL(gather)(PARAM_PTR(float, dst, 0), PARAM_PTR(const float, src, 1), PARAM_PTR(const int, rows, 2),
               PARAM(int, m, 3), PARAM(int, n, 4) KERNEL_IDS) {
    int i = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (i >= n) return;
    int r = i / m;
    dst[i] = src[(i64)rows[r] * m + (i - r * m)];
}

// scatter_add: dst[rows[i], j] += wts[i]·src[i, j]. One thread per column
// walks the rows in order, so repeated row ids accumulate without atomics
// and in the same order on every run.
KERNEL(scatter_add)(PARAM_PTR(float, dst, 0), PARAM_PTR(const float, src, 1), PARAM_PTR(const int, rows, 2),
                    PARAM_PTR(const float, wts, 3), PARAM(int, m, 4), PARAM(int, count, 5) KERNEL_IDS) {
    int j = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (j >= m) return;
    for (int i = 0; i < count; i++) {
        i64 o = (i64)rows[i] * m + j;
        dst[o] = FMAF(wts[i], src[(i64)i * m + j], dst[o]);
    }
}
