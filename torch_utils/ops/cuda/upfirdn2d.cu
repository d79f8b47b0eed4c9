// CUDA kernel for upfirdn2d: a grid-stride loop over output pixels, each computed by
// upfirdn2d_element (upfirdn2d.h). Includes only CUDA headers so that it compiles in seconds.
#include <cuda_runtime.h>

#include "upfirdn2d.h"

namespace {

// One thread per output element (grid-stride), stored in the element type T.
template <typename T>
__global__ void upfirdn2d_kernel(UpFirDn2dArgs p, int64_t total) {
  T* y = static_cast<T*>(p.y);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    y[i] = Scalar<T>::store(upfirdn2d_element<T>(p, i));
  }
}

// Launch upfirdn2d_kernel<T> for every output element of `p`.
template <typename T>
void launch_typed(const UpFirDn2dArgs& p, cudaStream_t stream) {
  const int64_t total = p.planes * p.out_h * p.out_w;
  if (total > 0) {
    upfirdn2d_kernel<T><<<ops_grid_blocks(total), kOpsThreads, 0, stream>>>(p, total);
  }
}

}  // namespace

void upfirdn2d_launch(const UpFirDn2dArgs& args, DType dtype, CUstream_st* stream) {
  switch (dtype) {
    case DType::kFloat32: launch_typed<float>(args, stream); break;
    case DType::kFloat64: launch_typed<double>(args, stream); break;
    case DType::kFloat16: launch_typed<__half>(args, stream); break;
    case DType::kBFloat16: launch_typed<__nv_bfloat16>(args, stream); break;
  }
}
