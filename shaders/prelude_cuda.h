// prelude_cuda.h: the shared kernel dialect, defined for CUDA C (NVRTC).
//
// The kernel bodies (common.h, matvec.h, ...) are written once against the
// macros below, in the C++ subset that both CUDA C and the Metal Shading
// Language accept; prelude_metal.h defines the same names for Metal.
//
//   KERNEL(name)(params KERNEL_IDS)      an entry point; params are
//       PARAM_PTR(T, name, slot)          a device buffer (T may be const),
//       PARAM(T, name, slot)              a scalar (Metal: constant T&);
//     KERNEL_IDS ends the list: Metal passes the thread ids as parameters.
//     A kernel with dynamic shared memory ends with KERNEL_IDS_SHARED(T,
//     name) and declares DYN_SHARED(T, name) first thing in its body (one
//     of the two is empty per API).
//   DEVICE_FN                             a helper function (inlined).
//   GLOBAL_PTR(T), SHARED_PTR(T)          pointers with explicit address space.
//   THREAD                                the address space of a reference to
//                                         a thread-local array (Metal: thread).
//   SHARED(T, name, n)                    a threadgroup array, at kernel scope.
//   BARRIER()                             threadgroup barrier (shared memory).
//   GRID_WAIT()                           a kernel's first statement (after
//                                         DYN_SHARED): CUDA's programmatic
//                                         dependent launch waits there; Metal: nothing.
//   THREAD_ID_X, BLOCK_ID_X/Y, BLOCK_DIM_X, GRID_DIM_X
//   (thread and grid ids may only be read inside KERNEL bodies: Metal passes them to the
//   entry point alone, so helpers take them as arguments)
//   SIMD_SUM(x), SIMD_MAX(x)              reductions over a 32-wide SIMD group;
//                                         every lane of the group must call.
//   EXPF, LOG1PF, SQRTF, RSQRTF, FMAF, FMAXF, FMINF: float math (accurate,
//                                         not fast-math: the suite checks 1e-6).
//   AS_FLOAT(u), HALF_TO_FLOAT(u16), BF16_TO_FLOAT(u16)
//   UNROLL                                unroll the next loop.
//   i64                                   64-bit signed index type.
//
// Bodies use uint4/float4 (both APIs have them, with .x .y .z .w), plain
// templates on DEVICE_FN helpers (never on kernels), no pointer arithmetic
// across address spaces, and assume a SIMD width of 32.

typedef unsigned int uint;
typedef unsigned short ushort;
typedef long long i64;

#define KERNEL(name) extern "C" __global__ void name
// MV_KERNEL is KERNEL for the decode matvecs: with MV_MINB (a module's
// matvec setting, runtime/backend/cuda/mvconfig.go) the compiler caps
// registers so that an SM holds MV_MINB blocks of 256 threads.
#ifdef MV_MINB
#define MV_KERNEL(name) extern "C" __global__ void __launch_bounds__(256, MV_MINB) name
#else
#define MV_KERNEL(name) KERNEL(name)
#endif
#define PARAM_PTR(T, name, slot) T* name
#define PARAM(T, name, slot) T name
#define KERNEL_IDS
#define KERNEL_IDS_SHARED(T, name)
#define DYN_SHARED(T, name) extern __shared__ __align__(16) T name[]
#define DEVICE_FN static __device__ __forceinline__
#define GLOBAL_PTR(T) T*
#define SHARED_PTR(T) T*
#define THREAD
#define SHARED(T, name, n) __shared__ __align__(16) T name[n]
#define BARRIER() __syncthreads()

#define THREAD_ID_X ((int)threadIdx.x)
#define BLOCK_ID_X ((int)blockIdx.x)
#define BLOCK_ID_Y ((int)blockIdx.y)
#define BLOCK_DIM_X ((int)blockDim.x)
#define GRID_DIM_X ((int)gridDim.x)

#define UNROLL _Pragma("unroll")

// GRID_WAIT() opens every kernel. Under programmatic dependent launch
// (unless Options.NoPDL; sm_90 and later) a kernel may be launched while the kernel
// before it in the stream still runs, so that its launch and its blocks'
// start overlap that kernel's tail; here it waits until that kernel has
// finished and its writes are visible, then lets the next kernel launch in
// turn (whose blocks wait in their own GRID_WAIT). Every kernel calls it
// before it touches memory, so a kernel's reads and writes are ordered
// after all of the stream's earlier kernels, as without PDL. Launched the
// plain way (or before sm_90) both instructions do nothing.
DEVICE_FN void grid_wait_() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
#define GRID_WAIT() grid_wait_()

DEVICE_FN float simd_sum_(float v) {
    UNROLL for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
DEVICE_FN float simd_max_(float v) {
    UNROLL for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
#define SIMD_SUM(x) simd_sum_(x)
#define SIMD_MAX(x) simd_max_(x)

#define EXPF(x) expf(x)
#define LOG1PF(x) log1pf(x)
#define SQRTF(x) sqrtf(x)
#define RSQRTF(x) rsqrtf(x)
#define FMAF(a, b, c) fmaf(a, b, c)
#define FMAXF(a, b) fmaxf(a, b)
#define FMINF(a, b) fminf(a, b)
#define INFINITY_F __int_as_float(0x7f800000)

#define AS_FLOAT(u) __uint_as_float(u)
DEVICE_FN float half_to_float_(uint h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)h));
    return f;
}
#define HALF_TO_FLOAT(u) half_to_float_(u)
#define BF16_TO_FLOAT(u) __uint_as_float(((uint)(u)) << 16)
