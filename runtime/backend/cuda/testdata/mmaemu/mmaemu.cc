// mmaemu runs shaders/mma_cuda.h on the CPU: each block's 256 threads are
// OS threads meeting at barriers for __syncthreads, shuffles and the
// warp-wide mma.sync, which is emulated from the PTX fragment layout of
// m16n8k16 bf16. It checks the kernel's indexing, staging, split-K and
// group arithmetic against float64 on machines without a GPU
// (TestMMAKernelEmulated builds and runs it with g++ when there is one).
// Usage: mmaemu bits R C G T offset kLen splits seed — one case, launched
// with the host's plan (mma.go's mmaPlan: kLen columns per block column,
// splits of them); prints "ok" or "FAIL" and the worst token row's error.
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>
#include <algorithm>

typedef unsigned int uint;
typedef unsigned short ushort;
typedef long long i64;
using std::min;

struct float4 { float x, y, z, w; };
struct uint4 { uint x, y, z, w; };
struct uint2 { uint x, y; };
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline uint4 make_uint4(uint x, uint y, uint z, uint w) { return {x, y, z, w}; }
static inline uint __float_as_uint(float f) { uint u; memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(uint u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint __byte_perm(uint a, uint b, uint s) {
    uint8_t bytes[8];
    memcpy(bytes, &a, 4);
    memcpy(bytes + 4, &b, 4);
    uint r = 0;
    for (int i = 0; i < 4; i++) r |= (uint)bytes[(s >> (4 * i)) & 7] << (8 * i);
    return r;
}

struct dim3_ { uint x, y, z; };
static thread_local dim3_ threadIdx;
static dim3_ blockIdx;
static std::barrier<>* blockBar;
static std::barrier<>* warpBar[8];
static float shflBuf[8][32];
static uint mmaA[8][32][4], mmaB[8][32][2];

static inline void __syncthreads() { blockBar->arrive_and_wait(); }
static inline float __shfl_xor_sync(uint, float v, int m) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    shflBuf[w][lane] = v;
    warpBar[w]->arrive_and_wait();
    float r = shflBuf[w][lane ^ m];
    warpBar[w]->arrive_and_wait();
    return r;
}

static inline float bf16f(uint h) { return __uint_as_float(h << 16); }
static inline float half_of(uint reg, int hi) { return bf16f(hi ? reg >> 16 : reg & 0xffffu); }

// D = A·B + C for the warp, each lane supplying and receiving its fragment:
// A (16×16, row): reg0 (g, 2t..2t+1), reg1 (g+8, ..), reg2 (g, 2t+8..), reg3
// (g+8, 2t+8..); B (16×8, col): reg0 (k 2t..2t+1, n g), reg1 (k 2t+8..);
// C/D: (g, 2t..2t+1), (g+8, 2t..2t+1); g = lane/4, t = lane%4.
static void mma_16816(float (&d)[4], uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    mmaA[w][lane][0] = a0, mmaA[w][lane][1] = a1, mmaA[w][lane][2] = a2, mmaA[w][lane][3] = a3;
    mmaB[w][lane][0] = b0, mmaB[w][lane][1] = b1;
    warpBar[w]->arrive_and_wait();
    int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 4; e++) {
        int r = g + 8 * (e >> 1), c = 2 * t + (e & 1);
        float s = 0;
        for (int k = 0; k < 16; k++) {
            int al = (r & 7) * 4 + ((k & 7) >> 1), areg = (r < 8 ? 0 : 1) + (k < 8 ? 0 : 2);
            int bl = c * 4 + ((k & 7) >> 1), breg = k < 8 ? 0 : 1;
            s += half_of(mmaA[w][al][areg], k & 1) * half_of(mmaB[w][bl][breg], k & 1);
        }
        d[e] += s;
    }
    warpBar[w]->arrive_and_wait();
}

#define MMA_EMULATED 1
#define __CUDA_ARCH__ 800
#define DEVICE_FN static inline
#define UNROLL
#define __global__
#define __launch_bounds__(a, b)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define BF16_TO_FLOAT(u) bf16f((uint)(u))
#define FMAF(a, b, c) std::fma((float)(a), (float)(b), (float)(c))
#include "mma_cuda.h"

typedef void (*kernel_t)(const uint*, const ushort*, const ushort*, const float*, float*, float*, int, int, int,
                         int, int, int);

