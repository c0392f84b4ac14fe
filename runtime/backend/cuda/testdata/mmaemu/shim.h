// shim.h: the host stand-ins the emulators (mmaemu.cc, mmvemu.cc) run the
// CUDA-only kernels with: each block's threads (256 unless
// said) are OS threads meeting at
// barriers for __syncthreads, shuffles and the warp-wide mma.sync, which is
// emulated from the PTX fragment layouts of m16n8k16 bf16 and m16n8k32 u8·s8.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstddef>
#include <random>
#include <thread>
#include <vector>
#include <algorithm>
#include <atomic>

typedef unsigned int uint;
typedef unsigned short ushort;
typedef long long i64;
using std::max;
using std::min;
using std::isfinite;

struct float4 { float x, y, z, w; };
struct uint4 { uint x, y, z, w; };
struct uint2 { uint x, y; };
static inline uint2 make_uint2(uint x, uint y) { return {x, y}; }
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
static std::barrier<>* warpBar[16];
static float shflBuf[16][32];
static uint mmaA[16][32][4], mmaB[16][32][2];
static inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
static inline int __float2int_rn(float f) { return (int)std::nearbyint(f); }  // the default mode: to nearest, ties to even

static inline void __syncthreads() { blockBar->arrive_and_wait(); }
static inline void __syncwarp() { warpBar[threadIdx.x >> 5]->arrive_and_wait(); }
// cp.async as a plain copy (the copy is done when the wait comes).
static inline void mmv_cp16(void* s, const void* g) { memcpy(s, g, 16); }
static inline void mmv_cp8(void* s, const void* g) { memcpy(s, g, 8); }
static inline void mmv_cp_wait() { __syncwarp(); }
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

// mma_emu is the warp-wide mma.sync of m16n8k(8·PER), PER elements a
// 32-bit register, each lane supplying and receiving its fragment: A (row):
// reg0 (g, PER·t ..), reg1 (g+8, ..), reg2 (g, 4·PER + PER·t ..), reg3 (g+8,
// ..); B (col): reg0 (k PER·t .., n g), reg1 (k 4·PER + PER·t ..); C/D: (g,
// 2t..2t+1), (g+8, 2t..2t+1); g = lane/4, t = lane%4. prod(a, b, i) is the
// product of element i of registers a and b; D += the sums.
template <int PER, class T, class P>
static void mma_emu(T (&d)[4], uint a0, uint a1, uint a2, uint a3, uint b0, uint b1, P prod) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    mmaA[w][lane][0] = a0, mmaA[w][lane][1] = a1, mmaA[w][lane][2] = a2, mmaA[w][lane][3] = a3;
    mmaB[w][lane][0] = b0, mmaB[w][lane][1] = b1;
    warpBar[w]->arrive_and_wait();
    const int half = 4 * PER;  // k-slots of reg0 and reg1's columns
    int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 4; e++) {
        int r = g + 8 * (e >> 1), c = 2 * t + (e & 1);
        T s = 0;
        for (int k = 0; k < 2 * half; k++) {
            int al = (r & 7) * 4 + (k % half) / PER, areg = (r < 8 ? 0 : 1) + (k < half ? 0 : 2);
            int bl = c * 4 + (k % half) / PER, breg = k < half ? 0 : 1;
            s += prod(mmaA[w][al][areg], mmaB[w][bl][breg], k % PER);
        }
        d[e] += s;
    }
    warpBar[w]->arrive_and_wait();
}

// m16n8k16 with bf16 A and B, f32 accumulation.
static void mma_16816(float (&d)[4], uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
    mma_emu<2>(d, a0, a1, a2, a3, b0, b1, [](uint a, uint b, int i) { return half_of(a, i) * half_of(b, i); });
}

// m16n8k32 with A u8 and B s8, s32 accumulation.
static void mma_16832_u8s8(int (&d)[4], uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
    mma_emu<4>(d, a0, a1, a2, a3, b0, b1, [](uint a, uint b, int i) {
        return (int)((a >> (8 * i)) & 255) * (int)(signed char)((b >> (8 * i)) & 255);
    });
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
#define BARRIER() __syncthreads()
#define GRID_WAIT() /* the emulator runs one kernel at a time */
#define SIMD_SUM(v) simd_sum_emu(v)
static inline float simd_sum_emu(float v) {
    for (int m = 16; m >= 1; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}

// launch runs grid (gx, gy) of blocks of threads threads (a multiple of 32,
// at most 512), one block at a time.
template <class F>
static void launch(int gx, int gy, F body, int threads = 256) {
    for (int by = 0; by < gy; by++)
        for (int bx = 0; bx < gx; bx++) {
            blockIdx = {(uint)bx, (uint)by, 0};
            std::barrier<> bar(threads);
            std::vector<std::barrier<>*> wb;
            for (int i = 0; i < threads / 32; i++) wb.push_back(new std::barrier<>(32));
            blockBar = &bar;
            for (int i = 0; i < threads / 32; i++) warpBar[i] = wb[i];
            std::vector<std::thread> th;
            for (int t = 0; t < threads; t++)
                th.emplace_back([t, &body] {
                    threadIdx = {(uint)t, 0, 0};
                    body();
                });
            for (auto& x : th) x.join();
            for (auto* b : wb) delete b;
        }
}

static uint16_t to_bf16(float f) {
    uint b = __float_as_uint(f);
    return (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}

// make_weights fills a random R×C weight of the format (bits 2/4/8: MLX
// affine, group G, biases near −m·s as MLX's are; 16: bf16) and its values
// as float64.
static void make_weights(int bits, int R, int C, int G, std::mt19937_64& rng, std::vector<uint>& W,
                         std::vector<ushort>& S, std::vector<ushort>& B, std::vector<double>& vals) {
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> ud;
    const bool quant = bits < 16;
    const int ng = quant ? C / G : 0;
    W.assign((size_t)R * C * bits / 32 + 8, 0);
    S.assign(std::max(1, R * ng), 0), B.assign(std::max(1, R * ng), 0);
    vals.assign((size_t)R * C, 0);
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
}

static inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz((unsigned)v); }
