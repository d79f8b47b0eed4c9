// Host-side harness for the CUDA kernels' element math: runs upfirdn2d_element and
// bias_act_element (torch_utils/ops/cuda/*.h) in a plain loop on the CPU for float and double,
// so that tests can check the kernels' formulas and index arithmetic without a GPU.
#include "bias_act.h"
#include "upfirdn2d.h"

namespace {

// Every output element of upfirdn2d, as the kernel's grid-stride loop would write it.
template <typename T>
void run_upfirdn2d(const UpFirDn2dArgs& p) {
  const int64_t total = p.planes * p.out_h * p.out_w;
  for (int64_t i = 0; i < total; ++i) static_cast<T*>(p.y)[i] = Scalar<T>::store(upfirdn2d_element<T>(p, i));
}

// Every output element of bias_act, as the kernel's grid-stride loop would write it.
template <typename T>
void run_bias_act(const BiasActArgs& p) {
  for (int64_t i = 0; i < p.numel; ++i) static_cast<T*>(p.out)[i] = Scalar<T>::store(bias_act_element<T>(p, i));
}

}  // namespace

// upfirdn2d on host memory; dtype 0 = float32, 1 = float64 (the f taps have the same dtype).
extern "C" void upfirdn2d_host(int dtype, const void* x, const void* f, void* y, int64_t planes, int64_t in_h,
                               int64_t in_w, int64_t out_h, int64_t out_w, int up_x, int up_y, int down_x,
                               int down_y, int pad_x0, int pad_y0, int filter_w, int filter_h, int flip_filter,
                               double gain) {
  const UpFirDn2dArgs p{x, f, y, planes, in_h, in_w, out_h, out_w, up_x, up_y, down_x, down_y,
                        pad_x0, pad_y0, filter_w, filter_h, flip_filter != 0, gain};
  if (dtype == static_cast<int>(DType::kFloat64)) run_upfirdn2d<double>(p); else run_upfirdn2d<float>(p);
}

// bias_act on host memory; dtype 0 = float32, 1 = float64; nullptr for absent operands.
extern "C" void bias_act_host(int dtype, const void* x, const void* b, const void* y, const void* g1,
                              const void* g2, void* out, int64_t numel, int64_t b_step, int64_t b_size, int act,
                              int mode, int grad_from_x, double alpha, double gain, double clamp) {
  const BiasActArgs p{x, b, y, g1, g2, out, numel, b_step, b_size, act, mode, grad_from_x != 0, alpha, gain, clamp};
  if (dtype == static_cast<int>(DType::kFloat64)) run_bias_act<double>(p); else run_bias_act<float>(p);
}
