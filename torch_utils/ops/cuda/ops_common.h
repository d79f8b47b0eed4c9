// Shared by the CUDA kernels, their torch bindings and the host-side test harness: host/device
// qualifiers, dtype codes, per-dtype load/store with the accumulation type, and grid sizing.
// Deliberately free of CUDA and torch headers under a host compiler, so that the element math
// in upfirdn2d.h / bias_act.h can be compiled and checked on a machine without a GPU.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define OPS_HD __host__ __device__ __forceinline__
#else
#define OPS_HD inline
#endif

// The struct behind cudaStream_t, so that launcher declarations need no CUDA header.
struct CUstream_st;

// Element types the kernels are instantiated for (the binding maps at::ScalarType onto these).
enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Scalar<T>: Acc is the type arithmetic is done in; load/store convert between T and Acc.
template <typename T>
struct Scalar;

template <>
struct Scalar<float> {
  using Acc = float;
  static OPS_HD float load(float v) { return v; }
  static OPS_HD float store(float v) { return v; }
};

template <>
struct Scalar<double> {
  using Acc = double;
  static OPS_HD double load(double v) { return v; }
  static OPS_HD double store(double v) { return v; }
};

#if defined(__CUDACC__)
template <>
struct Scalar<__half> {
  using Acc = float;
  static OPS_HD float load(__half v) { return __half2float(v); }
  static OPS_HD __half store(float v) { return __float2half_rn(v); }
};

template <>
struct Scalar<__nv_bfloat16> {
  using Acc = float;
  static OPS_HD float load(__nv_bfloat16 v) { return __bfloat162float(v); }
  static OPS_HD __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};
#endif

// Threads per block of every element-wise kernel.
constexpr int kOpsThreads = 256;

// Blocks for a grid-stride loop over `total` elements (capped; the loop covers the rest).
inline unsigned int ops_grid_blocks(int64_t total) {
  const int64_t max_blocks = 65535;
  const int64_t blocks = (total + kOpsThreads - 1) / kOpsThreads;
  return static_cast<unsigned int>(blocks < max_blocks ? blocks : max_blocks);
}
