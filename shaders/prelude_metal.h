// prelude_metal.h: the shared kernel dialect (see prelude_cuda.h for the
// contract), defined for the Metal Shading Language. It defines exactly the
// macro names prelude_cuda.h defines (a Go test compares the two sets), so
// the bodies compile unchanged: every KERNEL becomes a Metal entry point
// whose buffer and scalar arguments sit at the [[buffer(slot)]] indices the
// bodies give, set by the host with setBuffer / setBytes.
//
// The thread ids arrive as parameters, always in the order tid, bid, bdim,
// gdim (the CPU simulator in shaders/mock relies on that order). Scalars are
// `constant T&`, which setBytes:length:atIndex: binds. Dynamic threadgroup
// memory is the [[threadgroup(0)]] parameter, sized by
// setThreadgroupMemoryLength:atIndex:0.

#include <metal_stdlib>
using namespace metal;

// 64-bit signed index. MSL has no `long long`; its `long` is 64-bit.
typedef long i64;

#define KERNEL(name) kernel void name
#define MV_KERNEL(name) KERNEL(name)
#define PARAM_PTR(T, name, slot) device T* name [[buffer(slot)]]
#define PARAM(T, name, slot) constant T& name [[buffer(slot)]]
#define KERNEL_IDS                                                                                     \
    , uint3 fm_tid_ [[thread_position_in_threadgroup]], uint3 fm_bid_ [[threadgroup_position_in_grid]], \
        uint3 fm_bdim_ [[threads_per_threadgroup]], uint3 fm_gdim_ [[threadgroups_per_grid]]
#define KERNEL_IDS_SHARED(T, name)                                                                     \
    , threadgroup T* name [[threadgroup(0)]], uint3 fm_tid_ [[thread_position_in_threadgroup]],        \
        uint3 fm_bid_ [[threadgroup_position_in_grid]], uint3 fm_bdim_ [[threads_per_threadgroup]],     \
        uint3 fm_gdim_ [[threadgroups_per_grid]]
#define DYN_SHARED(T, name)
#define DEVICE_FN static inline
#define GLOBAL_PTR(T) device T*
#define SHARED_PTR(T) threadgroup T*
#define THREAD thread
// The CPU simulator and the mock parse (FMOE_MOCK, never set for Metal) run
// the threads of a threadgroup as fibers of one kernel call, so there a
// threadgroup array must be static to be shared (and C++ allows no address
// space on an automatic variable); Metal gives threadgroup storage directly.
#ifdef FMOE_MOCK
#define SHARED(T, name, n) alignas(16) static threadgroup T name[n]
#else
#define SHARED(T, name, n) threadgroup T name[n]
#endif
#define BARRIER() metal::threadgroup_barrier(metal::mem_flags::mem_threadgroup)
// Metal runs a queue's dispatches one after another: nothing to wait for.
#define GRID_WAIT()

#define THREAD_ID_X ((int)fm_tid_.x)
#define BLOCK_ID_X ((int)fm_bid_.x)
#define BLOCK_ID_Y ((int)fm_bid_.y)
#define BLOCK_DIM_X ((int)fm_bdim_.x)
#define GRID_DIM_X ((int)fm_gdim_.x)

// Clang's plain `#pragma unroll`: full unroll when the trip count is a
// compile-time constant (all UNROLL loops in the bodies), a hint otherwise.
#define UNROLL _Pragma("unroll")

// simd_sum/simd_max reduce over the active lanes of the SIMD group, which is
// 32 wide on every Apple GPU; the bodies keep whole groups active.
#define SIMD_SUM(x) metal::simd_sum(x)
#define SIMD_MAX(x) metal::simd_max(x)

// precise:: spelled out so that the results do not depend on the compile
// options; the host also turns fast math off, which keeps the compiler from
// reassociating fm_log1p_ below (and the bodies' centring arithmetic).
#define EXPF(x) metal::precise::exp(x)
#define LOG1PF(x) fm_log1p_(x)
#define SQRTF(x) metal::precise::sqrt(x)
#define RSQRTF(x) metal::precise::rsqrt(x)
#define FMAF(a, b, c) metal::fma(a, b, c)
#define FMAXF(a, b) metal::fmax(a, b)
#define FMINF(a, b) metal::fmin(a, b)
#define INFINITY_F metal::as_type<float>(0x7f800000u)

#define AS_FLOAT(u) metal::as_type<float>((uint)(u))
#define HALF_TO_FLOAT(u) ((float)metal::as_type<half>((ushort)(u)))
#define BF16_TO_FLOAT(u) metal::as_type<float>(((uint)(u)) << 16)

// MSL has no log1p. Goldberg's form log(u)·x/(u−1), u = 1+x, cancels the
// rounding of 1+x, so it keeps log1p's relative accuracy for small x (the
// softplus of delta_step feeds it exp(a) ∈ (0, e^20]).
static inline float fm_log1p_(float x) {
    float u = 1.0f + x;
    if (u == 1.0f) return x;
    if (u == INFINITY_F) return u;
    return metal::precise::log(u) * (x / (u - 1.0f));
}
