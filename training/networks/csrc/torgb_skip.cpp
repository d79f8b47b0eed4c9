// A skip-architecture ToRGB with its image upsampling, in one pass over memory each way, on the CPU:
// training/networks/torgb_skip.py.
//
//   out[n, o, y, x] = clamp(sum_i wm[n, o, i] * feat[n, i, y, x] + bias[o], low, high) + up(img)[n, o, y, x]
//
// feat [N, I, H, W] are the block's features, wm [N, O, I] the modulated 1x1 weights, img [N, O, H/2, W/2]
// the image so far. up() is a 2x upsampling by a symmetric 4-tap filter, separable, zero outside the
// image: per axis, output 2m = e0 * s[m - 1] + e1 * s[m] and output 2m + 1 = d0 * s[m] + d1 * s[m + 1].
//
// Forward: a work item is one output row (n, y). Its I feature rows are packed (they lie a plane apart,
// which would put them in one cache set), the 1x1 convolution runs in register tiles of 6 channels x 2
// vectors, and each tile is clamped, gets the vertically blended, horizontally upsampled image added and
// is stored without leaving the registers (streaming stores where the CPU has them).
// Backward (incoming gradient g): a work item is kPairs output row pairs (n, 2m, 2m + 1) of one batch
// element, each pair contiguous in every channel. Per pair it packs g and the features, writes d/dfeat of
// the pair's rows (a small matrix product) and d/dimg of image row m (from rows 2m - 1 .. 2m + 2, read
// only), and adds to the item's partial sums for d/dwm (row_dots) and d/dbias;
// the partials are added up in a fixed order afterwards, so results do not depend on the thread
// count. With a clamp the pre-activation is recomputed.
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef __AVX__
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kRows = 4;   // output rows of a register tile (backward)
constexpr int64_t kForwardRows = 6;  // output channels of a forward register tile
constexpr int64_t kPairs = 8;  // output row pairs per backward work item (they share its partial sums)
constexpr int kVectorBytes = 32;

