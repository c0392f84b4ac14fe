// mmaemu runs shaders/mma_cuda.h on the CPU: each block's 256 threads are
// OS threads meeting at barriers for __syncthreads, shuffles and the
// warp-wide mma.sync, which is emulated from the PTX fragment layout of
// m16n8k16 bf16. It checks the kernel's indexing, staging, split-K and
// group arithmetic against float64 on machines without a GPU
// (TestMMAKernelEmulated builds and runs it with g++ when there is one).
// Usage: mmaemu bits R C G T offset kLen splits seed — one case, launched
// with the host's plan (mma.go's mmaPlan: kLen columns per block column,
// splits of them); prints "ok" or "FAIL" and the worst token row's error.
// mmaemu grouped bits R C G seed kLen splits T... — the grouped kernel over
// one job of T tokens each, K split as the host splits it (grouped below).
#include "shim.h"
#include "mma_cuda.h"

typedef void (*kernel_t)(const uint*, const ushort*, const ushort*, const float*, float*, float*, int, int, int,
                         int, int, int);

// plainRun launches the plain kernel over T tokens, K split in kLen columns
// (splits of them, partials in part), then mma_reduce.
static void plainRun(int bits, const uint* W, const ushort* S, const ushort* B, const float* x, float* y, float* part,
                     int T, int R, int C, int G, int kLen, int splits) {
    const int ntiles = (R + 127) / 128, mtiles = (T + 63) / 64;
    kernel_t k = bits == 2 ? mma_q2 : bits == 4 ? mma_q4 : bits == 8 ? mma_q8 : mma_bf16;
    float* pp = splits > 1 ? part : nullptr;
    launch(ntiles * splits, mtiles, [&] { k(W, S, B, x, y, pp, T, R, C, G, kLen, ntiles); });
    if (splits == 1) return;
    const int n = T * R;
    for (int bx = 0; bx < (n + 255) / 256; bx++) {
        blockIdx = {(uint)bx, 0, 0};
        for (int t = 0; t < 256; t++) {
            threadIdx = {(uint)t, 0, 0};
            mma_reduce(part, y, n, splits);
        }
    }
}