// launch runs grid (gx, gy) of 256-thread blocks, one block at a time.
template <class F>
static void launch(int gx, int gy, F body) {
    for (int by = 0; by < gy; by++)
        for (int bx = 0; bx < gx; bx++) {
            blockIdx = {(uint)bx, (uint)by, 0};
            std::barrier<> bar(256);
            std::barrier<> wb[8] = {std::barrier<>(32), std::barrier<>(32), std::barrier<>(32), std::barrier<>(32),
                                    std::barrier<>(32), std::barrier<>(32), std::barrier<>(32), std::barrier<>(32)};
            blockBar = &bar;
            for (int i = 0; i < 8; i++) warpBar[i] = &wb[i];
            std::vector<std::thread> th;
            for (int t = 0; t < 256; t++)
                th.emplace_back([t, &body] {
                    threadIdx = {(uint)t, 0, 0};
                    body();
                });
            for (auto& x : th) x.join();
        }
}

static uint16_t to_bf16(float f) {
    uint b = __float_as_uint(f);
    return (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}

// run: the Go host's plan (mma.go's mmaPlan with 132 SMs), the kernel, the
// reduction; then float64 per token row.
static bool run(int bits, int R, int C, int G, int T, bool offset, int kLen, int splits, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> ud;
    const bool quant = bits < 16;
    const int ng = quant ? C / G : 0;
    std::vector<uint> W((size_t)R * C * bits / 32 + 8, 0);
    std::vector<ushort> S(std::max(1, R * ng)), B(std::max(1, R * ng));
    std::vector<double> vals((size_t)R * C);
    for (int r = 0; r < R; r++) {
        if (!quant) {
            for (int j = 0; j < C; j++) {
                uint16_t h = to_bf16((float)(nd(rng) * 0.1));
                size_t e = (size_t)r * C + j;
                W[e / 2] |= (uint)h << (16 * (e & 1));
                vals[e] = bf16f(h);
            }
            continue;
        }
        int levels = 1 << bits, per = 32 / bits;
        for (int g = 0; g < ng; g++) {
            uint16_t s = to_bf16((float)(0.01 + 0.05 * ud(rng)));
            uint16_t b = to_bf16((float)(-bf16f(s) * levels / 2 * (0.8 + 0.4 * ud(rng))));
            S[r * ng + g] = s, B[r * ng + g] = b;
            for (int j = g * G; j < (g + 1) * G; j++) {
                uint q = (uint)(rng() % levels);
                W[((size_t)r * C + j) / per] |= q << (bits * (j % per));
                vals[(size_t)r * C + j] = (double)q * bf16f(s) + bf16f(b);
            }
        }
    }
    float* x = (float*)aligned_alloc(16, ((size_t)T * C * 4 + 15) / 16 * 16);
    for (size_t i = 0; i < (size_t)T * C; i++) {
        x[i] = (float)nd(rng);
        if (offset) x[i] = 3 + 0.1f * x[i];
    }
    const int ntiles = (R + 127) / 128, mtiles = (T + 63) / 64;
    std::vector<float> y((size_t)T * R, NAN), part(splits > 1 ? (size_t)splits * T * R : 1, NAN);
    float* pp = splits > 1 ? part.data() : nullptr;
    kernel_t k = bits == 2 ? mma_q2 : bits == 4 ? mma_q4 : bits == 8 ? mma_q8 : mma_bf16;
    launch(ntiles * splits, mtiles, [&] { k(W.data(), S.data(), B.data(), x, y.data(), pp, T, R, C, G, kLen, ntiles); });
    if (splits > 1) {
        int n = T * R;
        for (int bx = 0; bx < (n + 255) / 256; bx++) {
            blockIdx = {(uint)bx, 0, 0};
            for (int t = 0; t < 256; t++) {
                threadIdx = {(uint)t, 0, 0};
                mma_reduce(part.data(), y.data(), n, splits);
            }
        }
    }
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
        if (!(e <= worst)) worst = e;  // NaN sticks
    }
    free(x);
    bool ok = worst <= 2e-5;
    printf("%s bits=%d %dx%d g%d T=%d offset=%d splits=%d kLen=%d: worst token relative error %.3g\n", ok ? "ok" : "FAIL",
           bits, R, C, G, T, (int)offset, splits, kLen, worst);
    return ok;
}

int main(int argc, char** argv) {
    if (argc != 10) {
        fprintf(stderr, "usage: mmaemu bits R C G T offset kLen splits seed\n");
        return 2;
    }
    int a[9];
    for (int i = 0; i < 9; i++) a[i] = atoi(argv[i + 1]);
    return run(a[0], a[1], a[2], a[3], a[4], a[5] != 0, a[6], a[7], (unsigned)a[8]) ? 0 : 1;
}