// A 32-byte SIMD vector of T (GCC/Clang vector extension: AVX2 registers under -march=native, split into
// smaller ones where the CPU has none).
template <typename T>
struct Simd {
  typedef T type __attribute__((vector_size(kVectorBytes)));
  static constexpr int64_t lanes = kVectorBytes / sizeof(T);
  static type load(const T* p) {
    type v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static void store(T* p, type v) { std::memcpy(p, &v, sizeof(v)); }
  static type broadcast(T x) { return type{} + x; }
  static T sum(type v) {
    T total = T(0);
    for (int64_t l = 0; l < lanes; ++l) total += v[l];
    return total;
  }
};

// Rows [r0, r0 + R) of a * b over the columns [0, full_len) (a multiple of 2 vectors) in register tiles of R rows
// x 2 vectors: acc[r] = init[r0 + r] (0 without) + sum_k a[(r0 + r) * ars + k * aks] * b[k * len + q]. Each
// finished tile goes to store(r, q0, acc[r][0], acc[r][1]) for r < R (columns q0 .. q0 + 2 vectors). Forced
// inline, and so must a store that does real work be: GCC otherwise calls them and the forward's tiles lose
// their registers (last block 9.9 -> 12.9 ms).
template <int R, typename T, typename Store>
__attribute__((always_inline)) inline void matmul_tiles(const T* a, int64_t ars, int64_t aks, const T* b,
                                                        int64_t depth, int64_t len, int64_t full_len, const T* init,
                                                        int64_t r0, Store store) {
  using S = Simd<T>;
  for (int64_t q0 = 0; q0 < full_len; q0 += 2 * S::lanes) {
    typename S::type acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = S::broadcast(init ? init[r0 + r] : T(0));
    for (int64_t k = 0; k < depth; ++k) {
      const typename S::type b0 = S::load(b + k * len + q0), b1 = S::load(b + k * len + q0 + S::lanes);
      for (int r = 0; r < R; ++r) {
        const typename S::type w = S::broadcast(a[(r0 + r) * ars + k * aks]);
        acc[r][0] += w * b0;
        acc[r][1] += w * b1;
      }
    }
    for (int r = 0; r < R; ++r) store(r, q0, acc[r][0], acc[r][1]);
  }
}

// matmul_tiles stored into out (rows len apart).
template <int R, typename T>
inline void matmul_tile(const T* a, int64_t ars, int64_t aks, const T* b, int64_t depth, int64_t len, int64_t full_len,
                        const T* init, int64_t r0, T* out) {
  using V = typename Simd<T>::type;
  matmul_tiles<R>(a, ars, aks, b, depth, len, full_len, init, r0, [&](int r, int64_t q0, V a0, V a1) {
    Simd<T>::store(out + (r0 + r) * len + q0, a0);
    Simd<T>::store(out + (r0 + r) * len + q0 + Simd<T>::lanes, a1);
  });
}

// out[r, q] = init[r] (0 without) + sum_k a[r * ars + k * aks] * b[k * len + q] for r < rows, q < len: a
// small matrix product with b packed (rows len apart), in register tiles of kRows (then 1) rows x 2 vectors;
// out rows are len apart.
template <typename T>
inline void small_matmul(const T* a, int64_t ars, int64_t aks, const T* b, int64_t depth, int64_t rows, int64_t len,
                         const T* init, T* out) {
  const int64_t full_rows = rows - rows % kRows, full_len = len - len % (2 * Simd<T>::lanes);
  for (int64_t r0 = 0; r0 < full_rows; r0 += kRows)
    matmul_tile<kRows>(a, ars, aks, b, depth, len, full_len, init, r0, out);
  for (int64_t r0 = full_rows; r0 < rows; ++r0) matmul_tile<1>(a, ars, aks, b, depth, len, full_len, init, r0, out);
  for (int64_t r = 0; r < rows; ++r)  // the last len % (2 vectors) columns
    for (int64_t q = full_len; q < len; ++q) {
      T total = init ? init[r] : T(0);
      for (int64_t k = 0; k < depth; ++k) total += a[r * ars + k * aks] * b[k * len + q];
      out[r * len + q] = total;
    }
}

// out[r * cols + c] = sum_q a[r * len + q] * b[c * len + q]: the products of rows of a and rows of b.
template <typename T>
inline void row_dots(const T* a, const T* b, int64_t rows, int64_t cols, int64_t len, T* out) {
  using S = Simd<T>;
  constexpr int64_t kCols = 2;
  const int64_t full_len = len - len % S::lanes;
  for (int64_t r0 = 0; r0 < rows; r0 += kRows)
    for (int64_t c0 = 0; c0 < cols; c0 += kCols) {
      const int64_t nr = std::min(kRows, rows - r0), nc = std::min(kCols, cols - c0);
      if (nr == kRows && nc == kCols) {
        typename S::type acc[kRows][kCols] = {};
        for (int64_t q = 0; q < full_len; q += S::lanes) {
          const typename S::type b0 = S::load(b + c0 * len + q), b1 = S::load(b + (c0 + 1) * len + q);
          for (int64_t r = 0; r < kRows; ++r) {
            const typename S::type x = S::load(a + (r0 + r) * len + q);
            acc[r][0] += x * b0;
            acc[r][1] += x * b1;
          }
        }
        for (int64_t r = 0; r < kRows; ++r)
          for (int64_t c = 0; c < kCols; ++c) {
            T total = S::sum(acc[r][c]);
            for (int64_t q = full_len; q < len; ++q) total += a[(r0 + r) * len + q] * b[(c0 + c) * len + q];
            out[(r0 + r) * cols + c0 + c] = total;
          }
      } else {
        for (int64_t r = 0; r < nr; ++r)
          for (int64_t c = 0; c < nc; ++c) {
            T total = T(0);
            for (int64_t q = 0; q < len; ++q) total += a[(r0 + r) * len + q] * b[(c0 + c) * len + q];
            out[(r0 + r) * cols + c0 + c] = total;
          }
      }
    }
}

template <typename T>
struct Taps {
  T e0, e1, d0, d1;
};

template <typename T>
struct Shapes {
  int64_t n, i, o, h, w;
  int64_t hs() const { return h / 2; }
  int64_t ws() const { return w / 2; }
  int64_t p() const { return h * w; }
};

// dst[c * len + q] = src[c * stride + q] for c < channels, q < len.
template <typename T>
inline void pack(const T* src, int64_t stride, int64_t channels, int64_t len, T* dst) {
  for (int64_t c = 0; c < channels; ++c) std::copy(src + c * stride, src + c * stride + len, dst + c * len);
}

// lo = (a0, b0, a1, b1, ...) from the first half of the lanes of a and b, hi from the second half.
template <typename T>
inline void interleave(typename Simd<T>::type a, typename Simd<T>::type b, typename Simd<T>::type& lo,
                       typename Simd<T>::type& hi) {
#if defined(__clang__)
  if constexpr (Simd<T>::lanes == 8) {
    lo = __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11);
    hi = __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15);
  } else {
    lo = __builtin_shufflevector(a, b, 0, 4, 1, 5);
    hi = __builtin_shufflevector(a, b, 2, 6, 3, 7);
  }
