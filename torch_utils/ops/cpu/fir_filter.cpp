// A separable FIR filter with optional downsampling and zero padding, for upfirdn2d_fast's
// no-upsampling path on the CPU (torch_utils/ops/fir_filter_cpu.py):
//
//   out[n, c, y, x] = sum_a sum_b ty[a] tx[b] in[n, c, y * dy + a - py0, x * dx + b - px0]
//
// with in = 0 outside the image (so a negative padding crops). Per output row it sums the taps'
// input rows into a row buffer with zero margins (one vectorised pass), then runs the horizontal
// taps over that buffer (vectorised for 4 taps and down 1 or 2, StyleGAN2's cases). A work item is
// one (n, c) plane. A channels-last input (the transposed convolutions' output on the CPU) is read in
// place, a row of all channels at a time, and gives the same NCHW result. No reductions: the result is
// the same on any number of threads.
#include <torch/extension.h>

#include <algorithm>
#include <vector>

#include "transpose_8x8.h"

namespace {

// dst[q] = sum_k taps[k] * rows[k][q] for q < len, in one pass (rows outside the image point at zeros).
template <typename T>
inline void combine_rows(const std::vector<const T*>& rows, const std::vector<T>& taps, int64_t len, T* dst) {
  if (rows.size() == 4) {
    const T *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3];
    const T t0 = taps[0], t1 = taps[1], t2 = taps[2], t3 = taps[3];
#pragma omp simd
    for (int64_t q = 0; q < len; ++q) dst[q] = t0 * r0[q] + t1 * r1[q] + t2 * r2[q] + t3 * r3[q];
    return;
  }
#pragma omp simd
  for (int64_t q = 0; q < len; ++q) dst[q] = taps[0] * rows[0][q];
  for (size_t k = 1; k < rows.size(); ++k) {
    const T tap = taps[k];
    const T* r = rows[k];
#pragma omp simd
    for (int64_t q = 0; q < len; ++q) dst[q] += tap * r[q];
  }
}

// o[x] = sum_b tx[b] * base[x * dx + b] for x < out_w (vectorised for 4 taps and dx 1 or 2).
template <typename T>
inline void horizontal(const T* base, const std::vector<T>& tx, int64_t dx, int64_t out_w, T* o) {
  const int64_t nx = tx.size();
  if (dx == 1 && nx == 4) {
    const T t0 = tx[0], t1 = tx[1], t2 = tx[2], t3 = tx[3];
#pragma omp simd
    for (int64_t x = 0; x < out_w; ++x) o[x] = t0 * base[x] + t1 * base[x + 1] + t2 * base[x + 2] + t3 * base[x + 3];
  } else if (dx == 2 && nx == 4) {
    const T t0 = tx[0], t1 = tx[1], t2 = tx[2], t3 = tx[3];
#pragma omp simd
    for (int64_t x = 0; x < out_w; ++x)
      o[x] = t0 * base[2 * x] + t1 * base[2 * x + 1] + t2 * base[2 * x + 2] + t3 * base[2 * x + 3];
  } else {
    for (int64_t x = 0; x < out_w; ++x) {
      T total = T(0);
      for (int64_t b = 0; b < nx; ++b) total += tx[b] * base[x * dx + b];
      o[x] = total;
    }
  }
}

// The input rows of output row y: rows[a] = row y * dy + a - py0 of an image whose row r starts at
// image + r * row_len, or zeros (at least row_len long) outside [0, h).
template <typename T>
inline void tap_rows(const T* image, int64_t row_len, int64_t h, int64_t y, int64_t dy, int64_t py0, const T* zeros,
                     std::vector<const T*>& rows) {
  for (size_t a = 0; a < rows.size(); ++a) {
    const int64_t yi = y * dy + static_cast<int64_t>(a) - py0;
    rows[a] = (yi < 0 || yi >= h) ? zeros : image + yi * row_len;
  }
}

// Zero columns a row buffer needs left and right of the w input columns for out_w outputs of nx taps.
struct Margins {
  int64_t left, right;
  Margins(int64_t w, int64_t out_w, int64_t nx, int64_t dx, int64_t px0)
      : left(std::max<int64_t>(px0, 0)), right(std::max<int64_t>((out_w - 1) * dx + nx - 1 - px0 - (w - 1), 0)) {}
};

