// Fused tri-grid sampling on the CPU (system.md §2.3): the 'cpp' accelerator of
// training/rendering/planes.py, through training/rendering/trigrid_cpp.py. The math is in
// trigrid_sample.h, shared with the CUDA kernel.
//
// * planes_to_table: a blocked transpose of planes [N, 3, C*D, H, W] (channel c*D + d) into the
//   channels-last texel table [N, 3, H, W, D, C] (each texel's C features contiguous); for float32 and
//   C a multiple of 8, through 8 x 8 register transposes and streaming stores.
// * forward: one point per loop iteration (OpenMP), 3 planes x 4 (D = 1) or 8 corners x C FMAs; for float32
//   and C = 32 summed in registers, with the corner rows of the point a few places on prefetched.
// * backward: the coordinate gradient point by point like the forward (corner rows dotted with the
//   incoming gradient; for float32 and C = 32 the Jacobian is summed in registers and dotted once per
//   axis, rows prefetched as in the forward); the planes gradient texel by texel from binned points
//   (trigrid_planes_grad.h), straight into the planes layout (the table itself is a cache outside the
//   autograd graph).
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "transpose_8x8.h"  // torch_utils/ops/cpu (trigrid_cpp.py passes the folder)
#include "trigrid_sample.h"
#include "trigrid_planes_grad.h"

namespace {

constexpr int64_t kTexelBlock = 256;  // texels per transpose work item
constexpr int64_t kBlock = 8;          // the transpose moves kBlock x kBlock blocks through registers

// Copies the block of channels c0 + [0, cn) at depth z and texels t + [0, tn) (cn, tn <= kBlock) from one
// plane [C*D, H*W] to its table slice [H*W, D, C]. Inlined, so that full blocks (cn = tn = kBlock)
// compile to fixed-size loops.
template <typename T>
inline void copy_block(const T* __restrict planes, T* __restrict table, int64_t c, int64_t d, int64_t texels,
                       int64_t z, int64_t c0, int64_t t, int64_t cn, int64_t tn) {
  T block[kBlock][kBlock];
  const T* line = planes + (c0 * d + z) * texels + t;  // + i * d * texels + j: channel c0 + i, texel t + j
  T* row = table + (t * d + z) * c + c0;                // + j * d * c + i
  for (int64_t i = 0; i < cn; ++i)
    for (int64_t j = 0; j < tn; ++j) block[j][i] = line[i * d * texels + j];
  for (int64_t j = 0; j < tn; ++j)
    for (int64_t i = 0; i < cn; ++i) row[j * d * c + i] = block[j][i];
}

// Texels [t0, t0 + kTexelBlock) of one plane, block by block.
template <typename T>
void transpose_plane(const T* planes, T* table, int64_t c, int64_t d, int64_t texels, int64_t t0) {
  const int64_t t1 = std::min(texels, t0 + kTexelBlock);
  for (int64_t z = 0; z < d; ++z)
    for (int64_t c0 = 0; c0 < c; c0 += kBlock)
      for (int64_t t = t0; t < t1; t += kBlock) {
        if (c0 + kBlock <= c && t + kBlock <= t1) {
          copy_block(planes, table, c, d, texels, z, c0, t, kBlock, kBlock);
        } else {
          copy_block(planes, table, c, d, texels, z, c0, t, std::min(kBlock, c - c0), std::min(kBlock, t1 - t));
        }
      }
}

#ifdef __AVX__
// One 8 x 8 block of a float plane into the table: src rows (channels) src_stride apart, dst rows (texels)
// dst_stride apart and 32-byte aligned, transposed in registers and written with streaming stores.
inline void transpose_8x8_streaming(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
  transpose_8x8_registers(r);
  for (int j = 0; j < 8; ++j) _mm256_stream_ps(dst + j * dst_stride, r[j]);
}

// transpose_plane for float with C a multiple of 8 and a 32-byte aligned table: texel by texel group, each
// table row written whole (the table, 100 MB at the bench, is read again only by the sampler, so streaming
// stores save reading every line before it is written). The last texels % 8 go through copy_block.
inline void transpose_plane_streaming(const float* planes, float* table, int64_t c, int64_t d, int64_t texels,
                                      int64_t t0) {
  const int64_t t1 = std::min(texels, t0 + kTexelBlock), full = t0 + (t1 - t0) / kBlock * kBlock;
  for (int64_t t = t0; t < full; t += kBlock)
    for (int64_t z = 0; z < d; ++z)
      for (int64_t c0 = 0; c0 < c; c0 += kBlock)
        transpose_8x8_streaming(planes + (c0 * d + z) * texels + t, d * texels, table + (t * d + z) * c + c0, d * c);
  for (int64_t z = 0; z < d; ++z)
    for (int64_t c0 = 0; c0 < c; c0 += kBlock)
      if (full < t1) copy_block(planes, table, c, d, texels, z, c0, full, kBlock, t1 - full);
}
#endif

// Whether transpose_plane_streaming serves this transpose.
template <typename T>
bool streaming_transpose(const T* table, int64_t c) {
#ifdef __AVX__
  return std::is_same<T, float>::value && c % kBlock == 0 && reinterpret_cast<uintptr_t>(table) % 32 == 0;
#else
  return false;
#endif
}

// The whole transpose: every (plane, texel range) pair is one parallel work item.
template <typename T>
void transpose_all(const T* planes, T* table, int64_t planes_count, int64_t c, int64_t d, int64_t texels, int threads) {
  const int64_t tiles = (texels + kTexelBlock - 1) / kTexelBlock;
  const bool streaming = streaming_transpose(table, c);
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t item = 0; item < planes_count * tiles; ++item) {
      const int64_t m = item / tiles, t0 = (item % tiles) * kTexelBlock;
      const T* src = planes + m * c * d * texels;
      T* dst = table + m * c * d * texels;
#ifdef __AVX__
      if (streaming) {
        transpose_plane_streaming(reinterpret_cast<const float*>(src), reinterpret_cast<float*>(dst), c, d, texels, t0);
        continue;
      }
#endif
      transpose_plane(src, dst, c, d, texels, t0);
    }
#ifdef __AVX__
    if (streaming) _mm_sfence();  // the streaming stores are visible before the table is used
#endif
  }
}

