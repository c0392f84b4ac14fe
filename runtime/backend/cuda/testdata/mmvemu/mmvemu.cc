// mmvemu runs shaders/mmv_cuda.h (one token's matvec on the integer tensor
// cores) on the CPU through mmaemu's shim: the staging of x's digits, the decode's
// column order, the fragments, the group arithmetic, the tiles and the
// warps' split of the chunks and their reduction, against float64, on machines without a GPU
// (TestMMVKernelEmulated builds and runs it with g++).
// Usage: mmvemu bits R C G nw offset seed — one case; prints "ok" or
// "FAIL" and the relative error (norm of the difference over the norm).
#include "../mmaemu/shim.h"
// common.h's SwiGLU element (the shim does not take common.h).
static inline float swiglu_(float g, float u) { return g / (1.0f + expf(-g)) * u; }
#include "mmv_cuda.h"

static bool run(int bits, int R, int C, int G, int nw, int offset, unsigned seed) {
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
    std::vector<uint> xs(mmv_words(C), 0xdeadbeefu);
    auto stage = [&] {
        const int b = blockIdx.x * 8 + (threadIdx.x >> 5);
        if (b >= C / 64) return;
        if (bits == 2) mmv_stage_block<2>(x.data(), nullptr, xs.data(), C, b, threadIdx.x & 31);
        if (bits == 4) mmv_stage_block<4>(x.data(), nullptr, xs.data(), C, b, threadIdx.x & 31);
        if (bits == 8) mmv_stage_block<8>(x.data(), nullptr, xs.data(), C, b, threadIdx.x & 31);
    };
    launch((C / 64 + 7) / 8, 1, stage);
    // Staging SwiGLU's output from gate and up rows (the down projection's
    // mmv_stage_swiglu) must give the words staging that output does.
    {
        std::vector<float> g(C), u(C), sw(C);
        for (int j = 0; j < C; j++) {
            g[j] = (float)nd(rng);
            u[j] = (float)nd(rng) * (1 + (j % 7));
            sw[j] = swiglu_(g[j], u[j]);
        }
        std::vector<uint> a(mmv_words(C), 1u), c(mmv_words(C), 2u);
        launch((C / 64 + 7) / 8, 1, [&] {
            const int b = blockIdx.x * 8 + (threadIdx.x >> 5);
            if (b >= C / 64) return;
            if (bits == 2) mmv_stage_block<2>(sw.data(), nullptr, a.data(), C, b, threadIdx.x & 31);
            if (bits == 4) mmv_stage_block<4>(sw.data(), nullptr, a.data(), C, b, threadIdx.x & 31);
            if (bits == 8) mmv_stage_block<8>(sw.data(), nullptr, a.data(), C, b, threadIdx.x & 31);
            if (bits == 2) mmv_stage_block<2>(g.data(), u.data(), c.data(), C, b, threadIdx.x & 31);
            if (bits == 4) mmv_stage_block<4>(g.data(), u.data(), c.data(), C, b, threadIdx.x & 31);
            if (bits == 8) mmv_stage_block<8>(g.data(), u.data(), c.data(), C, b, threadIdx.x & 31);
        });
        if (a != c) {
            printf("FAIL bits=%d C=%d: staging SwiGLU from g and u differs from staging its output\n", bits, C);
            return false;
        }
    }
    // tiles runs the matvec's tiles with warps warps each into y.
    static float red[16 * MMV_MAXSEG];
    static uint2 xsm[16 * MMV_PIPE_WORDS(2)];
    auto tiles = [&](std::vector<float>& y, int warps, bool smx, bool pipe = false) {
        y.assign(R, NAN);
        launch((R + 15) / 16, 1, [&] {
            const int tid = threadIdx.x, tile = blockIdx.x;
            const uint* w = W.data();
            const ushort *s = S.data(), *b = B.data();
            float* o = y.data();
            if (pipe) {  // weights through shared memory too (PIPE)
                if (bits == 2) mmv_body<2, true, true>(w, s, b, xs.data(), o, R, C, G, tile, tid, warps, red, xsm);
                if (bits == 4) mmv_body<4, true, true>(w, s, b, xs.data(), o, R, C, G, tile, tid, warps, red, xsm);
                if (bits == 8) mmv_body<8, true, true>(w, s, b, xs.data(), o, R, C, G, tile, tid, warps, red, xsm);
                return;
            }
            if (bits == 2 && !smx) mmv_body<2, false>(w, s, b, xs.data(), o, R, C, G, tile, tid, warps, red, xsm);
            if (bits == 4 && !smx) mmv_body<4, false>(w, s, b, xs.data(), o, R, C, G, tile, tid, warps, red, xsm);
            if (bits == 8 && !smx) mmv_body<8, false>(w, s, b, xs.data(), o, R, C, G, tile, tid, warps, red, xsm);
            if (bits == 2 && smx) mmv_body<2, true>(w, s, b, xs.data(), o, R, C, G, tile, tid, warps, red, xsm);
            if (bits == 4 && smx) mmv_body<4, true>(w, s, b, xs.data(), o, R, C, G, tile, tid, warps, red, xsm);
            if (bits == 8 && smx) mmv_body<8, true>(w, s, b, xs.data(), o, R, C, G, tile, tid, warps, red, xsm);
        }, 32 * warps);
    };
    // The same tiles with one warp each, with x copied to shared memory
    // first (SMX), and with the weights too (PIPE): the sums' order is the
    // shape's, so the bits must not move.
    std::vector<float> y, y1, ys, ys1, yp, yp1;
    tiles(y, nw, false);
    tiles(y1, 1, false);
    tiles(ys, nw, true);
    tiles(ys1, 1, true);
    tiles(yp, nw, true, true);
    tiles(yp1, 1, true, true);
    if (memcmp(y.data(), y1.data(), R * sizeof(float)) != 0) {
        printf("FAIL bits=%d %dx%d g%d: %d warps a tile and one give different bits\n", bits, R, C, G, nw);
        return false;
    }
    if (memcmp(y.data(), ys.data(), R * sizeof(float)) != 0 || memcmp(y.data(), ys1.data(), R * sizeof(float)) != 0) {
        printf("FAIL bits=%d %dx%d g%d: SMX gives different bits\n", bits, R, C, G);
        return false;
    }
    if (memcmp(y.data(), yp.data(), R * sizeof(float)) != 0 || memcmp(y.data(), yp1.data(), R * sizeof(float)) != 0) {
        printf("FAIL bits=%d %dx%d g%d: PIPE gives different bits\n", bits, R, C, G);
        return false;
    }
    double num = 0, den = 0;
    for (int r = 0; r < R; r++) {
        double want = 0;
        for (int j = 0; j < C; j++) want += vals[(size_t)r * C + j] * x[j];
        double d = y[r] - want;
        num += d * d, den += want * want;
    }
    double e = std::sqrt(num / den);
    bool ok = e <= 2e-5;  // NaN fails
    printf("%s bits=%d %dx%d g%d nw=%d offset=%d: relative error %.3g\n", ok ? "ok" : "FAIL", bits, R, C, G, nw,
           (int)offset, e);
    return ok;
}

int main(int argc, char** argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: mmvemu bits R C G nw offset seed\n");
        return 2;
    }
    int a[7];
    for (int i = 0; i < 7; i++) a[i] = atoi(argv[i + 1]);
    return run(a[0], a[1], a[2], a[3], a[4], a[5], (unsigned)a[6]) ? 0 : 1;
}
