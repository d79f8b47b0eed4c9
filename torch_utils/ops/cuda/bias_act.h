// bias_act element math: the fused forward y = clamp(act(x + b) * gain, -clamp, clamp) and the
// two gradient terms used by the autograd chain in torch_utils/ops/bias_act_cuda.py, whose
// `_grad_formulas` states the same formulas in PyTorch (tested against torch.autograd).
//
// With u = x + b and a = act(u), the gradient of an activation is written in one variable v:
//   v = u  (grad_from_x)   for softplus, swish (and lrelu with alpha < 0),
//   v = a = y / gain       for all others (y is saved instead of x; no x needed).
// act_d1(v) = act'(u) and act_d2(v) = d act_d1 / dv, so that
//   kGrad:     out = g1 * gain * act_d1(v)                       (dx = dy * dy/dx)
//   kGradGrad: out = g1 * g2 * act_d2(v) * (grad_from_x ? gain : 1)
// kGradGrad is d(kGrad)/dx for v = u, and d(kGrad)/dy_forward for v = a. Both gradient modes are
// zero where |y| >= clamp (the output sits at the clamp) and when gain == 0.
#pragma once

#include <math.h>

#include "ops_common.h"

// Activation codes; they equal `cuda_idx` in torch_utils/ops/bias_act.py (checked by a test).
enum BiasActKind : int {
  kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5, kElu = 6, kSelu = 7, kSoftplus = 8, kSwish = 9
};

// What the kernel computes (see the header comment).
enum BiasActMode : int { kForward = 0, kGrad = 1, kGradGrad = 2 };

// SELU constants (Klambauer et al. 2017), as in torch.nn.functional.selu.
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;

// Arguments of one bias_act call; every tensor is contiguous, absent ones are nullptr.
struct BiasActArgs {
  const void* x;   // [numel] of T: the input (forward, and gradients with grad_from_x)
  const void* b;   // [b_size] of T: bias, element i uses b[(i / b_step) % b_size]
  const void* y;   // [numel] of T: the forward output (gradients with clamp or !grad_from_x)
  const void* g1;  // [numel] of T: dy (kGrad) or the incoming gradient of dx (kGradGrad)
  const void* g2;  // [numel] of T: dy (kGradGrad)
  void* out;       // [numel] of T
  int64_t numel, b_step, b_size;
  int act, mode;
  bool grad_from_x;
  double alpha, gain, clamp;
};

// float / double overloads of the math functions, callable from host and device code.
OPS_HD float ops_exp(float v) { return expf(v); }
OPS_HD double ops_exp(double v) { return exp(v); }
OPS_HD float ops_expm1(float v) { return expm1f(v); }
OPS_HD double ops_expm1(double v) { return expm1(v); }
OPS_HD float ops_log1p(float v) { return log1pf(v); }
OPS_HD double ops_log1p(double v) { return log1p(v); }
OPS_HD float ops_tanh(float v) { return tanhf(v); }
OPS_HD double ops_tanh(double v) { return tanh(v); }

// Logistic sigmoid 1 / (1 + e^-v).
template <typename A>
OPS_HD A ops_sigmoid(A v) { return A(1) / (A(1) + ops_exp(-v)); }

// act(u); softplus is linear above 20 like torch.nn.functional.softplus.
template <typename A>
OPS_HD A act_value(int act, A u, A alpha) {
  switch (act) {
    case kRelu: return u > A(0) ? u : A(0);
    case kLrelu: return u > A(0) ? u : u * alpha;
    case kTanh: return ops_tanh(u);
    case kSigmoid: return ops_sigmoid(u);
    case kElu: return u > A(0) ? u : ops_expm1(u);
    case kSelu: return A(kSeluScale) * (u > A(0) ? u : A(kSeluAlpha) * ops_expm1(u));
    case kSoftplus: return u > A(20) ? u : ops_log1p(ops_exp(u));
    case kSwish: return u * ops_sigmoid(u);
    default: return u;
  }
}

// act'(u) written in v (u for softplus/swish, a = act(u) otherwise; lrelu reads the same in both).
template <typename A>
OPS_HD A act_d1(int act, A v, A alpha) {
  switch (act) {
    case kRelu: return v > A(0) ? A(1) : A(0);
    case kLrelu: return v > A(0) ? A(1) : alpha;
    case kTanh: return A(1) - v * v;
    case kSigmoid: return v * (A(1) - v);
    case kElu: return v > A(0) ? A(1) : v + A(1);
    case kSelu: return v > A(0) ? A(kSeluScale) : v + A(kSeluScale * kSeluAlpha);
    case kSoftplus: return ops_sigmoid(v);
    case kSwish: { const A s = ops_sigmoid(v); return s * (A(1) + v * (A(1) - s)); }
    default: return A(1);
  }
}

// d act_d1 / dv in the same variable v; zero for the piecewise-linear activations.
template <typename A>
OPS_HD A act_d2(int act, A v) {
  switch (act) {
    case kTanh: return A(-2) * v;
    case kSigmoid: return A(1) - A(2) * v;
    case kElu: case kSelu: return v > A(0) ? A(0) : A(1);
    case kSoftplus: { const A s = ops_sigmoid(v); return s * (A(1) - s); }
    case kSwish: { const A s = ops_sigmoid(v); return s * (A(1) - s) * (A(2) + v * (A(1) - A(2) * s)); }
    default: return A(0);
  }
}

// Loads element i of an optional operand, 0 when absent.
template <typename T>
OPS_HD typename Scalar<T>::Acc bias_act_load(const void* t, int64_t i) {
  return t ? Scalar<T>::load(static_cast<const T*>(t)[i]) : typename Scalar<T>::Acc(0);
}

// Output element `i` in the accumulation type, for the mode in `p`.
template <typename T>
OPS_HD typename Scalar<T>::Acc bias_act_element(const BiasActArgs& p, int64_t i) {
  using A = typename Scalar<T>::Acc;
  const A alpha = static_cast<A>(p.alpha), gain = static_cast<A>(p.gain), clamp = static_cast<A>(p.clamp);
  A u = bias_act_load<T>(p.x, i);
  if (p.b) u += bias_act_load<T>(p.b, (i / p.b_step) % p.b_size);
  if (p.mode == kForward) {
    const A v = act_value(p.act, u, alpha) * gain;
    return clamp < A(0) ? v : (v > clamp ? clamp : (v < -clamp ? -clamp : v));
  }
  const A y = bias_act_load<T>(p.y, i);
  const A abs_y = y < A(0) ? -y : y;
  if (gain == A(0) || (clamp >= A(0) && !(abs_y < clamp))) return A(0);
  const A v = p.grad_from_x ? u : y / gain;
  const A g1 = bias_act_load<T>(p.g1, i);
  if (p.mode == kGrad) return g1 * gain * act_d1(p.act, v, alpha);
  return g1 * bias_act_load<T>(p.g2, i) * act_d2(p.act, v) * (p.grad_from_x ? gain : A(1));
}

// Launch the kernel over all `numel` elements on `stream` (defined in bias_act.cu).
void bias_act_launch(const BiasActArgs& args, DType dtype, CUstream_st* stream);