void check_float(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && (t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kFloat64),
              "trigrid_sample: ", name, " must be a float32 or float64 CPU tensor, got ", t.scalar_type(), " on ",
              t.device());
}

// Table [N, 3, H, W, D, C] and coordinates [N, P, 3] of one dtype; returns (N, P, C, H, W, D).
std::vector<int64_t> check_operands(const torch::Tensor& table, const torch::Tensor& coords) {
  check_float(table, "table");
  TORCH_CHECK(table.dim() == 6 && table.size(1) == kTriGridPlanes && table.is_contiguous(),
              "trigrid_sample: table must be contiguous [N, 3, H, W, D, C], got ", table.sizes());
  TORCH_CHECK(coords.dim() == 3 && coords.size(0) == table.size(0) && coords.size(2) == 3 && coords.is_contiguous() &&
              coords.scalar_type() == table.scalar_type(), "trigrid_sample: coords must be contiguous [N, P, 3] of ",
              "the table's dtype, got ", coords.sizes(), " ", coords.scalar_type());
  return {table.size(0), coords.size(1), table.size(5), table.size(2), table.size(3), table.size(4)};
}

template <typename T>
TriGridArgs<T> make_args(const torch::Tensor& table, const torch::Tensor& coords) {
  const std::vector<int64_t> s = check_operands(table, coords);
  TriGridArgs<T> a{table.data_ptr<T>(), coords.data_ptr<T>(), nullptr, nullptr, nullptr,
                   s[0], s[1], s[2], s[3], s[4], s[5]};
  return a;
}

