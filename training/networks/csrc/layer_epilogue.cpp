// The epilogue of a non-fused modulated synthesis layer in one pass over memory, forward and
// backward, on the CPU: training/networks/layer_epilogue.py.
//
//   z = x * scale[n, o] + bias[o] (+ noise[n or 0, p])      x: the convolution's output [N, O, P]
//   y = act(clamp(z, low, high))                             act(v) = v > 0 ? v : alpha * v
//
// (scale is the demodulation times the activation gain, bias and noise are already multiplied by
// that gain, alpha = 0 is relu.) The backward recomputes z from x instead of keeping y: with
//   g = gy * [low < z < high] * (clamp(z) > 0 ? 1 : alpha)
// it returns d/dx = g * scale, d/dscale = sum_p g x, d/dbias = sum_(n, p) g and d/dnoise = sum_o g
// (also over n for a noise shared by the batch), reading gy and x once. Work items are blocks of
// pixels of one batch element: each owns its slice of d/dx and d/dnoise and writes per-item
// partial sums for scale and bias, added up in a fixed order afterwards (results do not depend on
// the thread count).
#include <torch/extension.h>

#include <algorithm>
#include <vector>

namespace {

constexpr int64_t kPixelBlock = 1024;  // pixels per work item

template <typename T>
struct Epilogue {
  const T* x;
  const T* scale;
  const T* bias;
  const T* noise;  // nullptr: none
  int64_t n, o, p;
  bool shared_noise;  // noise [1, P] for every batch element
  T low, high, alpha;

  const T* noise_row(int64_t b) const { return noise + (shared_noise ? 0 : b) * p; }
};

template <typename T>
inline T clamp_value(T v, T low, T high) {
  return v < low ? low : (v > high ? high : v);
}

template <typename T>
void forward_impl(const Epilogue<T>& e, T* y, int threads) {
  const int64_t blocks = (e.p + kPixelBlock - 1) / kPixelBlock;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t item = 0; item < e.n * e.o * blocks; ++item) {
    const int64_t row = item / blocks, b = row / e.o, c = row % e.o;
    const int64_t p0 = (item % blocks) * kPixelBlock, p1 = std::min(e.p, p0 + kPixelBlock);
    const T s = e.scale[row], bias = e.bias[c], low = e.low, high = e.high, alpha = e.alpha;
    const T* x = e.x + row * e.p;
    T* out = y + row * e.p;
    const T* noise = e.noise ? e.noise_row(b) : nullptr;
#pragma omp simd
    for (int64_t i = p0; i < p1; ++i) {
      const T v = clamp_value(x[i] * s + bias + (noise ? noise[i] : T(0)), low, high);
      out[i] = v > T(0) ? v : alpha * v;
    }
  }
}

template <typename T>
void backward_impl(const Epilogue<T>& e, const T* gy, T* gx, T* gscale, T* gbias, T* gnoise, int threads) {
  const int64_t blocks = (e.p + kPixelBlock - 1) / kPixelBlock;
  const int64_t items = e.n * blocks;
  std::vector<T> scale_parts(items * e.o), bias_parts(items * e.o);
  std::vector<T> noise_parts(gnoise && e.shared_noise ? e.n * e.p : 0);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t b = item / blocks, p0 = (item % blocks) * kPixelBlock, p1 = std::min(e.p, p0 + kPixelBlock);
    const T low = e.low, high = e.high, alpha = e.alpha;
    const T* noise = e.noise ? e.noise_row(b) : nullptr;
    T* noise_sum = gnoise ? (e.shared_noise ? noise_parts.data() + b * e.p : gnoise + b * e.p) : nullptr;
    if (noise_sum) std::fill(noise_sum + p0, noise_sum + p1, T(0));
    for (int64_t c = 0; c < e.o; ++c) {
      const int64_t row = b * e.o + c;
      const T s = e.scale[row], bias = e.bias[c];
      const T* x = e.x + row * e.p;
      const T* g_in = gy + row * e.p;
      T* g_out = gx ? gx + row * e.p : nullptr;
      T scale_sum = T(0), bias_sum = T(0);
#pragma omp simd reduction(+ : scale_sum, bias_sum)
      for (int64_t i = p0; i < p1; ++i) {
        const T z = x[i] * s + bias + (noise ? noise[i] : T(0));
        const T v = clamp_value(z, low, high);
        const T g = (z > low && z < high) ? g_in[i] * (v > T(0) ? T(1) : alpha) : T(0);
        if (g_out) g_out[i] = g * s;
        if (noise_sum) noise_sum[i] += g;
        scale_sum += g * x[i];
        bias_sum += g;
      }
      scale_parts[item * e.o + c] = scale_sum;
      bias_parts[item * e.o + c] = bias_sum;
    }
  }
  for (int64_t b = 0; b < e.n; ++b)
    for (int64_t c = 0; c < e.o; ++c) {
      T sum = T(0);
      for (int64_t k = 0; k < blocks; ++k) sum += scale_parts[(b * blocks + k) * e.o + c];
      gscale[b * e.o + c] = sum;
    }
  for (int64_t c = 0; c < e.o; ++c) {
    T sum = T(0);
    for (int64_t item = 0; item < items; ++item) sum += bias_parts[item * e.o + c];
    gbias[c] = sum;
  }
  if (gnoise && e.shared_noise) {
    for (int64_t i = 0; i < e.p; ++i) {
      T sum = T(0);
      for (int64_t b = 0; b < e.n; ++b) sum += noise_parts[b * e.p + i];
      gnoise[i] = sum;
    }
  }
}

