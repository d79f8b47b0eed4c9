// Tri-grid sampling math shared by the CPU kernel (trigrid_sample.cpp) and the CUDA kernel
// (trigrid_sample_cuda.cu): corner weights of one point in one plane, and the per-point forward
// and backward bodies that both kernels run (the CPU in OpenMP loops, the GPU one thread each).
// Free of torch and CUDA headers under a host compiler.
//
// Layout (training/rendering/planes.py): the texel table is [N, 3, H, W, D, C], i.e. rows of C
// features per (batch, plane, h, w, d). Normalised coordinates [N, P, 3] in [-1, 1]; plane k is
// addressed by world axes (W, H, D) = (0, 1, 2), (0, 2, 1), (1, 2, 0) (EG3D issue #67). Sampling
// is grid_sample's with align_corners=False and zero padding: texel i of an axis of `size` texels
// sits at normalised (2 i + 1) / size - 1; corners outside the volume contribute zero. D = 1 is
// bilinear and ignores the plane-normal coordinate; D > 1 is trilinear. Features are the mean of
// the three planes.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define TRIGRID_HD __host__ __device__ __forceinline__
#else
#define TRIGRID_HD inline
#endif

#if defined(_OPENMP) && !defined(__CUDACC__)
#define TRIGRID_SIMD _Pragma("omp simd")
#define TRIGRID_SIMD_DOT _Pragma("omp simd reduction(+ : dot)")  // a loop summing into `dot`
#else
#define TRIGRID_SIMD
#define TRIGRID_SIMD_DOT
#endif

constexpr int kTriGridPlanes = 3;
constexpr int kTriGridMaxCorners = 8;

// Operands of one forward or backward call; tensors are contiguous, absent ones nullptr.
template <typename T>
struct TriGridArgs {
  const T* table;   // [N, 3, H, W, D, C]
  const T* coords;  // [N, P, 3] normalised
  const T* grad;    // [N, P, C] d loss / d features (backward)
  T* out;           // [N, P, C] features (forward)
  T* grad_table;    // [N, 3, H, W, D, C] (backward, accumulated into)
  int64_t n, p, c, h, w, d;
};

// World axis that addresses texel axis `role` (0 = W, 1 = H, 2 = D) of plane k.
TRIGRID_HD int trigrid_world_axis(int k, int role) {
  return role == 0 ? (k == 2 ? 1 : 0) : (role == 1 ? (k == 0 ? 1 : 2) : 2 - k);
}

TRIGRID_HD float trigrid_floor(float v) { return floorf(v); }
TRIGRID_HD double trigrid_floor(double v) { return floor(v); }

// Linear interpolation along one texel axis: lower corner index and, per corner (lower, lower + 1),
// whether it lies inside the volume, its weight and d weight / d normalised coordinate.
template <typename T>
struct TriGridAxis {
  int64_t lower;
  T frac;  // position past the lower corner, in [0, 1)
  bool valid[2];
  T weight[2];
  T slope[2];
};

// Axis of normalised coordinate t for `size` texels. Texel coordinates beyond [-2, size + 1] are
// clamped there (both corners are outside either way; NaN goes to -2), so the index never overflows.
template <typename T>
TRIGRID_HD TriGridAxis<T> trigrid_axis(T t, int64_t size) {
  const T half = static_cast<T>(size) / T(2);
  T x = t * half + (half - T(0.5));
  x = x > T(-2) ? x : T(-2);
  x = x < static_cast<T>(size + 1) ? x : static_cast<T>(size + 1);
  const T lower = trigrid_floor(x);
  const T frac = x - lower;
  TriGridAxis<T> a;
  a.lower = static_cast<int64_t>(lower);
  a.frac = frac;
  for (int j = 0; j < 2; ++j) {
    const int64_t i = a.lower + j;
    a.valid[j] = i >= 0 && i < size;
    a.weight[j] = a.valid[j] ? (j ? frac : T(1) - frac) : T(0);
    a.slope[j] = a.valid[j] ? (j ? half : -half) : T(0);
  }
  return a;
}

// The single depth "corner" of a tri-plane (D = 1): weight 1, no dependence on the coordinate.
template <typename T>
TRIGRID_HD TriGridAxis<T> trigrid_flat_axis() {
  TriGridAxis<T> a;
  a.lower = 0;
  a.frac = T(0);
  a.valid[0] = true;
  a.valid[1] = false;
  a.weight[0] = T(1);
  a.weight[1] = T(0);
  a.slope[0] = a.slope[1] = T(0);
  return a;
}

// The W, H and D axes (x, y, z) of normalised point `coord` [3] in plane k of h x w x d texels.
template <typename T>
TRIGRID_HD void trigrid_plane_axes(const T* coord, int k, int64_t h, int64_t w, int64_t d, TriGridAxis<T>& x,
                                   TriGridAxis<T>& y, TriGridAxis<T>& z) {
  x = trigrid_axis(coord[trigrid_world_axis(k, 0)], w);
  y = trigrid_axis(coord[trigrid_world_axis(k, 1)], h);
  z = d > 1 ? trigrid_axis(coord[trigrid_world_axis(k, 2)], d) : trigrid_flat_axis<T>();
}

// The in-volume corners of one point in one plane: row in the plane's table, weight (the 1/3 of the
// plane mean folded in) and, with kGrad, d weight / d normalised world coordinate (x, y, z).
template <typename T>
struct TriGridCorners {
  int count;
  int64_t row[kTriGridMaxCorners];
  T weight[kTriGridMaxCorners];
  T grad[kTriGridMaxCorners][3];
};

