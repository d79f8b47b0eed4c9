// Torch binding of the upfirdn2d CUDA kernel: argument checks, output allocation and a launch on
// the current stream of x's device. Same semantics as torch_utils/ops/upfirdn2d.py for a 2-D
// filter; the separable 1-D case is two calls (see torch_utils/ops/upfirdn2d_cuda.py).
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/utils/pybind.h>

#include "binding_utils.h"
#include "upfirdn2d.h"

namespace {

// Output length along one axis; checks that the padded input is at least as long as the filter.
int64_t output_size(int64_t in, int64_t up, int64_t down, int64_t pad0, int64_t pad1, int64_t taps, const char* axis) {
  const int64_t padded = in * up + pad0 + pad1;
  TORCH_CHECK(padded >= taps, "upfirdn2d: padding: the upsampled, padded ", axis, " is ", padded,
              " pixels, shorter than the filter (", taps, " taps)");
  return (padded - taps) / down + 1;
}

// Checks x [N, C, H, W] and the 2-D filter f (accumulation dtype, same device); returns x's kernel dtype.
DType check_inputs(const at::Tensor& x, const at::Tensor& f) {
  check_cuda_contiguous(x, "upfirdn2d", "x");
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be 4-D [N, C, H, W], got ", x.dim(), " dimensions");
  const DType dtype = kernel_dtype(x, "upfirdn2d", "x");
  check_cuda_contiguous(f, "upfirdn2d", "f");
  TORCH_CHECK(f.device() == x.device(), "upfirdn2d: f is on ", f.device(), " but x is on ", x.device());
  TORCH_CHECK(f.dim() == 2 && f.numel() > 0, "upfirdn2d: f must be a non-empty 2-D [fh, fw] filter, got ", f.sizes());
  TORCH_CHECK(f.scalar_type() == accumulation_dtype(dtype), "upfirdn2d: f must be ", accumulation_dtype(dtype),
              " for x of dtype ", x.scalar_type(), ", got ", f.scalar_type());
  return dtype;
}

// y = upfirdn2d(x, f, up, down, padding, flip_filter, gain) for x [N, C, H, W] and f [fh, fw].
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t up_x, int64_t up_y, int64_t down_x,
                     int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0, int64_t pad_y1,
                     bool flip_filter, double gain) {
  const DType dtype = check_inputs(x, f);
  TORCH_CHECK(up_x >= 1 && up_y >= 1, "upfirdn2d: up must be >= 1, got (", up_x, ", ", up_y, ")");
  TORCH_CHECK(down_x >= 1 && down_y >= 1, "upfirdn2d: down must be >= 1, got (", down_x, ", ", down_y, ")");
  const int64_t out_h = output_size(x.size(2), up_y, down_y, pad_y0, pad_y1, f.size(0), "height");
  const int64_t out_w = output_size(x.size(3), up_x, down_x, pad_x0, pad_x1, f.size(1), "width");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty({x.size(0), x.size(1), out_h, out_w}, x.options());
  UpFirDn2dArgs args;
  args.x = x.data_ptr();
  args.f = f.data_ptr();
  args.y = y.data_ptr();
  args.planes = x.size(0) * x.size(1);
  args.in_h = x.size(2);
  args.in_w = x.size(3);
  args.out_h = out_h;
  args.out_w = out_w;
  args.up_x = static_cast<int>(up_x);
  args.up_y = static_cast<int>(up_y);
  args.down_x = static_cast<int>(down_x);
  args.down_y = static_cast<int>(down_y);
  args.pad_x0 = static_cast<int>(pad_x0);
  args.pad_y0 = static_cast<int>(pad_y0);
  args.filter_w = static_cast<int>(f.size(1));
  args.filter_h = static_cast<int>(f.size(0));
  args.flip_filter = flip_filter;
  args.gain = gain;
  upfirdn2d_launch(args, dtype, c10::cuda::getCurrentCUDAStream().stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "upfirdn2d(x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, "
        "flip_filter, gain) with a 2-D filter f in the accumulation dtype (float64 for float64 x, else float32)");
}
