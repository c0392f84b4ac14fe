// metal_mock.h: just enough of the Metal Shading Language for a C++17
// compiler (g++ or clang) to read the Metal build of the shared kernels
// (prelude_metal.h + the bodies) and, in the simulator (metalsim.cc), to
// run them on the CPU.
//
// Address-space qualifiers and `kernel` become nothing (with clang they
// can become clang address spaces instead, see FMOE_MOCK_ADDRESS_SPACES) and [[buffer(n)]]
// style attributes are left to the compiler to ignore (build with
// -Wno-attributes), so the parse checks the C++ the bodies write, the
// macro expansion of the Metal prelude and the types of every builtin they
// call — not Metal's address-space rules, which only Apple's compiler knows.
//
// SIMD-group reductions and barriers call hooks (fm_sim_*) that only the
// simulator defines; a syntax-only parse needs just the declarations.
#ifndef FMOE_METAL_MOCK_H
#define FMOE_METAL_MOCK_H

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#define kernel
#define thread
#if defined(FMOE_MOCK_ADDRESS_SPACES)
// Clang only: Metal's address spaces as clang address spaces, so that a
// pointer or reference that crosses spaces without a cast fails here as it
// would in Apple's compiler. (Numbers as in clang's OpenCL mapping.)
#define device __attribute__((address_space(1)))
#define constant __attribute__((address_space(2)))
#define threadgroup __attribute__((address_space(3)))
#else
#define device
#define constant
#define threadgroup
#endif

typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long ulong;

// half: IEEE binary16, as its bit pattern. Only the conversion to float is
// mocked (the bodies never compute in half).
struct half {
    ushort bits;
    operator float() const {
        uint32_t sign = uint32_t(bits >> 15) << 31, exp = (bits >> 10) & 0x1f, man = bits & 0x3ff, f;
        if (exp == 0x1f) {
            f = sign | 0x7f800000u | (man << 13);
        } else if (exp != 0) {
            f = sign | ((exp + 112) << 23) | (man << 13);
        } else {
            float v = float(man) * (1.0f / 16777216.0f);  // subnormal: man·2^-24, exact
            return sign ? -v : v;
        }
        float r;
        std::memcpy(&r, &f, 4);
        return r;
    }
};

#if defined(__clang__)
// Clang's OpenCL-style vectors are value types like Metal's: copyable out
// of any address space, with .x .y .z .w.
typedef float float2 __attribute__((ext_vector_type(2)));
typedef float float3 __attribute__((ext_vector_type(3)));
typedef float float4 __attribute__((ext_vector_type(4)));
typedef uint uint2 __attribute__((ext_vector_type(2)));
typedef uint uint3 __attribute__((ext_vector_type(3)));
typedef uint uint4 __attribute__((ext_vector_type(4)));
typedef int int4 __attribute__((ext_vector_type(4)));
#else
template <class T>
struct fm_vec2 {
    T x, y;
};
template <class T>
struct fm_vec3 {
    T x, y, z;
};
template <class T>
struct alignas(4 * sizeof(T)) fm_vec4 {
    T x, y, z, w;
};
typedef fm_vec2<float> float2;
typedef fm_vec3<float> float3;
typedef fm_vec4<float> float4;
typedef fm_vec2<uint> uint2;
typedef fm_vec3<uint> uint3;
typedef fm_vec4<uint> uint4;
typedef fm_vec4<int> int4;
#endif

// Hooks into the simulator: op 0 = sum, 1 = max. A fm_site names the
// source site of the call: the simulator checks that every thread of a
// threadgroup waits at the same barrier, and every lane of a SIMD group is
// in the same reduction. The identity comes from the preprocessor
// (__COUNTER__, unique per macro expansion, so also per site when two
// share a line; __FILE__ and __LINE__ for the message), not from a code
// address: a compiler may duplicate one source barrier into several call
// sites (g++ -O1 does, in matvec), which must not read as divergence.
struct fm_site {
    int id;
    const char* file;
    int line;
};
float fm_sim_simd(float v, int op, fm_site site);
void fm_sim_barrier(fm_site site);

namespace metal {

enum class mem_flags { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };

inline void threadgroup_barrier_at(mem_flags, fm_site s) { fm_sim_barrier(s); }
inline float simd_sum_at(float v, fm_site s) { return fm_sim_simd(v, 0, s); }
inline float simd_max_at(float v, fm_site s) { return fm_sim_simd(v, 1, s); }

// The builtins as function-like macros, so that each use expands to its own
// site (a `metal::` before the name is kept).
#define FM_MOCK_SITE (fm_site{__COUNTER__, __FILE__, __LINE__})
#define threadgroup_barrier(flags) threadgroup_barrier_at(flags, FM_MOCK_SITE)
#define simd_sum(v) simd_sum_at(v, FM_MOCK_SITE)
#define simd_max(v) simd_max_at(v, FM_MOCK_SITE)

// as_type reinterprets the bits of a value of the same size (MSL 2.x).
template <class T, class U>
inline T as_type(U u) {
    static_assert(sizeof(T) == sizeof(U), "as_type needs types of equal size");
    static_assert(std::is_trivially_copyable<U>::value, "as_type of a non-trivial type");
    T t;
    std::memcpy(&t, &u, sizeof(T));
    return t;
}

// Only float overloads: a double reaching one of these would be a bug in a
// body (Metal has no double), and must not compile here either.
inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
inline float fmax(float a, float b) { return std::fmax(a, b); }
inline float fmin(float a, float b) { return std::fmin(a, b); }
inline float abs(float x) { return std::fabs(x); }
template <class T>
T fma(T, T, T) = delete;
template <class T>
T fmax(T, T) = delete;
template <class T>
T fmin(T, T) = delete;

// fm_sim_ulp perturbs a transcendental result by up to FMOE_MOCK_ULP units
// in the last place, so a simulator run can check that the tolerances hold
// for a GPU whose intrinsics are less accurate than the host's libm.
float fm_sim_ulp(float r);

namespace precise {
inline float exp(float x) { return fm_sim_ulp(std::exp(x)); }
inline float log(float x) { return fm_sim_ulp(std::log(x)); }
inline float sqrt(float x) { return std::sqrt(x); }
inline float rsqrt(float x) { return fm_sim_ulp(1.0f / std::sqrt(x)); }
template <class T>
T exp(T) = delete;
template <class T>
T log(T) = delete;
template <class T>
T sqrt(T) = delete;
template <class T>
T rsqrt(T) = delete;
}  // namespace precise

namespace fast {
using precise::exp;
using precise::log;
using precise::rsqrt;
using precise::sqrt;
}  // namespace fast

using precise::exp;
using precise::log;
using precise::rsqrt;
using precise::sqrt;

}  // namespace metal

#endif
