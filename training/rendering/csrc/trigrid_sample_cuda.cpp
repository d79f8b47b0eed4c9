// Torch binding of the CUDA tri-grid sampler (trigrid_sample_cuda.cu): operand checks, output
// allocation and launches on the current stream of the operands' device. Same entry points as
// the CPU plugin's forward / backward (trigrid_sample.cpp) without the thread count.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/utils/pybind.h>

#include <vector>

#include "trigrid_sample.h"

namespace {

// Checks table [N, 3, H, W, D, C] and coords [N, P, 3]: contiguous CUDA tensors of one float dtype on one device.
void check_operands(const at::Tensor& table, const at::Tensor& coords) {
  TORCH_CHECK(table.is_cuda() && table.is_contiguous() && table.dim() == 6 && table.size(1) == kTriGridPlanes,
              "trigrid_sample_cuda: table must be a contiguous CUDA tensor [N, 3, H, W, D, C], got ", table.sizes(),
              " on ", table.device());
  TORCH_CHECK(table.scalar_type() == at::kFloat || table.scalar_type() == at::kDouble,
              "trigrid_sample_cuda: table must be float32 or float64, got ", table.scalar_type());
  TORCH_CHECK(coords.device() == table.device() && coords.is_contiguous() && coords.dim() == 3 &&
              coords.size(0) == table.size(0) && coords.size(2) == 3 && coords.scalar_type() == table.scalar_type(),
              "trigrid_sample_cuda: coords must be contiguous [N, P, 3] of the table's dtype and device, got ",
              coords.sizes(), " ", coords.scalar_type(), " on ", coords.device());
}

template <typename T>
TriGridArgs<T> make_args(const at::Tensor& table, const at::Tensor& coords) {
  TriGridArgs<T> a{table.data_ptr<T>(), coords.data_ptr<T>(), nullptr, nullptr, nullptr, table.size(0),
                   coords.size(1), table.size(5), table.size(2), table.size(3), table.size(4)};
  return a;
}

template <typename T>
void forward_typed(const at::Tensor& table, const at::Tensor& coords, at::Tensor& out) {
  TriGridArgs<T> a = make_args<T>(table, coords);
  a.out = out.data_ptr<T>();
  trigrid_forward_launch(a, c10::cuda::getCurrentCUDAStream().stream());
}

template <typename T>
void backward_typed(const at::Tensor& table, const at::Tensor& coords, const at::Tensor& grad, at::Tensor& grad_table,
                    at::Tensor& grad_coords) {
  TriGridArgs<T> a = make_args<T>(table, coords);
  a.grad = grad.data_ptr<T>();
  a.grad_table = grad_table.numel() ? grad_table.data_ptr<T>() : nullptr;
  trigrid_backward_launch(a, grad_coords.numel() ? grad_coords.data_ptr<T>() : nullptr,
                          c10::cuda::getCurrentCUDAStream().stream());
}

// table [N, 3, H, W, D, C], coords [N, P, 3] -> features [N, P, C].
at::Tensor forward(const at::Tensor& table, const at::Tensor& coords) {
  check_operands(table, coords);
  const c10::cuda::CUDAGuard guard(table.device());
  at::Tensor out = at::empty({coords.size(0), coords.size(1), table.size(5)}, table.options());
  if (table.scalar_type() == at::kDouble) forward_typed<double>(table, coords, out);
  else forward_typed<float>(table, coords, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// d loss / d features [N, P, C] -> (d loss / d table, d loss / d coords [N, P, 3]); each is computed only
// if asked for (else an empty tensor).
std::vector<at::Tensor> backward(const at::Tensor& table, const at::Tensor& coords, const at::Tensor& grad,
                                 bool need_table, bool need_coords) {
  check_operands(table, coords);
  TORCH_CHECK(grad.device() == table.device() && grad.is_contiguous() && grad.scalar_type() == table.scalar_type() &&
              grad.sizes() == at::IntArrayRef({coords.size(0), coords.size(1), table.size(5)}),
              "trigrid_sample_cuda: grad must be contiguous [N, P, C] of the table's dtype, got ", grad.sizes());
  const c10::cuda::CUDAGuard guard(table.device());
  at::Tensor grad_table = need_table ? at::zeros_like(table) : at::empty({0}, table.options());
  at::Tensor grad_coords = need_coords ? at::zeros_like(coords) : at::empty({0}, coords.options());
  if (!need_table && !need_coords) return {grad_table, grad_coords};
  if (table.scalar_type() == at::kDouble) backward_typed<double>(table, coords, grad, grad_table, grad_coords);
  else backward_typed<float>(table, coords, grad, grad_table, grad_coords);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_table, grad_coords};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "mean tri-grid features [N, P, C] at normalised coords [N, P, 3]");
  m.def("backward", &backward, "(grad table, grad coords) from grad features [N, P, C]");
}
