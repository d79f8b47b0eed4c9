// CUDA kernels of the fused tri-grid sampler (the 'cuda' accelerator of training/rendering/planes.py):
// grid-stride loops over the work items of trigrid_sample.h (whose point bodies the CPU kernel
// trigrid_sample.cpp runs too, and whose items tests/trigrid_host_harness.cpp runs on the CPU).
// Forward: one thread per (point, group of kTriGridGroup channels), so that neighbouring threads
// read neighbouring features of one texel row. Backward: one thread per (point, plane, channel
// group), adding into the texel-table gradient and the coordinate gradient with atomics (float
// atomics: the summation order, and so the last bits, vary from run to run).
#include <cuda_runtime.h>

#include "trigrid_sample.h"

namespace {

constexpr int kThreads = 256;      // threads per block
constexpr int64_t kMaxBlocks = 65535;

// Blocks for a grid-stride loop over `total` items.
unsigned int grid_blocks(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(blocks < kMaxBlocks ? (blocks > 0 ? blocks : 1) : kMaxBlocks);
}

__device__ __forceinline__ void atomic_add(float* address, float value) { atomicAdd(address, value); }

__device__ __forceinline__ void atomic_add(double* address, double value) {
#if __CUDA_ARCH__ >= 600
  atomicAdd(address, value);
#else
  unsigned long long* bits = reinterpret_cast<unsigned long long*>(address);
  unsigned long long old = *bits, assumed;
  do {
    assumed = old;
    old = atomicCAS(bits, assumed, __double_as_longlong(value + __longlong_as_double(assumed)));
  } while (assumed != old);
#endif
}

// The add policy of trigrid_backward_point on the GPU (the host branch only satisfies nvcc's host pass).
struct AtomicAdd {
  template <typename T>
  __host__ __device__ void operator()(T* grad_table, int64_t i, T value) const {
#if defined(__CUDA_ARCH__)
    atomic_add(grad_table + i, value);
#else
    grad_table[i] += value;
#endif
  }
};

// Discards the table gradient (only the coordinates need one).
struct NoAdd {
  template <typename T>
  __host__ __device__ void operator()(T*, int64_t, T) const {}
};

template <typename T>
__global__ void forward_kernel(TriGridArgs<T> a, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
    trigrid_forward_item(a, i);
}

template <typename T, typename Add>
__global__ void backward_kernel(TriGridArgs<T> a, T* grad_coords, int64_t total, Add add) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    T gc[3];
    const int64_t point = trigrid_backward_item(a, i, gc, add);
    if (grad_coords)
      for (int axis = 0; axis < 3; ++axis)
        if (gc[axis] != T(0)) atomic_add(grad_coords + 3 * point + axis, gc[axis]);
  }
}

}  // namespace

template <typename T>
void trigrid_forward_launch(const TriGridArgs<T>& a, CUstream_st* stream) {
  const int64_t total = a.n * a.p * trigrid_groups(a.c);
  if (total > 0) forward_kernel<T><<<grid_blocks(total), kThreads, 0, stream>>>(a, total);
}

template <typename T>
void trigrid_backward_launch(const TriGridArgs<T>& a, T* grad_coords, CUstream_st* stream) {
  const int64_t total = a.n * a.p * kTriGridPlanes * trigrid_groups(a.c);
  if (total == 0) return;
  if (a.grad_table) {
    backward_kernel<T><<<grid_blocks(total), kThreads, 0, stream>>>(a, grad_coords, total, AtomicAdd());
  } else {
    backward_kernel<T><<<grid_blocks(total), kThreads, 0, stream>>>(a, grad_coords, total, NoAdd());
  }
}

template void trigrid_forward_launch<float>(const TriGridArgs<float>&, CUstream_st*);
template void trigrid_forward_launch<double>(const TriGridArgs<double>&, CUstream_st*);
template void trigrid_backward_launch<float>(const TriGridArgs<float>&, float*, CUstream_st*);
template void trigrid_backward_launch<double>(const TriGridArgs<double>&, double*, CUstream_st*);
