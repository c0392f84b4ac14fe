// routeemu runs shaders/route_cuda.h on the CPU, on machines without a GPU
// (TestRouteKernelsEmulated builds it with g++): each block's threads are
// OS threads meeting at barriers for __syncthreads, __syncthreads_or and
// the warp shuffles.
//
// Usage: routeemu route < case   — route_topk on one case: "T E K renorm"
//          then T·E logits as float32 bit patterns in hex; prints the T·K
//          ids, the T·K weights (hex bits) and status (hex bits).
//        routeemu jobs           — experts_jobs on a fixed index with held
//          and missing experts; prints "ok" or "FAIL" and why.
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

typedef unsigned int uint;
typedef unsigned short ushort;
typedef long long i64;
struct uint4 { uint x, y, z, w; };

struct dim3_ { uint x, y, z; };
static thread_local dim3_ threadIdx;
static dim3_ blockIdx, blockDim;
static std::barrier<>* blockBar;
static std::barrier<>* warpBar[8];
static uint64_t shflBuf[8][32];
static std::atomic<int> orAcc;

static inline void __syncthreads() { blockBar->arrive_and_wait(); }
static inline int __syncthreads_or(int p) {
    blockBar->arrive_and_wait();
    if (p) orAcc.fetch_or(1);
    blockBar->arrive_and_wait();
    int r = orAcc.load();
    blockBar->arrive_and_wait();
    if (threadIdx.x == 0) orAcc.store(0); // before anyone passes the next call's first barrier
    return r;
}
// shfl_ is lane src's v (a warp shuffle, up to 64 bits).
template <class T>
static inline T shfl_(T v, int src) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    shflBuf[w][lane] = bits;
    warpBar[w]->arrive_and_wait();
    bits = shflBuf[w][src & 31];
    warpBar[w]->arrive_and_wait();
    T r;
    memcpy(&r, &bits, sizeof r);
    return r;
}
template <class T>
static inline T __shfl_xor_sync(uint, T v, int m) { return shfl_(v, (threadIdx.x & 31) ^ m); }
template <class T>
static inline T __shfl_sync(uint, T v, int src) { return shfl_(v, src); }

#define KERNEL(name) static void name
#define DEVICE_FN static inline
#define SHARED(T, name, n) static T name[n]
#define BARRIER() __syncthreads()
#define GRID_WAIT() /* the emulator runs one kernel at a time */
#define THREAD_ID_X ((int)threadIdx.x)
#define BLOCK_ID_X ((int)blockIdx.x)
#define BLOCK_DIM_X ((int)blockDim.x)
#define UNROLL
#define INFINITY_F (__builtin_inff())
#define FMAF(a, b, c) std::fma((float)(a), (float)(b), (float)(c))
static inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// batch_cuda.h's declarations that route_cuda.h uses.
struct mv_job {
    const uint4* W;
    const ushort* S;
    const ushort* B;
    const float* x;
    float* y;
};
static inline void combine_finish_(float* h, const float*, const float*, float a, int, int j) { h[j] += a; }

#include "route_cuda.h"

// launch runs a grid of gx blocks of nt threads (32 or 256), one block at
// a time.
template <class F>
static void launch(int gx, int nt, F body) {
    blockDim = {(uint)nt, 1, 1};
    for (int bx = 0; bx < gx; bx++) {
        blockIdx = {(uint)bx, 0, 0};
        std::barrier<> bar(nt);
        std::barrier<> wb[8] = {std::barrier<>(32), std::barrier<>(32), std::barrier<>(32), std::barrier<>(32),
                                std::barrier<>(32), std::barrier<>(32), std::barrier<>(32), std::barrier<>(32)};
        blockBar = &bar;
        for (int i = 0; i < 8; i++) warpBar[i] = &wb[i];
        std::vector<std::thread> th;
        for (int t = 0; t < nt; t++)
            th.emplace_back([t, &body] {
                threadIdx = {(uint)t, 0, 0};
                body();
            });
        for (auto& x : th) x.join();
    }
}

static uint bitsOf(float f) {
    uint u;
    memcpy(&u, &f, 4);
    return u;
}

