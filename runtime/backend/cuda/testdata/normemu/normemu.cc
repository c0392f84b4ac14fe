// normemu runs mmv_cuda.h's norm_stage_body (a norm and the integer
// matvec's staging of its output in one launch) on the CPU through
// mmaemu's shim, beside the two launches it replaces: norm.h's rmsnorm
// kernel (rmsnorm_row) and mmv_stage. y and the staged words must be the
// same bits (TestNormStageEmulated builds and runs it with g++).
// Usage: normemu bits mode — mode 0: heads of 128 gated by z, y in place
// of x (the GatedDeltaNet's norm before out_proj); mode 1: one vector of
// 4096 with a weight (the input norm before the in-projection). Prints
// "ok" or "FAIL" and why.
#include "../mmaemu/shim.h"
// The shared dialect's names the bodies use, for the host.
#define GLOBAL_PTR(T) T*
#define SHARED_PTR(T) T*
#define EXPF(x) std::exp(x)
#define RSQRTF(x) (1.0f / std::sqrt(x))
#define HALF_TO_FLOAT(u) 0.0f
#define AS_FLOAT(u) __uint_as_float(u)
#define KERNEL(name) [[maybe_unused]] static void name
#define PARAM_PTR(T, name, slot) T* name
#define PARAM(T, name, slot) T name
#define KERNEL_IDS
#define SHARED(T, name, n) static T name[n]
#define THREAD_ID_X ((int)threadIdx.x)
#define BLOCK_ID_X ((int)blockIdx.x)
#define BLOCK_ID_Y ((int)blockIdx.y)
#define BLOCK_DIM_X 256
#include "common.h"
#include "norm.h"
#include "mmv_cuda.h"

template <int BITS>
static bool run(int mode) {
    const bool perHead = mode == 0;
    const int H = perHead ? 32 : 1, dim = perHead ? 128 : 4096, C = H * dim;
    const int n = perHead ? 128 : 256;  // gpu.normThreads(dim)
    std::mt19937_64 rng(BITS * 10 + mode);
    std::normal_distribution<double> nd;
    std::vector<float> x(C), z(C), w(dim);
    for (int i = 0; i < C; i++) x[i] = (float)(nd(rng) * (1 + i % 5)), z[i] = (float)nd(rng);
    for (int i = 0; i < dim; i++) w[i] = (float)(1 + 0.1 * nd(rng));
    const int flags = perHead ? 3 : 1;
    static float red[32];
    // The two launches: rmsnorm (in place where perHead), then mmv_stage.
    std::vector<float> y1 = perHead ? x : std::vector<float>(C, NAN), x1 = x;
    std::vector<uint> xs1(mmv_words(C), 0xdeadbeefu), xs2(mmv_words(C), 0xfeedfaceu);
    float* ynorm = perHead ? x1.data() : y1.data();
    launch(H, 1, [&] {
        rmsnorm_row(ynorm, x1.data(), z.data(), w.data(), dim, (i64)blockIdx.x * dim, 1e-6f, flags, threadIdx.x, n, red);
    }, n);
    launch((C / 64 + 7) / 8, 1, [&] {
        const int b = blockIdx.x * 8 + (threadIdx.x >> 5);
        if (b < C / 64) mmv_stage_block<BITS>(ynorm, nullptr, xs1.data(), C, b, threadIdx.x & 31);
    });
    // The fused launch.
    std::vector<float> y2 = perHead ? x : std::vector<float>(C, NAN), x2 = x;
    float* yf = perHead ? x2.data() : y2.data();
    const int grid = perHead ? H : (C / 64 + n / 32 - 1) / (n / 32);
    launch(grid, 1, [&] {
        norm_stage_body<BITS>(yf, x2.data(), z.data(), w.data(), dim, 0, 1e-6f, flags, xs2.data(), C, perHead,
                              blockIdx.x, threadIdx.x, n, red);
    }, n);
    if (memcmp(ynorm, yf, C * sizeof(float)) != 0) {
        printf("FAIL bits=%d mode=%d: the fused norm's y differs from rmsnorm's\n", BITS, mode);
        return false;
    }
    if (!perHead && memcmp(x1.data(), x2.data(), C * sizeof(float)) != 0) {
        printf("FAIL bits=%d mode=%d: the fused norm changed x\n", BITS, mode);
        return false;
    }
    if (xs1 != xs2) {
        printf("FAIL bits=%d mode=%d: the fused staging's words differ from mmv_stage's\n", BITS, mode);
        return false;
    }
    // And the norm itself against float64, so that the comparison is not
    // of two copies of one wrong thing.
    double worst = 0;
    for (int h = 0; h < H; h++) {
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)x[h * dim + i] * x[h * dim + i];
        const double r = 1 / std::sqrt(ss / dim + 1e-6);
        for (int i = 0; i < dim; i++) {
            const int k = h * dim + i;
            double want = x[k] * r * w[i];
            if (perHead) want *= z[k] / (1 + std::exp(-(double)z[k]));
            worst = std::max(worst, std::fabs(yf[k] - want) / (std::fabs(want) + 1e-3));
        }
    }
    if (!(worst < 1e-5)) {
        printf("FAIL bits=%d mode=%d: the norm is %.3g off float64\n", BITS, mode, worst);
        return false;
    }
    printf("ok bits=%d mode=%d: y and %zu staged words the same bits; the norm within %.2g of float64\n", BITS, mode,
           xs1.size(), worst);
    return true;
}

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: normemu bits mode\n");
        return 2;
    }
    const int bits = atoi(argv[1]), mode = atoi(argv[2]);
    bool ok = bits == 2 ? run<2>(mode) : bits == 4 ? run<4>(mode) : run<8>(mode);
    return ok ? 0 : 1;
}