// Corners of normalised point `coord` [3] in plane k of a table with h x w x d texels.
template <typename T, bool kGrad>
TRIGRID_HD void trigrid_corners(const T* coord, int k, int64_t h, int64_t w, int64_t d, TriGridCorners<T>& q) {
  const int aw = trigrid_world_axis(k, 0), ah = trigrid_world_axis(k, 1), ad = trigrid_world_axis(k, 2);
  TriGridAxis<T> x, y, z;
  trigrid_plane_axes(coord, k, h, w, d, x, y, z);
  const T third = T(1) / T(kTriGridPlanes);
  q.count = 0;
  for (int jy = 0; jy < 2; ++jy) {
    for (int jx = 0; jx < 2; ++jx) {
      for (int jz = 0; jz < 2; ++jz) {
        if (!(y.valid[jy] && x.valid[jx] && z.valid[jz])) continue;
        const int i = q.count++;
        q.row[i] = ((y.lower + jy) * w + x.lower + jx) * d + z.lower + jz;
        const T wy = y.weight[jy] * third, wx = x.weight[jx], wz = z.weight[jz];
        q.weight[i] = wy * wx * wz;
        if (kGrad) {
          q.grad[i][aw] = wy * x.slope[jx] * wz;
          q.grad[i][ah] = y.slope[jy] * third * wx * wz;
          q.grad[i][ad] = wy * wx * z.slope[jz];
        }
      }
    }
  }
}

// Features [c0, c1) of point `point` (flat index n * P + p): the weighted sum of its corner rows.
template <typename T>
TRIGRID_HD void trigrid_forward_point(const TriGridArgs<T>& a, int64_t point, int64_t c0, int64_t c1) {
  T* out = a.out + point * a.c;
  for (int64_t c = c0; c < c1; ++c) out[c] = T(0);
  const int64_t n = point / a.p, plane_rows = a.h * a.w * a.d;
  for (int k = 0; k < kTriGridPlanes; ++k) {
    TriGridCorners<T> q;
    trigrid_corners<T, false>(a.coords + 3 * point, k, a.h, a.w, a.d, q);
    const T* plane = a.table + (n * kTriGridPlanes + k) * plane_rows * a.c;
    for (int j = 0; j < q.count; ++j) {
      const T* src = plane + q.row[j] * a.c;
      const T weight = q.weight[j];
      TRIGRID_SIMD
      for (int64_t c = c0; c < c1; ++c) out[c] += weight * src[c];
    }
  }
}

// Backward of features [c0, c1) of point `point` through plane k: adds grad * weight into the
// corner rows of grad_table with add(grad_table, index, value), and adds d loss / d coordinate to gc [3].
template <typename T, typename Add>
TRIGRID_HD void trigrid_backward_point(const TriGridArgs<T>& a, int64_t point, int k, int64_t c0, int64_t c1,
                                       T* gc, Add add) {
  const int64_t n = point / a.p, plane_offset = (n * kTriGridPlanes + k) * a.h * a.w * a.d * a.c;
  TriGridCorners<T> q;
  trigrid_corners<T, true>(a.coords + 3 * point, k, a.h, a.w, a.d, q);
  const T* g = a.grad + point * a.c;
  for (int j = 0; j < q.count; ++j) {
    const int64_t row = plane_offset + q.row[j] * a.c;
    const T* src = a.table + row;
    const T weight = q.weight[j];
    T dot = T(0);
    TRIGRID_SIMD_DOT
    for (int64_t c = c0; c < c1; ++c) {
      add(a.grad_table, row + c, weight * g[c]);
      dot += g[c] * src[c];
    }
    for (int axis = 0; axis < 3; ++axis) gc[axis] += q.grad[j][axis] * dot;
  }
}

// Channels per CUDA thread, and the channel groups of C channels.
constexpr int64_t kTriGridGroup = 8;
TRIGRID_HD int64_t trigrid_groups(int64_t c) { return (c + kTriGridGroup - 1) / kTriGridGroup; }

// Work item i in [0, N P groups) of the CUDA forward: one channel group of one point.
template <typename T>
TRIGRID_HD void trigrid_forward_item(const TriGridArgs<T>& a, int64_t i) {
  const int64_t groups = trigrid_groups(a.c), c0 = (i % groups) * kTriGridGroup;
  trigrid_forward_point(a, i / groups, c0, c0 + kTriGridGroup < a.c ? c0 + kTriGridGroup : a.c);
}

// Work item i in [0, N P 3 groups) of the CUDA backward: one channel group of one point in one
// plane. Adds into grad_table with `add`, sets gc [3] to its share of d loss / d coords and
// returns the point (flat n * P + p) that share belongs to.
template <typename T, typename Add>
TRIGRID_HD int64_t trigrid_backward_item(const TriGridArgs<T>& a, int64_t i, T* gc, Add add) {
  const int64_t groups = trigrid_groups(a.c), c0 = (i % groups) * kTriGridGroup, point = i / (groups * kTriGridPlanes);
  const int k = static_cast<int>((i / groups) % kTriGridPlanes);
  gc[0] = gc[1] = gc[2] = T(0);
  trigrid_backward_point(a, point, k, c0, c0 + kTriGridGroup < a.c ? c0 + kTriGridGroup : a.c, gc, add);
  return point;
}

// The struct behind cudaStream_t, so that the launcher declarations need no CUDA header.
struct CUstream_st;

// Launchers of the CUDA kernels (trigrid_sample_cuda.cu, instantiated for float and double): the
// forward writes a.out; the backward adds with atomics into a.grad_table and grad_coords [N, P, 3]
// (both zeroed by the caller; either skipped when nullptr).
template <typename T>
void trigrid_forward_launch(const TriGridArgs<T>& a, CUstream_st* stream);
template <typename T>
void trigrid_backward_launch(const TriGridArgs<T>& a, T* grad_coords, CUstream_st* stream);