template <typename T>
void filter_impl(const T* in, T* out, int64_t planes, int64_t h, int64_t w, int64_t out_h, int64_t out_w,
                 const std::vector<T>& ty, const std::vector<T>& tx, int64_t dy, int64_t dx, int64_t py0, int64_t px0,
                 int threads) {
  const Margins margin(w, out_w, static_cast<int64_t>(tx.size()), dx, px0);
  const std::vector<T> zeros(w, T(0));
#pragma omp parallel num_threads(threads)
  {
    // Row buffer: input columns [-left, w + right) with zeros outside [0, w).
    std::vector<T> buffer(margin.left + w + margin.right, T(0));
    std::vector<const T*> rows(ty.size());
    T* row = buffer.data() + margin.left;  // row[-left .. w + right)
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const T* src = in + plane * h * w;
      T* dst = out + plane * out_h * out_w;
      for (int64_t y = 0; y < out_h; ++y) {
        tap_rows(src, w, h, y, dy, py0, zeros.data(), rows);
        combine_rows(rows, ty, w, row);
        horizontal(row - px0, tx, dx, out_w, dst + y * out_w);
      }
    }
  }
}

// filter_impl for a channels-last input [N, H, W, C] (the output is still [N, C, out_h, out_w]): a work item is one
// output row (n, y). The vertical taps combine whole input rows of w * C values (one vectorised pass), the
// combined row is transposed in kBlock x kBlock blocks into one row per channel with zero margins, and the
// horizontal taps write each output row as filter_impl does. Consecutive rows of a thread share input rows in
// the cache. The same arithmetic in the same order as filter_impl: the results are equal.
template <typename T>
void filter_channels_last_impl(const T* in, T* out, int64_t n, int64_t c, int64_t h, int64_t w, int64_t out_h,
                               int64_t out_w, const std::vector<T>& ty, const std::vector<T>& tx, int64_t dy,
                               int64_t dx, int64_t py0, int64_t px0, int threads) {
  constexpr int64_t kBlock = 8;
  const Margins margin(w, out_w, static_cast<int64_t>(tx.size()), dx, px0);
  const int64_t left = margin.left, stride = left + w + margin.right;  // of a channel's row in `planar`
  const std::vector<T> zeros(w * c, T(0));
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> combined(w * c), planar(c * stride, T(0));
    std::vector<const T*> rows(ty.size());
#pragma omp for schedule(static)
    for (int64_t item = 0; item < n * out_h; ++item) {
      const int64_t b = item / out_h, y = item % out_h;
      tap_rows(in + b * h * w * c, w * c, h, y, dy, py0, zeros.data(), rows);
      combine_rows(rows, ty, w * c, combined.data());
      for (int64_t q0 = 0; q0 < w; q0 += kBlock)
        for (int64_t k0 = 0; k0 < c; k0 += kBlock) {
          const int64_t q1 = std::min(w, q0 + kBlock), k1 = std::min(c, k0 + kBlock);
          T* to = planar.data() + k0 * stride + left + q0;
          const bool whole = q1 - q0 == kBlock && k1 - k0 == kBlock;
          if (whole && transpose_8x8<T>(combined.data() + q0 * c + k0, c, to, stride, nullptr)) continue;
          for (int64_t k = k0; k < k1; ++k)
            for (int64_t q = q0; q < q1; ++q) planar[k * stride + left + q] = combined[q * c + k];
        }
      T* dst = out + (b * c * out_h + y) * out_w;
      for (int64_t k = 0; k < c; ++k)
        horizontal(planar.data() + k * stride + left - px0, tx, dx, out_w, dst + k * out_h * out_w);
    }
  }
}

}  // namespace

// x [N, C, H, W], contiguous or channels-last -> [N, C, out_h, out_w] contiguous; taps in correlation order.
torch::Tensor filter(torch::Tensor x, std::vector<double> taps_y, std::vector<double> taps_x, int64_t down_y,
                     int64_t down_x, int64_t pad_y0, int64_t pad_x0, int64_t out_h, int64_t out_w, int64_t threads) {
  const bool channels_last = x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
  TORCH_CHECK(x.dim() == 4 && x.device().is_cpu() && (x.is_contiguous() || channels_last),
              "fir_filter: x must be a contiguous or channels-last CPU tensor [N, C, H, W]");
  TORCH_CHECK(!taps_y.empty() && !taps_x.empty() && down_y >= 1 && down_x >= 1 && out_h >= 1 && out_w >= 1,
              "fir_filter: expected taps, down >= 1 and a non-empty output");
  torch::Tensor out = torch::empty({x.size(0), x.size(1), out_h, out_w}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fir_filter", [&] {
    const std::vector<scalar_t> ty(taps_y.begin(), taps_y.end()), tx(taps_x.begin(), taps_x.end());
    pybind11::gil_scoped_release release;
    if (channels_last) {
      filter_channels_last_impl(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), x.size(0), x.size(1), x.size(2),
                                x.size(3), out_h, out_w, ty, tx, down_y, down_x, pad_y0, pad_x0,
                                static_cast<int>(threads));
    } else {
      filter_impl(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), x.size(0) * x.size(1), x.size(2), x.size(3),
                  out_h, out_w, ty, tx, down_y, down_x, pad_y0, pad_x0, static_cast<int>(threads));
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("filter", &filter, "separable FIR filter with downsampling and zero padding");
}
