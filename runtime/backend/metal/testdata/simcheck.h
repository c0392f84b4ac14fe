// simcheck.h: kernels in the shared dialect that test the simulator itself
// (TestSimulatorBarriers): the uniform ones must run and give the sums
// checked there, each divergent one must be reported.

// tg_sum: every thread gets Σ v over the threadgroup (blockDim ≤ 1024).
DEVICE_FN float tg_sum(float v, SHARED_PTR(float) s, int tid, int n) {
    v = SIMD_SUM(v);
    if ((tid & 31) == 0) s[tid >> 5] = v;
    BARRIER();
    float r = 0.0f;
    for (int i = 0; i < (n >> 5); i++) r += s[i];
    BARRIER();
    return r;
}

// uniform: barriers in a loop of uniform trip count, behind a uniform
// branch, in a helper called from two places, and SIMD reductions in whole
// groups: y[tid] = Σ_r Σ_t (t + r) (+ n when rounds > 1), then + max lane.
KERNEL(sim_uniform)(PARAM_PTR(float, y, 0), PARAM(int, rounds, 1) KERNEL_IDS_SHARED(float, s)) {
    int tid = THREAD_ID_X, n = BLOCK_DIM_X;
    float acc = 0.0f;
    for (int r = 0; r < rounds; r++) acc += tg_sum((float)(tid + r), s, tid, n);
    if (rounds > 1) acc += tg_sum(1.0f, s, tid, n);
    acc += SIMD_MAX((float)(tid & 31));
    y[tid] = acc;
}

// Two barriers at different lines, half the threads at each.
KERNEL(sim_split)(PARAM_PTR(float, y, 0) KERNEL_IDS) {
    int tid = THREAD_ID_X;
    if (tid < 16) {
        BARRIER();
    } else {
        BARRIER();
    }
    y[tid] = 1.0f;
}

// The same, both barriers on one line (clang-format would not write it).
KERNEL(sim_split_line)(PARAM_PTR(float, y, 0) KERNEL_IDS) {
    int tid = THREAD_ID_X;
    if (tid >= 32) { BARRIER(); } else { BARRIER(); }
    y[tid] = 1.0f;
}

// A loop whose trip count differs between threads, then another barrier:
// the threads that leave early wait at the second one.
KERNEL(sim_loop)(PARAM_PTR(float, y, 0) KERNEL_IDS) {
    int tid = THREAD_ID_X;
    for (int i = 0; i < 1 + (tid & 1); i++) BARRIER();
    BARRIER();
    y[tid] = 1.0f;
}

// The same loop with nothing after it: the threads that leave early return
// while the others wait.
KERNEL(sim_loop_exit)(PARAM_PTR(float, y, 0) KERNEL_IDS) {
    int tid = THREAD_ID_X;
    for (int i = 0; i < 1 + (tid == 5); i++) BARRIER();
    y[tid] = 1.0f;
}

// Lanes of one SIMD group in two different reductions.
KERNEL(sim_simd_split)(PARAM_PTR(float, y, 0) KERNEL_IDS) {
    int tid = THREAD_ID_X;
    float v = 1.0f;
    if ((tid & 31) < 8) {
        v = SIMD_SUM(v);
    } else {
        v = SIMD_SUM(v);
    }
    y[tid] = v;
}
