// softplus(x) = log(1 + exp(x)) in place on a float CPU tensor, and its gradient from the output,
// for torch_utils/ops/softplus_cpu.py.
//
//   softplus(x) = max(x, 0) + log1p(exp(-|x|))        d/dx = sigmoid(x) = -expm1(-softplus(x))
//
// float32 uses branch-free polynomial exp / log1p / expm1 that the compiler vectorises (PyTorch's
// elementwise softplus evaluates exp and log1p per element); relative error about 2e-7, below
// float32 rounding of the result. float64 uses the C library. No reductions: any thread count gives
// the same bits.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

constexpr int64_t kGrain = 16384;  // elements per work item

inline float bits_to_float(int32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// exp(x) for x <= 0 (x clamped at -87, where exp is 1.6e-38): x = n ln2 + r, |r| <= ln2 / 2, exp(r) by
// its degree-6 Taylor polynomial (relative error < 1.3e-7), times 2^n built in the exponent bits.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  return p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
}

// log1p(t) for 0 <= t <= 1: 2 atanh(s) with s = t / (2 + t) <= 1/3, the odd series to s^13 (relative error
// below 1e-7; s keeps full relative precision for small t, unlike log(1 + t)).
inline float log1p_unit(float t) {
  const float s = t / (2.0f + t), s2 = s * s;
  const float series =
      1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 + s2 * (1.0f / 11 + s2 / 13)))));
  return 2.0f * s * series;
}

// -expm1(-y) = 1 - exp(-y) for y >= 0: its Taylor series for y < 0.25 (no cancellation), else 1 - exp(-y).
inline float one_minus_exp_neg(float y) {
  const float small = y * (1.0f - y * (0.5f - y * (1.0f / 6 - y * (1.0f / 24 - y * (1.0f / 120 - y * (1.0f / 720))))));
  return y < 0.25f ? small : 1.0f - exp_nonpositive(-y);
}

inline float softplus_value(float x) {
  const float ax = x < 0 ? -x : x;
  return (x > 0 ? x : 0.0f) + log1p_unit(exp_nonpositive(-ax));
}

inline double softplus_value(double x) { return (x > 0 ? x : 0.0) + std::log1p(std::exp(-std::fabs(x))); }

inline float sigmoid_from_softplus(float y) { return one_minus_exp_neg(y); }

inline double sigmoid_from_softplus(double y) { return -std::expm1(-y); }

template <typename T>
void softplus_inplace(T* x, int64_t count, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t start = 0; start < count; start += kGrain) {
    const int64_t stop = std::min(count, start + kGrain);
#pragma omp simd
    for (int64_t i = start; i < stop; ++i) x[i] = softplus_value(x[i]);
  }
}

template <typename T>
void softplus_grad(const T* grad, const T* y, T* out, int64_t count, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t start = 0; start < count; start += kGrain) {
    const int64_t stop = std::min(count, start + kGrain);
#pragma omp simd
    for (int64_t i = start; i < stop; ++i) out[i] = grad[i] * sigmoid_from_softplus(y[i]);
  }
}

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() &&
                  (t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kDouble),
              "softplus: ", name, " must be a contiguous float32/float64 CPU tensor");
}

}  // namespace

// x <- softplus(x); returns x.
torch::Tensor forward_(torch::Tensor x, int64_t threads) {
  check(x, "x");
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "softplus_forward", [&] {
    pybind11::gil_scoped_release release;
    softplus_inplace(x.data_ptr<scalar_t>(), x.numel(), static_cast<int>(threads));
  });
  return x;
}

// grad * sigmoid(x), from y = softplus(x).
torch::Tensor backward(torch::Tensor grad, torch::Tensor y, int64_t threads) {
  check(grad, "grad");
  check(y, "y");
  TORCH_CHECK(grad.sizes() == y.sizes() && grad.scalar_type() == y.scalar_type(),
              "softplus: grad must match the output's shape and dtype");
  torch::Tensor out = torch::empty_like(y);
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "softplus_backward", [&] {
    pybind11::gil_scoped_release release;
    softplus_grad(grad.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), y.numel(),
                  static_cast<int>(threads));
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward_", &forward_, "softplus in place");
  m.def("backward", &backward, "grad * sigmoid(x) from the output softplus(x)");
}