#else
  if constexpr (Simd<T>::lanes == 8) {
    typedef int32_t Mask __attribute__((vector_size(kVectorBytes)));
    lo = __builtin_shuffle(a, b, Mask{0, 8, 1, 9, 2, 10, 3, 11});
    hi = __builtin_shuffle(a, b, Mask{4, 12, 5, 13, 6, 14, 7, 15});
  } else {
    typedef int64_t Mask __attribute__((vector_size(kVectorBytes)));
    lo = __builtin_shuffle(a, b, Mask{0, 4, 1, 5});
    hi = __builtin_shuffle(a, b, Mask{2, 6, 3, 7});
  }
#endif
}

// Store v at p (aligned to a vector) past the caches where the CPU can: the output is far larger than them
// and is not read again before the next operator, so this saves reading each cache line before writing it.
template <typename T>
inline void store_streaming(T* p, typename Simd<T>::type v) {
#ifdef __AVX__
  if constexpr (sizeof(T) == 4) {
    _mm256_stream_ps(reinterpret_cast<float*>(p), reinterpret_cast<__m256>(v));
  } else {
    _mm256_stream_pd(reinterpret_cast<double*>(p), reinterpret_cast<__m256d>(v));
  }
#else
  Simd<T>::store(p, v);
#endif
}

// Output row y of R channels (dst, rows a plane p apart): the 1x1 convolution in register tiles of R channels
// x 2 vectors over the packed feature rows (matmul_tiles), then per tile row the clamp and the upsampled image added in
// registers (the image row, vertically blended, is blend[r * bstride + 1 + k] with a zero either side).
template <int R, typename T>
inline void forward_rows(const T* wm, const T* bias, const T* packed, const T* blend, int64_t bstride, T* dst,
                         int64_t p, const Shapes<T>& s, const Taps<T>& t, T low, T high, bool clamp, bool streaming) {
  using S = Simd<T>;
  using V = typename S::type;
  const int64_t full_len = s.w - s.w % (2 * S::lanes);
  const V low_v = S::broadcast(low), high_v = S::broadcast(high);
  const V e0 = S::broadcast(t.e0), e1 = S::broadcast(t.e1), d0 = S::broadcast(t.d0), d1 = S::broadcast(t.d1);
  auto epilogue = [&](int r, int64_t q0, V a0, V a1) __attribute__((always_inline)) {
    if (clamp) {  // as std::min(std::max(a, low), high), NaN kept
      a0 = a0 < low_v ? low_v : a0;
      a0 = a0 > high_v ? high_v : a0;
      a1 = a1 < low_v ? low_v : a1;
      a1 = a1 > high_v ? high_v : a1;
    }
    const T* v = blend + r * bstride + 1 + q0 / 2;
    const V before = S::load(v - 1), here = S::load(v), after = S::load(v + 1);
    V even_odd_lo, even_odd_hi;
    interleave<T>(e0 * before + e1 * here, d0 * here + d1 * after, even_odd_lo, even_odd_hi);
    T* o = dst + r * p + q0;
    if (streaming) {
      store_streaming<T>(o, a0 + even_odd_lo);
      store_streaming<T>(o + S::lanes, a1 + even_odd_hi);
    } else {
      S::store(o, a0 + even_odd_lo);
      S::store(o + S::lanes, a1 + even_odd_hi);
    }
  };
  matmul_tiles<R>(wm, s.i, int64_t(1), packed, s.i, s.w, full_len, bias, int64_t(0), epilogue);
  for (int r = 0; r < R; ++r)  // the last w % (2 vectors) columns
    for (int64_t q = full_len; q < s.w; ++q) {
      T a = bias[r];
      for (int64_t k = 0; k < s.i; ++k) a += wm[r * s.i + k] * packed[k * s.w + q];
      if (clamp) a = std::min(std::max(a, low), high);
      const T* v = blend + r * bstride + 1 + q / 2;
      dst[r * p + q] = a + ((q % 2 == 0) ? t.e0 * v[-1] + t.e1 * v[0] : t.d0 * v[0] + t.d1 * v[1]);
    }
}