static int route() {
    int T, E, K, renorm;
    if (scanf("%d %d %d %d", &T, &E, &K, &renorm) != 4) return 2;
    std::vector<float> l(T * E), ids(T * K, -7.0f), w(T * K, -7.0f);
    for (auto& v : l) {
        uint u;
        if (scanf("%x", &u) != 1) return 2;
        memcpy(&v, &u, 4);
    }
    float status = 0;
    launch(T, ROUTE_THREADS, [&] { route_topk(l.data(), ids.data(), w.data(), &status, E, K, renorm); });
    for (float v : ids) printf("%08x ", bitsOf(v));
    printf("\n");
    for (float v : w) printf("%08x ", bitsOf(v));
    printf("\n%08x\n", bitsOf(status));
    return 0;
}

// jobs: 6 experts of which 1 and 4 are not held; ids 4 (miss), 0, 5, 2.5
// (not an integer), 1 (miss), 9 (past E), NaN; eo rows of misses zeroed.
// With a shared expert (its own pointer table) it is job K of each
// projection and the tables' stride K + 1; its row is never zeroed.
static int jobs(bool withShared) {
    const int E = 6, K = 7, I = 3, H = 300, n = withShared ? K + 1 : K;
    std::vector<unsigned long long> index(E * EXPERT_PTRS, 0), shared(EXPERT_PTRS);
    for (int e = 0; e < E; e++) {
        if (e == 1 || e == 4) continue;
        for (int p = 0; p < EXPERT_PTRS; p++) index[e * EXPERT_PTRS + p] = 0x1000 * (e + 1) + 8 * p;
    }
    for (int p = 0; p < EXPERT_PTRS; p++) shared[p] = 0x90000 + 8 * p;
    float ids[K] = {4, 0, 5, 2.5f, 1, 9, std::nanf("")};
    const bool hit[K] = {false, true, true, false, false, false, false};
    float status = 0, x[H], g[(K + 1) * I], u[(K + 1) * I];
    std::vector<float> eo((K + 1) * H, 1.0f);
    mv_job gu[2 * (K + 1)], dn[K + 1];
    const unsigned long long* sh = withShared ? shared.data() : nullptr;
    launch(1, 256, [&] { experts_jobs(index.data(), E, ids, &status, gu, dn, x, g, u, eo.data(), K, I, H, sh); });
    for (int i = 0; i < n; i++) {
        const bool held = i == K || hit[i];
        const unsigned long long* p = i == K ? shared.data() : hit[i] ? &index[(int)ids[i] * EXPERT_PTRS] : nullptr;
        auto ptr = [&](int k) { return p ? (const void*)p[k] : nullptr; };
        bool ok = gu[i].W == ptr(0) && (const void*)gu[i].S == ptr(1) && (const void*)gu[i].B == ptr(2) &&
                  gu[i].x == x && gu[i].y == g + i * I;
        ok = ok && gu[n + i].W == ptr(3) && (const void*)gu[n + i].S == ptr(4) && (const void*)gu[n + i].B == ptr(5) &&
             gu[n + i].x == x && gu[n + i].y == u + i * I;
        ok = ok && dn[i].W == ptr(6) && (const void*)dn[i].S == ptr(7) && (const void*)dn[i].B == ptr(8) &&
             dn[i].x == g + i * I && dn[i].y == eo.data() + i * H;
        for (int j = 0; j < H; j++) ok = ok && eo[i * H + j] == (held ? 1.0f : 0.0f);
        if (!ok) {
            printf("FAIL: shared %d: job %d (id %g)\n", (int)withShared, i, i < K ? ids[i] : -1.0f);
            return 1;
        }
    }
    if (status != 2.0f) {
        printf("FAIL: status %g, want 2\n", status);
        return 1;
    }
    printf("ok\n");
    return 0;
}

int main(int argc, char** argv) {
    if (argc == 2 && !strcmp(argv[1], "route")) return route();
    if (argc == 2 && !strcmp(argv[1], "jobs")) return jobs(false) | jobs(true);
    fprintf(stderr, "usage: routeemu route < case | routeemu jobs\n");
    return 2;
}
