// Argument checks and dtype mapping shared by the torch bindings (upfirdn2d.cpp, bias_act.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include "ops_common.h"

// The kernel dtype of tensor `name` of `op`; errors for dtypes the kernels are not built for.
inline DType kernel_dtype(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kFloat32;
    case at::kDouble: return DType::kFloat64;
    case at::kHalf: return DType::kFloat16;
    case at::kBFloat16: return DType::kBFloat16;
    default:
      TORCH_CHECK(false, op, ": ", name, " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
  }
}

// The dtype the kernels accumulate in for elements of `dtype` (Scalar<T>::Acc).
inline at::ScalarType accumulation_dtype(DType dtype) {
  return dtype == DType::kFloat64 ? at::kDouble : at::kFloat;
}

// Checks that tensor `name` of `op` is a contiguous CUDA tensor.
inline void check_cuda_contiguous(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
}