template <typename T>
void forward_impl(const T* feat, const T* wm, const T* bias, const T* img, T* out, const Shapes<T>& s,
                  const Taps<T>& t, T low, T high, bool clamp, int threads) {
  const int64_t p = s.p(), ws = s.ws(), hs = s.hs();
  const int64_t bstride = ws + 2 + Simd<T>::lanes;  // zero margins, and room for a last vector reaching past ws
  const bool streaming = reinterpret_cast<uintptr_t>(out) % kVectorBytes == 0 && (s.w * sizeof(T)) % kVectorBytes == 0;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> packed(s.i * s.w);
    std::vector<T> blend(kForwardRows * bstride, T(0));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < s.n * s.h; ++item) {
      const int64_t b = item / s.h, y = item % s.h, m = y / 2;
      // Image rows feeding output row y and their weights (a row outside the image weighs nothing).
      const int64_t r0 = (y % 2 == 0) ? m - 1 : m, r1 = r0 + 1;
      const T w0 = (r0 >= 0) ? ((y % 2 == 0) ? t.e0 : t.d0) : T(0);
      const T w1 = (r1 < hs) ? ((y % 2 == 0) ? t.e1 : t.d1) : T(0);
      pack(feat + b * s.i * p + y * s.w, p, s.i, s.w, packed.data());
      for (int64_t c0 = 0; c0 < s.o; c0 += kForwardRows) {
        const int64_t nc = std::min(kForwardRows, s.o - c0);
        for (int64_t r = 0; r < nc; ++r) {
          const T* plane = img + (b * s.o + c0 + r) * hs * ws;
          const T* row0 = plane + std::max<int64_t>(r0, 0) * ws;
          const T* row1 = plane + std::min<int64_t>(r1, hs - 1) * ws;
          T* v = blend.data() + r * bstride + 1;
#pragma omp simd
          for (int64_t k = 0; k < ws; ++k) v[k] = w0 * row0[k] + w1 * row1[k];
        }
        const T* w = wm + (b * s.o + c0) * s.i;
        T* dst = out + (b * s.o + c0) * p + y * s.w;
        if (nc == kForwardRows) {
          forward_rows<kForwardRows>(w, bias + c0, packed.data(), blend.data(), bstride, dst, p, s, t, low, high, clamp,
                              streaming);
        } else {
          for (int64_t r = 0; r < nc; ++r)
            forward_rows<1>(w + r * s.i, bias + c0 + r, packed.data(), blend.data() + r * bstride, bstride,
                            dst + r * p, p, s, t, low, high, clamp, streaming);
        }
      }
    }
#ifdef __AVX__
    _mm_sfence();  // the streaming stores are visible before the output is used
#endif
  }
}