// The float32, C = 32 kernels below: 8-float vectors (GCC/Clang vector extension), 4 per table row.
typedef float v8 __attribute__((vector_size(32)));
constexpr int kC32 = 32, kRowVectors = 4;
constexpr int64_t kC32Chunk = 1024;  // points per work item

inline v8 load_v8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// The corners of consecutive points of one work item, each found kAhead points before it is used and its
// table rows prefetched then: the rows are gathered from a table far larger than the caches (100 MB at the
// bench), and without this every point waited on its rows; consecutive points of a ray are close, so the
// prefetched lines are mostly the ones needed.
template <bool kGrad>
struct CornerRing {
  static constexpr int kAhead = 4, kSize = 8;  // kSize > kAhead, a power of two
  const TriGridArgs<float>& a;
  const int64_t stop;
  TriGridCorners<float> corners[kSize][kTriGridPlanes];
  const float* planes[kSize][kTriGridPlanes];

  // Ready for points start, start + 1, ... < stop.
  CornerRing(const TriGridArgs<float>& args, int64_t start, int64_t stop_) : a(args), stop(stop_) {
    for (int64_t point = start; point < std::min(stop, start + kAhead); ++point) find(point);
  }

  void find(int64_t point) {
    const int slot = static_cast<int>(point % kSize);
    const int64_t n = point / a.p, plane_rows = a.h * a.w * a.d;
    for (int k = 0; k < kTriGridPlanes; ++k) {
      TriGridCorners<float>& q = corners[slot][k];
      trigrid_corners<float, kGrad>(a.coords + 3 * point, k, a.h, a.w, a.d, q);
      planes[slot][k] = a.table + (n * kTriGridPlanes + k) * plane_rows * kC32;
      for (int j = 0; j < q.count; ++j) {
        __builtin_prefetch(planes[slot][k] + q.row[j] * kC32);
        __builtin_prefetch(planes[slot][k] + q.row[j] * kC32 + kC32 / 2);
      }
    }
  }

  // The slot of `point` (the next in order), after finding the point kAhead on.
  int next(int64_t point) {
    if (point + kAhead < stop) find(point + kAhead);
    return static_cast<int>(point % kSize);
  }
};

// body(point, corners, planes) for every point, in order within work items of kC32Chunk points, with the
// point's corners and plane bases from a CornerRing (rows prefetched a few points ahead).
template <bool kGrad, typename Body>
void for_each_point_c32(const TriGridArgs<float>& a, int threads, Body body) {
  const int64_t points = a.n * a.p;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t start = 0; start < points; start += kC32Chunk) {
    const int64_t stop = std::min(points, start + kC32Chunk);
    CornerRing<kGrad> ring(a, start, stop);
    for (int64_t point = start; point < stop; ++point) {
      const int slot = ring.next(point);
      body(point, ring.corners[slot], ring.planes[slot]);
    }
  }
}

// The forward for float32 and C = 32: per point the corner rows are summed in four registers and stored once.
void forward_c32(const TriGridArgs<float>& a, int threads) {
  for_each_point_c32<false>(a, threads, [&](int64_t point, const TriGridCorners<float>* corners,
                                            const float* const* planes) {
    v8 acc[kRowVectors] = {};
    for (int k = 0; k < kTriGridPlanes; ++k) {
      const TriGridCorners<float>& q = corners[k];
      for (int j = 0; j < q.count; ++j) {
        const float* src = planes[k] + q.row[j] * kC32;
        const v8 weight = v8{} + q.weight[j];
        for (int v = 0; v < kRowVectors; ++v) acc[v] += weight * load_v8(src + 8 * v);
      }
    }
    std::memcpy(a.out + point * kC32, acc, sizeof(acc));
  });
}

