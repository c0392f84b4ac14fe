// norm.h: RMSNorm (plain, per head with strides, gated) and partial rotary.

// rmsnorm normalises the vector (t, h) = (BLOCK_ID_Y, BLOCK_ID_X) of a
// strided layout: y = x·rsqrt(mean(x²)+eps)·w [·silu(z)]. flags bit 0: w is
// given; bit 1: gated by z; bit 2: a residual add first, x += z (written
// back to x, then normalised: add's sum and rmsnorm's in one launch; not
// with bit 1). x and y may alias: every element is read (twice) by the
// thread that writes it, and the reduction ends in a barrier.
// A thread's elements are loaded NORM_UNROLL at a time before they are used:
// one block normalises a model's whole hidden vector, and element by element
// each of a thread's 16 loads waited out its own latency (10.6 µs for 4,096
// floats on an H200, docs/benchmarks.md run 14). The sums are taken in the
// same order either way.
#define NORM_UNROLL 8
// rmsnorm_row is the kernel's work on the vector at x + o (n threads, tid
// this one's): the rmsnorm kernel's, and CUDA's norm_stage's (mmv_cuda.h),
// which must write the very same y.
DEVICE_FN void rmsnorm_row(GLOBAL_PTR(float) y, GLOBAL_PTR(float) x, GLOBAL_PTR(const float) z, GLOBAL_PTR(const float) w,
                           int dim, i64 o, float eps, int flags, int tid, int n, SHARED_PTR(float) red) {
    float ss = 0.0f;
    int i = tid;
    for (; i + (NORM_UNROLL - 1) * n < dim; i += NORM_UNROLL * n) {
        float v[NORM_UNROLL];
        UNROLL for (int u = 0; u < NORM_UNROLL; u++) v[u] = x[o + i + u * n];
        if (flags & 4) {
            UNROLL for (int u = 0; u < NORM_UNROLL; u++) {
                v[u] += z[o + i + u * n];
                x[o + i + u * n] = v[u];
            }
        }
        UNROLL for (int u = 0; u < NORM_UNROLL; u++) ss = FMAF(v[u], v[u], ss);
    }
    for (; i < dim; i += n) {
        float v = x[o + i];
        if (flags & 4) {
            v += z[o + i];
            x[o + i] = v;
        }
        ss = FMAF(v, v, ss);
    }
    ss = block_sum(ss, red, tid, n);
    float r = RSQRTF(ss / (float)dim + eps);
    i = tid;
    for (; i + (NORM_UNROLL - 1) * n < dim; i += NORM_UNROLL * n) {
        float v[NORM_UNROLL];
        UNROLL for (int u = 0; u < NORM_UNROLL; u++) v[u] = x[o + i + u * n] * r;
        if (flags & 1) {
            UNROLL for (int u = 0; u < NORM_UNROLL; u++) v[u] *= w[i + u * n];
        }
        if (flags & 2) {
            UNROLL for (int u = 0; u < NORM_UNROLL; u++) v[u] *= silu_(z[o + i + u * n]);
        }
        UNROLL for (int u = 0; u < NORM_UNROLL; u++) y[o + i + u * n] = v[u];
    }
    for (; i < dim; i += n) {
        float v = x[o + i] * r;
        if (flags & 1) v *= w[i];
        if (flags & 2) v *= silu_(z[o + i]);
        y[o + i] = v;
    }
}

KERNEL(rmsnorm)(PARAM_PTR(float, y, 0), PARAM_PTR(float, x, 1), PARAM_PTR(const float, z, 2),
                PARAM_PTR(const float, w, 3), PARAM(int, dim, 4), PARAM(int, rowStride, 5),
                PARAM(int, headStride, 6), PARAM(int, off, 7), PARAM(float, eps, 8), PARAM(int, flags, 9) KERNEL_IDS) {
    GRID_WAIT();
    SHARED(float, red, 32);
    rmsnorm_row(y, x, z, w, dim, (i64)off + (i64)BLOCK_ID_Y * rowStride + (i64)BLOCK_ID_X * headStride, eps, flags,
                THREAD_ID_X, BLOCK_DIM_X, red);
}

// rope rotates pairs (i, i+half) of the first 2·half dims of every head of
// token t = BLOCK_ID_Y. tab is [T][2][half]: cos then sin, computed on the
// host in float64 (float32 angles lose the phase at long positions, and
// Metal has no double).
KERNEL(rope)(PARAM_PTR(float, x, 0), PARAM_PTR(const float, tab, 1), PARAM(int, H, 2), PARAM(int, half, 3),
             PARAM(int, rowStride, 4), PARAM(int, headStride, 5), PARAM(int, off, 6) KERNEL_IDS) {
    GRID_WAIT();
    int i = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    int t = BLOCK_ID_Y;
    if (i >= H * half) return;
    int h = i / half, k = i - h * half;
    float c = tab[(i64)t * 2 * half + k];
    float s = tab[(i64)t * 2 * half + half + k];
    i64 o = (i64)off + (i64)t * rowStride + (i64)h * headStride + k;
    float a = x[o], b = x[o + half];
    x[o] = a * c - b * s;
    x[o + half] = b * c + a * s;
}
