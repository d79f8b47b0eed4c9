// CUDA kernel for bias_act: a grid-stride loop over elements, each computed by bias_act_element
// (bias_act.h). Includes only CUDA headers so that it compiles in seconds.
#include <cuda_runtime.h>

#include "bias_act.h"

namespace {

// One thread per element (grid-stride), stored in the element type T.
template <typename T>
__global__ void bias_act_kernel(BiasActArgs p) {
  T* out = static_cast<T*>(p.out);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += stride) {
    out[i] = Scalar<T>::store(bias_act_element<T>(p, i));
  }
}

// Launch bias_act_kernel<T> for every element of `p`.
template <typename T>
void launch_typed(const BiasActArgs& p, cudaStream_t stream) {
  if (p.numel > 0) {
    bias_act_kernel<T><<<ops_grid_blocks(p.numel), kOpsThreads, 0, stream>>>(p);
  }
}

}  // namespace

void bias_act_launch(const BiasActArgs& args, DType dtype, CUstream_st* stream) {
  switch (dtype) {
    case DType::kFloat32: launch_typed<float>(args, stream); break;
    case DType::kFloat64: launch_typed<double>(args, stream); break;
    case DType::kFloat16: launch_typed<__half>(args, stream); break;
    case DType::kBFloat16: launch_typed<__nv_bfloat16>(args, stream); break;
  }
}
