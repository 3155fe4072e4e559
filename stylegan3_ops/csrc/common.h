// Helpers shared by the device code and its CPU emulation (tests compile these headers
// with the host compiler and run one thread block at a time, serially).
#pragma once

#include <cassert>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SG3_HD __host__ __device__ __forceinline__
#define SG3_DEV __device__ __forceinline__
#define SG3_SYNC() __syncthreads()
#define SG3_UNROLL _Pragma("unroll")
#else
#define SG3_UNROLL
#define SG3_HD inline
#define SG3_DEV inline
#define SG3_SYNC() ((void)0)
#endif

namespace sg3 {

// Integer division rounding toward minus infinity, for a possibly negative numerator
// and a positive divisor (C++ '/' truncates toward zero).
SG3_HD int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
SG3_HD int ceil_div(int a, int b) { return -floor_div(-a, b); }
// a mod b in [0, b) for a positive divisor.
SG3_HD int pos_mod(int a, int b) {
    int r = a % b;
    return r < 0 ? r + b : r;
}

// Four consecutive floats of shared memory, 16-byte aligned (checked by the CPU emulation).
#if defined(__CUDACC__)
__device__ __forceinline__ void load4(const float* p, float v[4]) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
}
__device__ __forceinline__ void store4(float* p, const float v[4]) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
#else
inline void load4(const float* p, float v[4]) {
    assert(reinterpret_cast<uintptr_t>(p) % 16 == 0);
    for (int i = 0; i < 4; ++i) v[i] = p[i];
}
inline void store4(float* p, const float v[4]) {
    assert(reinterpret_cast<uintptr_t>(p) % 16 == 0);
    for (int i = 0; i < 4; ++i) p[i] = v[i];
}
#endif

}  // namespace sg3