template <typename T>
void backward_impl(const T* grad, const T* feat, const T* wm, const T* bias, const Shapes<T>& s, const Taps<T>& t,
                   T low, T high, bool clamp, T* gfeat, T* gwm, T* gbias, T* gimg, int threads) {
  const int64_t p = s.p(), ws = s.ws(), hs = s.hs(), seg = 2 * s.w;  // a row pair
  const int64_t groups = (hs + kPairs - 1) / kPairs, items = s.n * groups, wsize = s.o * s.i;
  std::vector<T> wm_parts(items * wsize, T(0)), bias_parts(items * s.o, T(0));  // per-item partial sums
#pragma omp parallel num_threads(threads)
  {
    // The item's feature rows, its pre-activation gradient per channel, and scratch (packed, seg apart).
    std::vector<T> packed(s.i * seg), g_pre(s.o * seg), scratch(std::max<int64_t>(s.i, kRows) * seg);
    std::vector<T> vert(s.w + 2, T(0));  // vert[0] and vert[w + 1] stay zero (the border)
    std::vector<T> dots(wsize);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t b = item / groups, m1 = std::min(hs, (item % groups + 1) * kPairs);
      T* wpart = wm_parts.data() + item * wsize;
      T* bpart = bias_parts.data() + item * s.o;
      for (int64_t m = (item % groups) * kPairs; m < m1; ++m) {
        const int64_t base = 2 * m * s.w;
        const T* wmb = wm + b * wsize;
        pack(feat + b * s.i * p + base, p, s.i, seg, packed.data());
        pack(grad + b * s.o * p + base, p, s.o, seg, g_pre.data());
        if (clamp) {  // zero the gradient where the clamp held the pre-activation (recomputed)
          for (int64_t c0 = 0; c0 < s.o; c0 += kRows) {
            const int64_t nc = std::min(kRows, s.o - c0);
            small_matmul(wmb + c0 * s.i, s.i, int64_t(1), packed.data(), s.i, nc, seg, bias + c0, scratch.data());
            for (int64_t r = 0; r < nc; ++r) {
              const T* z = scratch.data() + r * seg;
              T* g = g_pre.data() + (c0 + r) * seg;
#pragma omp simd
              for (int64_t q = 0; q < seg; ++q) g[q] = (z[q] > low && z[q] < high) ? g[q] : T(0);
            }
          }
        }
        // d/dfeat[i] = sum_c wm[c, i] g_c over the row pair.
        small_matmul(wmb, int64_t(1), s.i, g_pre.data(), s.o, s.i, seg, static_cast<const T*>(nullptr),
                     scratch.data());
        for (int64_t i = 0; i < s.i; ++i)
          std::copy(scratch.data() + i * seg, scratch.data() + (i + 1) * seg, gfeat + (b * s.i + i) * p + base);
        // Partial d/dwm[c, i] = sum g_c feat_i and d/dbias[c] = sum g_c over the row pair.
        row_dots(g_pre.data(), packed.data(), s.o, s.i, seg, dots.data());
#pragma omp simd
        for (int64_t k = 0; k < wsize; ++k) wpart[k] += dots[k];
        for (int64_t c = 0; c < s.o; ++c) {
          const T* g = g_pre.data() + c * seg;
          T total = T(0);
#pragma omp simd reduction(+ : total)
          for (int64_t q = 0; q < seg; ++q) total += g[q];
          bpart[c] += total;
        }
        // d/dimg row m: the adjoint of the upsampling (output rows 2m - 1 .. 2m + 2, then columns), from the
        // unclamped incoming gradient (the image bypasses the clamp). Column 0's d1 term reads u[-1] and the
        // last column's e0 term u[w]: the zero border.
        const T a_up = (m > 0) ? t.d1 : T(0);         // output row 2m - 1 reads image row m with d1
        const T a_down = (m + 1 < hs) ? t.e0 : T(0);  // output row 2m + 2 reads image row m with e0
        for (int64_t c = 0; c < s.o; ++c) {
          const T* plane = grad + (b * s.o + c) * p;
          const T* r_even = plane + 2 * m * s.w;        // output row 2m: weight e1
          const T* r_odd = r_even + s.w;                 // output row 2m + 1: weight d0
          const T* r_up = plane + std::max<int64_t>(2 * m - 1, 0) * s.w;
          const T* r_down = plane + std::min<int64_t>(2 * m + 2, s.h - 1) * s.w;
          T* u = vert.data() + 1;
#pragma omp simd
          for (int64_t q = 0; q < s.w; ++q)
            u[q] = t.e1 * r_even[q] + t.d0 * r_odd[q] + a_up * r_up[q] + a_down * r_down[q];
          T* dst = gimg + ((b * s.o + c) * hs + m) * ws;
#pragma omp simd
          for (int64_t k = 0; k < ws; ++k)
            dst[k] = t.e1 * u[2 * k] + t.d0 * u[2 * k + 1] + t.d1 * u[2 * k - 1] + t.e0 * u[2 * k + 2];
        }
      }
    }
  }
  for (int64_t b = 0; b < s.n; ++b)
    for (int64_t k = 0; k < wsize; ++k) {
      double total = 0;
      for (int64_t g = 0; g < groups; ++g) total += wm_parts[(b * groups + g) * wsize + k];
      gwm[b * wsize + k] = static_cast<T>(total);
    }
  for (int64_t c = 0; c < s.o; ++c) {
    double total = 0;
    for (int64_t item = 0; item < items; ++item) total += bias_parts[item * s.o + c];
    gbias[c] = static_cast<T>(total);
  }
}

