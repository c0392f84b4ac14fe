// mmvemu runs shaders/mmv_cuda.h (one token's matvec on the integer tensor
// cores) on the CPU through mmaemu's shim: the staging of x's digits, the decode's
// column order, the fragments, the group arithmetic, the persistent tiles
// and the warps' reduction, against float64, on machines without a GPU
// (TestMMVKernelEmulated builds and runs it with g++).
// Usage: mmvemu bits R C G blocks offset seed — one case; prints "ok" or
// "FAIL" and the relative error (norm of the difference over the norm).
#include "../mmaemu/shim.h"
#include "mmv_cuda.h"

static bool run(int bits, int R, int C, int G, int blocks, int offset, unsigned seed) {
    const int ng = C / G;
    if (C % 128 != 0 || G % 64 != 0 || C % G != 0 || ng % 8 != 0 || ng > 128) {
        printf("FAIL: %dx%d g%d is not a shape the host's mmvPlan passes\n", R, C, G);
        return false;
    }
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    std::vector<uint> W;
    std::vector<ushort> S, B;
    std::vector<double> vals;
    make_weights(bits, R, C, G, rng, W, S, B, vals);
    std::vector<float> x(C);
    std::uniform_real_distribution<double> ud(-8, 3);
    for (int j = 0; j < C; j++) {
        float& v = x[j];
        v = (float)nd(rng);
        if (offset == 1) v = 3 + 0.1f * v;
        // Magnitudes over eleven decades, a zero block, a block of 1e-30s
        // (below the kernel's 2^-96 floor for a block's largest element).
        if (offset == 2) v = j < 64 ? 0.f : j < 128 ? v * 1e-30f : (float)(v * std::pow(10.0, ud(rng)));
    }
    std::vector<float> y(R, NAN);
    std::vector<uint> sm((size_t)(C / 128) * 128 + 16 * (C / G + 8) + MMV_WARPS * 16 + 4 + 7 * (C / 64), 0xdeadbeefu);
    auto body = [&] {
        if (bits == 2) mmv_body<2>(W.data(), S.data(), B.data(), x.data(), y.data(), R, C, G, sm.data(), blockIdx.x, blocks);
        if (bits == 4) mmv_body<4>(W.data(), S.data(), B.data(), x.data(), y.data(), R, C, G, sm.data(), blockIdx.x, blocks);
        if (bits == 8) mmv_body<8>(W.data(), S.data(), B.data(), x.data(), y.data(), R, C, G, sm.data(), blockIdx.x, blocks);
    };
    launch(blocks, 1, body);
    double num = 0, den = 0;
    for (int r = 0; r < R; r++) {
        double want = 0;
        for (int j = 0; j < C; j++) want += vals[(size_t)r * C + j] * x[j];
        double d = y[r] - want;
        num += d * d, den += want * want;
    }
    double e = std::sqrt(num / den);
    bool ok = e <= 2e-5;  // NaN fails
    printf("%s bits=%d %dx%d g%d blocks=%d offset=%d: relative error %.3g\n", ok ? "ok" : "FAIL", bits, R, C, G, blocks,
           (int)offset, e);
    return ok;
}

int main(int argc, char** argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: mmvemu bits R C G blocks offset seed\n");
        return 2;
    }
    int a[7];
    for (int i = 0; i < 7; i++) a[i] = atoi(argv[i + 1]);
    return run(a[0], a[1], a[2], a[3], a[4], a[5], (unsigned)a[6]) ? 0 : 1;
}