// The forward, one point per iteration (forward_c32 where it applies).
template <typename T>
void forward_impl(const TriGridArgs<T>& a, int threads) {
  if constexpr (std::is_same<T, float>::value) {
    if (a.c == 32) return forward_c32(a, threads);
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t point = 0; point < a.n * a.p; ++point) trigrid_forward_point(a, point, 0, a.c);
}

// Discards the table gradient of trigrid_backward_point (trigrid_planes_grad computes the planes gradient).
struct NoAdd {
  template <typename T>
  void operator()(T*, int64_t, T) const {}
};

// d loss / d coords [N, P, 3], one point (all three planes) per iteration.
template <typename T>
void coords_grad(const TriGridArgs<T>& a, T* grad_coords, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t point = 0; point < a.n * a.p; ++point) {
    T* gc = grad_coords + 3 * point;
    gc[0] = gc[1] = gc[2] = T(0);
    for (int k = 0; k < kTriGridPlanes; ++k) trigrid_backward_point(a, point, k, 0, a.c, gc, NoAdd());
  }
}

// coords_grad for float32 and C = 32 channels: per point, the Jacobian d features / d coords [3, 32] is
// summed over the corner rows in twelve 8-float registers, then dotted once per axis with the incoming
// gradient (three horizontal sums per point instead of one per corner); rows prefetched as in the forward.
void coords_grad_c32(const TriGridArgs<float>& a, float* grad_coords, int threads) {
  for_each_point_c32<true>(a, threads, [&](int64_t point, const TriGridCorners<float>* corners,
                                           const float* const* planes) {
    v8 jac[3][kRowVectors] = {};
    for (int k = 0; k < kTriGridPlanes; ++k) {
      const TriGridCorners<float>& q = corners[k];
      for (int j = 0; j < q.count; ++j) {
        const float* src = planes[k] + q.row[j] * kC32;
        const v8 g0 = v8{} + q.grad[j][0], g1 = v8{} + q.grad[j][1], g2 = v8{} + q.grad[j][2];
        for (int v = 0; v < kRowVectors; ++v) {
          const v8 row = load_v8(src + 8 * v);
          jac[0][v] += g0 * row;
          jac[1][v] += g1 * row;
          jac[2][v] += g2 * row;
        }
      }
    }
    const float* g = a.grad + point * kC32;
    float* gc = grad_coords + 3 * point;
    for (int axis = 0; axis < 3; ++axis) {
      v8 total = jac[axis][0] * load_v8(g);
      for (int v = 1; v < kRowVectors; ++v) total += jac[axis][v] * load_v8(g + 8 * v);
      float dot = 0;
      for (int l = 0; l < 8; ++l) dot += total[l];
      gc[axis] = dot;
    }
  });
}

// The coordinate gradient by a specialised kernel where there is one (float32, C = 32): false otherwise.
template <typename T>
bool coords_grad_special(const TriGridArgs<T>&, T*, int) {
  return false;
}

template <>
bool coords_grad_special<float>(const TriGridArgs<float>& a, float* grad_coords, int threads) {
  if (a.c != 32) return false;
  coords_grad_c32(a, grad_coords, threads);
  return true;
}

}  // namespace

// planes [N, 3, C*D, H, W] -> table [N, 3, H, W, D, C] (contiguous copies).
torch::Tensor planes_to_table(torch::Tensor planes, int64_t depth, int64_t threads) {
  check_float(planes, "planes");
  TORCH_CHECK(planes.dim() == 5 && planes.size(1) == kTriGridPlanes && depth > 0 && planes.size(2) % depth == 0,
              "trigrid_sample: planes must be [N, 3, C*D, H, W] with D = ", depth, ", got ", planes.sizes());
  planes = planes.contiguous();
  const int64_t n = planes.size(0), c = planes.size(2) / depth, h = planes.size(3), w = planes.size(4);
  torch::Tensor table = torch::empty({n, kTriGridPlanes, h, w, depth, c}, planes.options());
  pybind11::gil_scoped_release release;
  AT_DISPATCH_FLOATING_TYPES(planes.scalar_type(), "planes_to_table", [&] {
    transpose_all(planes.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), n * kTriGridPlanes, c, depth, h * w,
                  static_cast<int>(threads));
  });
  return table;
}