// worstError is the largest relative error of a token row of y [T, R]
// against float64's x·Wᵀ (NaN sticks).
static double worstError(const std::vector<double>& vals, const float* x, const float* y, int T, int R, int C) {
    double worst = 0;
    for (int t = 0; t < T; t++) {
        double num = 0, den = 0;
        for (int r = 0; r < R; r++) {
            double want = 0;
            for (int j = 0; j < C; j++) want += vals[(size_t)r * C + j] * x[(size_t)t * C + j];
            double d = y[(size_t)t * R + r] - want;
            num += d * d, den += want * want;
        }
        double e = std::sqrt(num / den);
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

// run: the Go host's plan (mma.go's mmaPlan with 132 SMs), the kernel, the
// reduction; then float64 per token row.
static bool run(int bits, int R, int C, int G, int T, bool offset, int kLen, int splits, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> ud;
    std::vector<uint> W;
    std::vector<ushort> S, B;
    std::vector<double> vals;
    make_weights(bits, R, C, G, rng, W, S, B, vals);
    float* x = (float*)aligned_alloc(16, ((size_t)T * C * 4 + 15) / 16 * 16);
    for (size_t i = 0; i < (size_t)T * C; i++) {
        x[i] = (float)nd(rng);
        if (offset) x[i] = 3 + 0.1f * x[i];
    }
    std::vector<float> y((size_t)T * R, NAN), part(splits > 1 ? (size_t)splits * T * R : 1, NAN);
    plainRun(bits, W.data(), S.data(), B.data(), x, y.data(), part.data(), T, R, C, G, kLen, splits);
    const double worst = worstError(vals, x, y.data(), T, R, C);
    free(x);
    bool ok = worst <= 2e-5;
    printf("%s bits=%d %dx%d g%d T=%d offset=%d splits=%d kLen=%d: worst token relative error %.3g\n", ok ? "ok" : "FAIL",
           bits, R, C, G, T, (int)offset, splits, kLen, worst);
    return ok;
}

// groupedRun launches the grouped kernel (skinny: the 16-row tile's) on
// jobs (ntiles for R rows, K split in kLen columns, splits of them) and,
// with splits, mmag_reduce.
static void groupedRun(int bits, std::vector<mma_job>& jobs, int R, int C, int G, int kLen, int splits,
                       bool skinny = false) {
    const int ntiles = (R + 127) / 128, bm = skinny ? MMS_BM : MMA_BM;
    int maxT = 0;
    for (auto& j : jobs) maxT = std::max(maxT, (int)j.T);
    const int mtiles = (maxT + bm - 1) / bm, n = (int)jobs.size();
    auto gk = skinny ? (bits == 2 ? mmas_q2 : bits == 4 ? mmas_q4 : bits == 8 ? mmas_q8 : mmas_bf16)
                     : (bits == 2 ? mmag_q2 : bits == 4 ? mmag_q4 : bits == 8 ? mmag_q8 : mmag_bf16);
    launch(ntiles * mtiles * splits, n, [&] { gk(jobs.data(), R, C, G, ntiles, mtiles, kLen); });
    if (splits == 1) return;
    for (int jy = 0; jy < n; jy++)
        for (int bx = 0; bx < (maxT * R + 255) / 256; bx++) {
            blockIdx = {(uint)bx, (uint)jy, 0};
            for (int t = 0; t < 256; t++) {
                threadIdx = {(uint)t, 0, 0};
                mmag_reduce(jobs.data(), R, splits);
            }
        }
}

// grouped runs the grouped kernel (MatMulBatch) on jobs of Ts[j] tokens,
// each with its own weight and x (job 1's x offset), K split as the host
// splits it (kLen, splits), and checks every job against float64, then
// that its rows are bit for bit those of the job in a launch of its own
// (a cache miss), of the plain kernel and mma_reduce with the same split,
// and of the skinny tile's grouped kernel: a job's bits do not depend on
// the others in its launch, nor on which tile the host gives it.
static bool grouped(int bits, int R, int C, int G, unsigned seed, int kLen, int splits, const std::vector<int>& Ts) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    const int n = (int)Ts.size();
    std::vector<std::vector<uint>> W(n);
    std::vector<std::vector<ushort>> S(n), B(n);
    std::vector<std::vector<double>> vals(n);
    std::vector<float*> x(n);
    std::vector<std::vector<float>> y(n), alone(n), plain(n), skinny(n), part(n), part1(n), part2(n);
    std::vector<mma_job> jobs(n);
    for (int j = 0; j < n; j++) {
        make_weights(bits, R, C, G, rng, W[j], S[j], B[j], vals[j]);
        x[j] = (float*)aligned_alloc(16, ((size_t)Ts[j] * C * 4 + 15) / 16 * 16);
        for (size_t i = 0; i < (size_t)Ts[j] * C; i++) {
            x[j][i] = (float)nd(rng);
            if (j == 1) x[j][i] = 3 + 0.1f * x[j][i];
        }
        const size_t sz = (size_t)Ts[j] * R;
        y[j].assign(sz, NAN), alone[j].assign(sz, NAN), plain[j].assign(sz, NAN), skinny[j].assign(sz, NAN);
        part[j].assign(splits * sz, NAN), part1[j].assign(splits * sz, NAN), part2[j].assign(splits * sz, NAN);
        jobs[j] = {W[j].data(), S[j].data(), B[j].data(), x[j], y[j].data(), splits > 1 ? part[j].data() : nullptr, Ts[j]};
    }
    groupedRun(bits, jobs, R, C, G, kLen, splits);
    std::vector<mma_job> sk = jobs;
    for (int j = 0; j < n; j++) sk[j].y = skinny[j].data(), sk[j].part = splits > 1 ? part2[j].data() : nullptr;
    groupedRun(bits, sk, R, C, G, kLen, splits, true);
    bool ok = true;
    for (int j = 0; j < n; j++) {
        const int T = Ts[j];
        std::vector<mma_job> one = {jobs[j]};
        one[0].y = alone[j].data(), one[0].part = splits > 1 ? part1[j].data() : nullptr;
        groupedRun(bits, one, R, C, G, kLen, splits);
        std::vector<float> pp(splits * (size_t)T * R);
        plainRun(bits, W[j].data(), S[j].data(), B[j].data(), x[j], plain[j].data(), pp.data(), T, R, C, G, kLen, splits);
        const double worst = worstError(vals[j], x[j], y[j].data(), T, R, C);
        const size_t bytes = y[j].size() * 4;
        const bool dAlone = memcmp(y[j].data(), alone[j].data(), bytes) != 0;
        const bool dPlain = memcmp(y[j].data(), plain[j].data(), bytes) != 0;
        const bool dSkinny = memcmp(y[j].data(), skinny[j].data(), bytes) != 0;
        bool jok = worst <= 2e-5 && !dAlone && !dPlain && !dSkinny;
        ok = ok && jok;
        printf("%s grouped bits=%d %dx%d g%d splits=%d job %d of %d, T=%d: worst token relative error %.3g; %s, %s, %s\n",
               jok ? "ok" : "FAIL", bits, R, C, G, splits, j, n, T, worst,
               dAlone ? "differs from its own launch" : "its own launch's bits",
               dPlain ? "differs from the plain kernel's" : "the plain kernel's bits",
               dSkinny ? "differs from the skinny tile's" : "the skinny tile's bits");
        free(x[j]);
    }
    return ok;
}

int main(int argc, char** argv) {
    if (argc == 2 && !strcmp(argv[1], "layout")) {
        // mma_job as the kernel sees it (LP64, as NVRTC lays it out), for
        // the host's table (TestMMAJobLayout).
        printf("%zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(mma_job), offsetof(mma_job, W), offsetof(mma_job, S),
               offsetof(mma_job, B), offsetof(mma_job, x), offsetof(mma_job, y), offsetof(mma_job, part),
               offsetof(mma_job, T));
        return 0;
    }
    if (argc >= 10 && !strcmp(argv[1], "grouped")) {
        std::vector<int> Ts;
        for (int i = 9; i < argc; i++) Ts.push_back(atoi(argv[i]));
        return grouped(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), (unsigned)atoi(argv[6]), atoi(argv[7]),
                       atoi(argv[8]), Ts)
                   ? 0
                   : 1;
    }
    if (argc != 10) {
        fprintf(stderr, "usage: mmaemu bits R C G T offset kLen splits seed\n       mmaemu grouped bits R C G seed kLen splits T...\n");
        return 2;
    }
    int a[9];
    for (int i = 0; i < 9; i++) a[i] = atoi(argv[i + 1]);
    return run(a[0], a[1], a[2], a[3], a[4], a[5] != 0, a[6], a[7], (unsigned)a[8]) ? 0 : 1;
}
