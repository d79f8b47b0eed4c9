// Torch binding of the bias_act CUDA kernel: argument checks, output allocation and a launch on
// the current stream of the inputs' device. The modes and the meaning of every operand are
// described in bias_act.h; torch_utils/ops/bias_act_cuda.py chains them into autograd Functions.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/csrc/utils/pybind.h>

#include "bias_act.h"
#include "binding_utils.h"

namespace {

// Data pointer of optional operand `name`: nullptr when empty, else it must match `ref` exactly.
const void* optional_operand(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  if (t.numel() == 0) return nullptr;
  check_cuda_contiguous(t, "bias_act", name);
  TORCH_CHECK(t.sizes() == ref.sizes(), "bias_act: ", name, " has shape ", t.sizes(), ", expected ", ref.sizes());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type() && t.device() == ref.device(), "bias_act: ", name, " is ",
              t.scalar_type(), " on ", t.device(), ", expected ", ref.scalar_type(), " on ", ref.device());
  return t.data_ptr();
}

// Fills the bias fields of `args`: b is empty or 1-D with ref.size(dim) elements.
void set_bias(BiasActArgs& args, const at::Tensor& b, const at::Tensor& ref, int64_t dim) {
  args.b = nullptr;
  args.b_step = 1;
  args.b_size = 1;
  if (b.numel() == 0) return;
  TORCH_CHECK(dim >= 0 && dim < ref.dim(), "bias_act: dim ", dim, " is out of range for ", ref.dim(), " dimensions");
  check_cuda_contiguous(b, "bias_act", "b");
  TORCH_CHECK(b.dim() == 1 && b.size(0) == ref.size(dim), "bias_act: b must be 1-D with x.shape[", dim, "] = ",
              ref.size(dim), " elements, got ", b.sizes());
  TORCH_CHECK(b.scalar_type() == ref.scalar_type() && b.device() == ref.device(), "bias_act: b is ",
              b.scalar_type(), " on ", b.device(), ", expected ", ref.scalar_type(), " on ", ref.device());
  args.b = b.data_ptr();
  args.b_size = b.size(0);
  for (int64_t d = dim + 1; d < ref.dim(); ++d) args.b_step *= ref.size(d);
}

// Checks that the gradient modes got every operand their formulas read (see bias_act.h).
void check_gradient_operands(const BiasActArgs& args) {
  TORCH_CHECK(!args.grad_from_x || args.x, "bias_act: x is required for gradients computed from x");
  TORCH_CHECK(args.y || (args.grad_from_x && args.clamp < 0), "bias_act: y is required for gradients computed "
              "from y or with clamping");
  TORCH_CHECK(args.mode != kGradGrad || args.g2, "bias_act: g2 (dy) is required for the second-order term");
}

// out = the forward (mode 0) or one of the gradient terms (modes 1, 2) of bias_act.
at::Tensor bias_act(const at::Tensor& x, const at::Tensor& b, const at::Tensor& y, const at::Tensor& g1,
                    const at::Tensor& g2, int64_t dim, int64_t act, int64_t mode, bool grad_from_x, double alpha,
                    double gain, double clamp) {
  TORCH_CHECK(mode >= kForward && mode <= kGradGrad, "bias_act: mode must be 0, 1 or 2, got ", mode);
  TORCH_CHECK(act >= kLinear && act <= kSwish, "bias_act: act must be an activation code in [1, 9], got ", act);
  const char* ref_name = mode == kForward ? "x" : "g1";
  const at::Tensor& ref = mode == kForward ? x : g1;
  check_cuda_contiguous(ref, "bias_act", ref_name);
  const DType dtype = kernel_dtype(ref, "bias_act", ref_name);
  BiasActArgs args;
  args.x = optional_operand(x, ref, "x");
  args.y = optional_operand(y, ref, "y");
  args.g1 = optional_operand(g1, ref, "g1");
  args.g2 = optional_operand(g2, ref, "g2");
  set_bias(args, b, ref, dim);
  args.numel = ref.numel();
  args.act = static_cast<int>(act);
  args.mode = static_cast<int>(mode);
  args.grad_from_x = grad_from_x;
  args.alpha = alpha;
  args.gain = gain;
  args.clamp = clamp;
  if (mode != kForward && args.numel > 0) check_gradient_operands(args);
  const c10::cuda::CUDAGuard guard(ref.device());
  at::Tensor out = at::empty(ref.sizes(), ref.options());
  args.out = out.data_ptr();
  bias_act_launch(args, dtype, c10::cuda::getCurrentCUDAStream().stream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bias_act", &bias_act, "bias_act(x, b, y, g1, g2, dim, act, mode, grad_from_x, alpha, gain, clamp); "
        "empty tensors stand for absent operands, see bias_act.h");
}