// table [N, 3, H, W, D, C], coords [N, P, 3] -> features [N, P, C].
torch::Tensor forward(torch::Tensor table, torch::Tensor coords, int64_t threads) {
  check_operands(table, coords);
  torch::Tensor out = torch::empty({coords.size(0), coords.size(1), table.size(5)}, table.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "trigrid_forward", [&] {
    TriGridArgs<scalar_t> a = make_args<scalar_t>(table, coords);
    a.out = out.data_ptr<scalar_t>();
    pybind11::gil_scoped_release release;
    forward_impl(a, static_cast<int>(threads));
  });
  return out;
}

// d loss / d features [N, P, C] -> (d loss / d planes [N, 3, C*D, H, W], d loss / d coords [N, P, 3]);
// each is computed only if asked for (else an empty tensor). A non-empty `accumulate_into` (a contiguous
// planes-shaped tensor of the table's dtype) receives the planes gradient added in place and is returned.
std::vector<torch::Tensor> backward(torch::Tensor table, torch::Tensor coords, torch::Tensor grad, bool need_planes,
                                    bool need_coords, int64_t threads, torch::Tensor accumulate_into) {
  check_operands(table, coords);
  TORCH_CHECK(coords.size(1) < (int64_t(1) << 31), "trigrid_sample: at most 2^31 - 1 points per batch element");
  TORCH_CHECK(grad.sizes() == torch::IntArrayRef({coords.size(0), coords.size(1), table.size(5)}) &&
              grad.is_contiguous() && grad.scalar_type() == table.scalar_type(),
              "trigrid_sample: grad must be contiguous [N, P, C] of the table's dtype, got ", grad.sizes());
  const int64_t n = table.size(0), h = table.size(2), w = table.size(3), d = table.size(4), c = table.size(5);
  const bool accumulate = need_planes && accumulate_into.numel() > 0;
  if (accumulate)
    TORCH_CHECK(accumulate_into.sizes() == torch::IntArrayRef({n, kTriGridPlanes, c * d, h, w}) &&
                    accumulate_into.is_contiguous() && accumulate_into.scalar_type() == table.scalar_type() &&
                    accumulate_into.device().is_cpu(),
                "trigrid_sample: accumulate_into must be a contiguous planes-shaped CPU tensor of the table's dtype");
  torch::Tensor grad_planes = accumulate ? accumulate_into
                              : need_planes ? torch::empty({n, kTriGridPlanes, c * d, h, w}, table.options())
                                            : torch::empty({0}, table.options());
  torch::Tensor grad_coords = need_coords ? torch::empty_like(coords) : torch::empty({0}, coords.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "trigrid_backward", [&] {
    TriGridArgs<scalar_t> a = make_args<scalar_t>(table, coords);
    a.grad = grad.data_ptr<scalar_t>();
    pybind11::gil_scoped_release release;
    if (need_coords && !coords_grad_special(a, grad_coords.data_ptr<scalar_t>(), static_cast<int>(threads)))
      coords_grad(a, grad_coords.data_ptr<scalar_t>(), static_cast<int>(threads));
    if (need_planes) trigrid_planes_grad(a, accumulate, grad_planes.data_ptr<scalar_t>(), static_cast<int>(threads));
  });
  return {grad_planes, grad_coords};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("planes_to_table", &planes_to_table, "planes [N, 3, C*D, H, W] -> texel table [N, 3, H, W, D, C]");
  m.def("forward", &forward, "mean tri-grid features [N, P, C] at normalised coords [N, P, 3]");
  m.def("backward", &backward, "(grad planes, grad coords) from grad features [N, P, C]");
}
