// x * scale written channels-last, for torch_utils/ops/channels_last_cpu.py:
//
//   out[n, c, y, x] = in[n, c, y, x] * scale[n, c]      in contiguous NCHW, out channels-last (NHWC in memory)
//
// A work item is one row (n, y): its [C, W] slab of the input is transposed into the [W, C] row of the output
// in 8 x 8 register blocks (transpose_8x8.h), each source row scaled on the way; partial blocks element by
// element. PyTorch's strided copy into a channels-last tensor runs at a few GB/s on this transposition.
// No reductions: the result is the same on any number of threads.
#include <torch/extension.h>

#include <algorithm>
#include <vector>

#include "transpose_8x8.h"

namespace {

constexpr int64_t kBlock = 8;

template <typename T>
void scale_impl(const T* in, const T* scale, T* out, int64_t n, int64_t c, int64_t h, int64_t w, int threads) {
  const int64_t plane = h * w;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t item = 0; item < n * h; ++item) {
    const int64_t b = item / h, y = item % h;
    const T* src = in + b * c * plane + y * w;  // channel k, column q at src[k * plane + q]
    const T* s = scale + b * c;
    T* dst = out + item * w * c;                // column q, channel k at dst[q * c + k]
    for (int64_t k0 = 0; k0 < c; k0 += kBlock)
      for (int64_t q0 = 0; q0 < w; q0 += kBlock) {
        const int64_t k1 = std::min(c, k0 + kBlock), q1 = std::min(w, q0 + kBlock);
        const bool whole = k1 - k0 == kBlock && q1 - q0 == kBlock;
        if (whole && transpose_8x8<T>(src + k0 * plane + q0, plane, dst + q0 * c + k0, c, s + k0)) continue;
        for (int64_t k = k0; k < k1; ++k)
          for (int64_t q = q0; q < q1; ++q) dst[q * c + k] = src[k * plane + q] * s[k];
      }
  }
}

}  // namespace

// x [N, C, H, W] contiguous, scale [N, C] -> x * scale[:, :, None, None] as a channels-last tensor.
torch::Tensor scaled(torch::Tensor x, torch::Tensor scale, int64_t threads) {
  TORCH_CHECK(x.dim() == 4 && x.device().is_cpu() && x.is_contiguous() &&
                  (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble),
              "channels_last: x must be a contiguous float32/float64 CPU tensor [N, C, H, W]");
  TORCH_CHECK(scale.dim() == 2 && scale.size(0) == x.size(0) && scale.size(1) == x.size(1) && scale.is_contiguous() &&
                  scale.scalar_type() == x.scalar_type() && scale.device().is_cpu(),
              "channels_last: scale must be a contiguous [N, C] CPU tensor of x's dtype");
  torch::Tensor out = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "channels_last_scaled", [&] {
    pybind11::gil_scoped_release release;
    scale_impl(x.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), x.size(0), x.size(1),
               x.size(2), x.size(3), static_cast<int>(threads));
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("scaled", &scaled, "x * scale per sample and channel, written channels-last");
}