void check(const torch::Tensor& t, const torch::Tensor& like, const char* name, torch::IntArrayRef shape) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == like.scalar_type() && t.is_contiguous(), "torgb_skip: ",
              name, " must be a contiguous CPU tensor of feat's dtype");
  TORCH_CHECK(t.sizes() == shape, "torgb_skip: ", name, " must have shape ", shape, ", got ", t.sizes());
}

template <typename T>
Shapes<T> shapes(const torch::Tensor& feat, const torch::Tensor& wm, const torch::Tensor& bias) {
  TORCH_CHECK(feat.dim() == 4 && feat.device().is_cpu() && feat.is_contiguous(),
              "torgb_skip: feat must be a contiguous CPU tensor [N, I, H, W]");
  TORCH_CHECK(feat.size(2) % 2 == 0 && feat.size(3) % 2 == 0 && feat.size(2) > 0 && feat.size(3) > 0,
              "torgb_skip: feat's height and width must be even, got ", feat.sizes());
  TORCH_CHECK(wm.dim() == 3, "torgb_skip: wm must be [N, O, I], got ", wm.sizes());
  const Shapes<T> s{feat.size(0), feat.size(1), wm.size(1), feat.size(2), feat.size(3)};
  check(wm, feat, "wm", {s.n, s.o, s.i});
  check(bias, feat, "bias", {s.o});
  return s;
}

template <typename T>
Taps<T> taps(const std::vector<double>& t) {
  TORCH_CHECK(t.size() == 4, "torgb_skip: expected 4 phase weights (e0, e1, d0, d1)");
  return Taps<T>{static_cast<T>(t[0]), static_cast<T>(t[1]), static_cast<T>(t[2]), static_cast<T>(t[3])};
}

}  // namespace

torch::Tensor forward(torch::Tensor feat, torch::Tensor wm, torch::Tensor bias, torch::Tensor img,
                      std::vector<double> phase_weights, double low, double high, bool clamp, int64_t threads) {
  torch::Tensor out = torch::empty({feat.size(0), wm.size(1), feat.size(2), feat.size(3)}, feat.options());
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "torgb_skip_forward", [&] {
    const Shapes<scalar_t> s = shapes<scalar_t>(feat, wm, bias);
    check(img, feat, "img", {s.n, s.o, s.hs(), s.ws()});
    const Taps<scalar_t> t = taps<scalar_t>(phase_weights);
    pybind11::gil_scoped_release release;
    forward_impl(feat.data_ptr<scalar_t>(), wm.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
                 img.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), s, t, static_cast<scalar_t>(low),
                 static_cast<scalar_t>(high), clamp, static_cast<int>(threads));
  });
  return out;
}

// (d/dfeat, d/dwm, d/dbias, d/dimg).
std::vector<torch::Tensor> backward(torch::Tensor grad, torch::Tensor feat, torch::Tensor wm, torch::Tensor bias,
                                    std::vector<double> phase_weights, double low, double high, bool clamp,
                                    int64_t threads) {
  torch::Tensor gfeat = torch::empty_like(feat), gwm = torch::empty_like(wm), gbias = torch::empty_like(bias);
  torch::Tensor gimg = torch::empty({feat.size(0), wm.size(1), feat.size(2) / 2, feat.size(3) / 2}, feat.options());
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "torgb_skip_backward", [&] {
    const Shapes<scalar_t> s = shapes<scalar_t>(feat, wm, bias);
    check(grad, feat, "grad", {s.n, s.o, s.h, s.w});
    const Taps<scalar_t> t = taps<scalar_t>(phase_weights);
    pybind11::gil_scoped_release release;
    backward_impl(grad.data_ptr<scalar_t>(), feat.data_ptr<scalar_t>(), wm.data_ptr<scalar_t>(),
                  bias.data_ptr<scalar_t>(), s, t, static_cast<scalar_t>(low), static_cast<scalar_t>(high), clamp,
                  gfeat.data_ptr<scalar_t>(), gwm.data_ptr<scalar_t>(), gbias.data_ptr<scalar_t>(),
                  gimg.data_ptr<scalar_t>(), static_cast<int>(threads));
  });
  return {gfeat, gwm, gbias, gimg};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "clamp(1x1 conv(feat, wm) + bias) + upsample2x(img) [N, O, H, W]");
  m.def("backward", &backward, "(d/dfeat, d/dwm, d/dbias, d/dimg) of the forward");
}
