// batch_cuda.h (CUDA only; Metal's source is unchanged): one launch runs
// several one-token matvecs of the same shape and format, e.g. the gate and
// up projections of a layer's K routed experts, each job with its own
// weight, x and y. grid = (row blocks per job, jobs); every block of job
// BLOCK_ID_Y runs matvec.h's fast kernel body on that job, so a job computes
// bit for bit what its own MatMul launch would.

struct mv_job {
    const uint4* W;
    const ushort* S;
    const ushort* B;
    const float* x;
    float* y;
};

#define MATVEC_BATCH_KERNEL(name, FMT)                                                               \
    MV_KERNEL(name)(const mv_job* jobs, int R, int C, int G) {                                          \
        DYN_SHARED(float, xs);                                                                       \
        GRID_WAIT();                                                                                 \
        const mv_job j = jobs[BLOCK_ID_Y];                                                           \
        if (j.W == 0) return; /* a job experts_jobs found no expert for (route_cuda.h) */            \
        matvec<FMT, 1>(j.W, j.S, j.B, j.x, j.y, R, C, G, 0, xs, THREAD_ID_X, BLOCK_DIM_X, BLOCK_ID_X, \
                       GRID_DIM_X);                                                                  \
    }
MATVEC_BATCH_KERNEL(matvec_batch_q2, FMT_Q2)
MATVEC_BATCH_KERNEL(matvec_batch_q4, FMT_Q4)
MATVEC_BATCH_KERNEL(matvec_batch_q8, FMT_Q8)
MATVEC_BATCH_KERNEL(matvec_batch_bf16, FMT_BF16)
MATVEC_BATCH_KERNEL(matvec_batch_f16, FMT_F16)
MATVEC_BATCH_KERNEL(matvec_batch_f32, FMT_F32)

// moe_combine1 adds one token's MoE block output to h in one launch:
// h[j] += (Σ_i w[i]·eo[i, j], fused multiply-adds from 0 in ascending i)
// + the shared expert (mode 1: sigmoid(gate[0])·sd[j]; mode 2: sd[j];
// mode 0: none). It is, bit for bit, what zeroing an accumulator,
// scatter_add, gated_add (or add) and add compute for that token, in four
// launches and an upload; the weights come by value (at most 32).
// combine_finish_ adds the shared expert (by mode) to the routed sum a and
// a to h[j]: one body for moe_combine1 and moe_combine_idx, so that the
// two round alike.
DEVICE_FN void combine_finish_(float* h, const float* sd, const float* gate, float a, int mode, int j) {
    if (mode == 1) {
        a += sigmoid_(gate[0]) * sd[j];
    } else if (mode == 2) {
        a += sd[j];
    }
    h[j] += a;
}
struct combine_w {
    float v[32];
};
KERNEL(moe_combine1)(float* h, const float* eo, const float* sd, const float* gate, combine_w w, int m, int count,
                     int mode) {
    GRID_WAIT();
    int j = BLOCK_ID_X * BLOCK_DIM_X + THREAD_ID_X;
    if (j >= m) return;
    float a = 0.0f;
    UNROLL for (int i = 0; i < 32; i++) {
        if (i < count) a = FMAF(w.v[i], eo[(i64)i * m + j], a);
    }
    combine_finish_(h, sd, gate, a, mode, j);
}
