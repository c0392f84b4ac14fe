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
    KERNEL(name)(const mv_job* jobs, int R, int C, int G) {                                          \
        DYN_SHARED(float, xs);                                                                       \
        const mv_job j = jobs[BLOCK_ID_Y];                                                           \
        matvec<FMT, 1>(j.W, j.S, j.B, j.x, j.y, R, C, G, 0, xs, THREAD_ID_X, BLOCK_DIM_X, BLOCK_ID_X, \
                       GRID_DIM_X);                                                                  \
    }
MATVEC_BATCH_KERNEL(matvec_batch_q2, FMT_Q2)
MATVEC_BATCH_KERNEL(matvec_batch_q4, FMT_Q4)
MATVEC_BATCH_KERNEL(matvec_batch_q8, FMT_Q8)
MATVEC_BATCH_KERNEL(matvec_batch_bf16, FMT_BF16)
MATVEC_BATCH_KERNEL(matvec_batch_f16, FMT_F16)
MATVEC_BATCH_KERNEL(matvec_batch_f32, FMT_F32)