void check(const torch::Tensor& t, const torch::Tensor& x, const char* name, torch::IntArrayRef shape) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == x.scalar_type() && t.is_contiguous(), "layer_epilogue: ",
              name, " must be a contiguous CPU tensor of x's dtype");
  TORCH_CHECK(t.sizes() == shape, "layer_epilogue: ", name, " must have shape ", shape, ", got ", t.sizes());
}

// x [N, O, P], scale [N, O], bias [O], noise [N or 1, P] or an empty tensor (none).
template <typename T>
Epilogue<T> make(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& bias,
                 const torch::Tensor& noise, double low, double high, double alpha) {
  TORCH_CHECK(x.dim() == 3 && x.device().is_cpu() && x.is_contiguous(),
              "layer_epilogue: x must be a contiguous CPU tensor [N, O, P]");
  const int64_t n = x.size(0), o = x.size(1), p = x.size(2);
  check(scale, x, "scale", {n, o});
  check(bias, x, "bias", {o});
  const bool has_noise = noise.numel() > 0;
  if (has_noise) {
    TORCH_CHECK(noise.dim() == 2 && (noise.size(0) == n || noise.size(0) == 1), "layer_epilogue: noise must be [",
                n, " or 1, ", p, "]");
    check(noise, x, "noise", {noise.size(0), p});
  }
  return Epilogue<T>{x.data_ptr<T>(), scale.data_ptr<T>(), bias.data_ptr<T>(),
                     has_noise ? noise.data_ptr<T>() : nullptr, n, o, p, has_noise && noise.size(0) == 1 && n > 1,
                     static_cast<T>(low), static_cast<T>(high), static_cast<T>(alpha)};
}

}  // namespace

torch::Tensor forward(torch::Tensor x, torch::Tensor scale, torch::Tensor bias, torch::Tensor noise, double low,
                      double high, double alpha, int64_t threads) {
  torch::Tensor y = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "layer_epilogue_forward", [&] {
    const Epilogue<scalar_t> e = make<scalar_t>(x, scale, bias, noise, low, high, alpha);
    pybind11::gil_scoped_release release;
    forward_impl(e, y.data_ptr<scalar_t>(), static_cast<int>(threads));
  });
  return y;
}

// (d/dx or an empty tensor when need_x is false, d/dscale, d/dbias, d/dnoise or an empty tensor without noise).
std::vector<torch::Tensor> backward(torch::Tensor grad, torch::Tensor x, torch::Tensor scale, torch::Tensor bias,
                                    torch::Tensor noise, double low, double high, double alpha, bool need_x,
                                    int64_t threads) {
  check(grad, x, "grad", x.sizes());
  torch::Tensor gx = need_x ? torch::empty_like(x) : torch::empty({0}, x.options());
  torch::Tensor gscale = torch::empty_like(scale), gbias = torch::empty_like(bias);
  torch::Tensor gnoise = noise.numel() > 0 ? torch::empty_like(noise) : torch::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "layer_epilogue_backward", [&] {
    const Epilogue<scalar_t> e = make<scalar_t>(x, scale, bias, noise, low, high, alpha);
    pybind11::gil_scoped_release release;
    backward_impl(e, grad.data_ptr<scalar_t>(), need_x ? gx.data_ptr<scalar_t>() : nullptr,
                  gscale.data_ptr<scalar_t>(), gbias.data_ptr<scalar_t>(),
                  noise.numel() > 0 ? gnoise.data_ptr<scalar_t>() : nullptr, static_cast<int>(threads));
  });
  return {gx, gscale, gbias, gnoise};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "act(clamp(x * scale + bias + noise)) [N, O, P]");
  m.def("backward", &backward, "(d/dx, d/dscale, d/dbias, d/dnoise) of the forward");
}
