// d loss / d planes on the CPU, gathered texel by texel instead of scattered point by point (used
// by trigrid_sample.cpp; the CUDA kernel scatters into a table-layout buffer with atomics instead).
//
// A scatter (every point adding weight x grad into its 4 or 8 corner rows) needs a zeroed
// table-sized buffer and a read-modify-write of a random row per corner: memory-bound, and with
// two threads also racy unless partitioned. Here the points of each (batch, plane) are first
// binned by their base cell (the (h, w) of their lower corner, from -1 to size - 1; a counting
// sort), then every texel column (h, w, all d) sums the contributions of the points in the four
// cells around it, the two cells of one row being adjacent in the bins. Runs of kRun columns are
// transposed in cache into the planes layout [N, 3, C*D, H, W] (channel c*D + d), so every
// gradient element is written exactly once (no zeroing pass, no read-back, no transpose of a
// table-sized buffer), and the work splits into bands of rows that no two threads share. A run that
// no point reaches (44 % of them at the bench configuration) is written as zeros, one contiguous
// stretch per channel, without the gather and the transpose.
#pragma once

#include <algorithm>
#include <vector>

#include "trigrid_sample.h"

// One binned point: its index in the batch element and its position past its base corner.
template <typename T>
struct TriGridBinned {
  int32_t point;
  int32_t z0;  // lower depth corner (0 for D = 1)
  T fx, fy, fz;
};

// The points of one (batch, plane) sorted by base cell (y0 + 1) (W + 1) + (x0 + 1): cell i holds
// entries[start[i] : start[i + 1]].
template <typename T>
struct TriGridBins {
  std::vector<int64_t> start;
  std::vector<TriGridBinned<T>> entries;
};

// Bins the points of batch element n in plane k; points with no corner inside the volume are left out.
template <typename T>
void trigrid_bin_points(const TriGridArgs<T>& a, int64_t n, int k, TriGridBins<T>& bins) {
  const int64_t cells = (a.h + 1) * (a.w + 1);
  std::vector<int64_t> cell(a.p);
  std::vector<TriGridBinned<T>> binned(a.p);
  bins.start.assign(cells + 1, 0);
  for (int64_t p = 0; p < a.p; ++p) {
    TriGridAxis<T> x, y, z;
    trigrid_plane_axes(a.coords + 3 * (n * a.p + p), k, a.h, a.w, a.d, x, y, z);
    const bool inside = (x.valid[0] || x.valid[1]) && (y.valid[0] || y.valid[1]) && (z.valid[0] || z.valid[1]);
    cell[p] = inside ? (y.lower + 1) * (a.w + 1) + x.lower + 1 : -1;
    binned[p] = TriGridBinned<T>{static_cast<int32_t>(p), static_cast<int32_t>(z.lower), x.frac, y.frac, z.frac};
    if (inside) ++bins.start[cell[p] + 1];
  }
  for (int64_t i = 0; i < cells; ++i) bins.start[i + 1] += bins.start[i];
  bins.entries.resize(bins.start[cells]);
  std::vector<int64_t> fill(bins.start.begin(), bins.start.end() - 1);
  for (int64_t p = 0; p < a.p; ++p)
    if (cell[p] >= 0) bins.entries[fill[cell[p]]++] = binned[p];
}

// Gradient rows (h, w, 0..D) of plane k of batch element n into acc [D * C] (overwritten): the
// points of cells (h - 1 + r, w - 1 .. w) for r = 0, 1, i.e. with corner (h, w) at (jy, jx) = (1 - r, 1 | 0).
template <typename T>
void trigrid_gather_column(const TriGridArgs<T>& a, const TriGridBins<T>& bins, int64_t n, int64_t h, int64_t w,
                           T* acc) {
  const T third = T(1) / T(kTriGridPlanes);
  std::fill(acc, acc + a.d * a.c, T(0));
  for (int r = 0; r < 2; ++r) {
    const int64_t cell = (h + r) * (a.w + 1) + w;  // base cell (h - 1 + r, w - 1); the next one is (h - 1 + r, w)
    const int64_t middle = bins.start[cell + 1], end = bins.start[cell + 2];
    for (int64_t e = bins.start[cell]; e < end; ++e) {
      const TriGridBinned<T>& b = bins.entries[e];
      const T wy = r ? T(1) - b.fy : b.fy, wx = e < middle ? b.fx : T(1) - b.fx;
      const T* g = a.grad + (n * a.p + b.point) * a.c;
      for (int jz = 0; jz < 2; ++jz) {
        const int64_t z = b.z0 + jz;
        if (z < 0 || z >= a.d) continue;
        const T weight = wy * wx * (jz ? b.fz : T(1) - b.fz) * third;
        T* row = acc + z * a.c;
        TRIGRID_SIMD
        for (int64_t c = 0; c < a.c; ++c) row[c] += weight * g[c];
      }
    }
  }
}

// True if no binned point of `bins` has a corner in texel columns (h, w0 .. w0 + count).
template <typename T>
bool trigrid_run_is_empty(const TriGridArgs<T>& a, const TriGridBins<T>& bins, int64_t h, int64_t w0, int64_t count) {
  for (int r = 0; r < 2; ++r) {
    const int64_t cell = (h + r) * (a.w + 1) + w0;  // the cells of row r reaching the run: cell .. cell + count
    if (bins.start[cell] != bins.start[cell + count + 1]) return false;
  }
  return true;
}

// Zeros texels (h, w0 .. w0 + count) of plane m in grad_planes: one contiguous stretch per channel.
template <typename T>
void trigrid_zero_run(const TriGridArgs<T>& a, int64_t m, int64_t h, int64_t w0, int64_t count, T* grad_planes) {
  const int64_t column = a.d * a.c, line = a.h * a.w;
  T* base = grad_planes + m * column * line + h * a.w + w0;
  for (int64_t l = 0; l < column; ++l) std::fill(base + l * line, base + l * line + count, T(0));
}

// Copies (or with `accumulate` adds) the column sums acc [count, D * C] of texels (h, w0 .. w0 + count) of
// plane m into grad_planes, kBlock x kBlock blocks at a time (a few output lines in flight rather than C * D).
template <typename T>
void trigrid_store_run(const TriGridArgs<T>& a, const T* acc, int64_t m, int64_t h, int64_t w0, int64_t count,
                       bool accumulate, T* grad_planes) {
  constexpr int64_t kBlock = 8;
  const int64_t column = a.d * a.c, line = a.h * a.w;
  T* base = grad_planes + m * column * line + h * a.w + w0;
  for (int64_t c0 = 0; c0 < a.c; c0 += kBlock)
    for (int64_t z = 0; z < a.d; ++z)
      for (int64_t j0 = 0; j0 < count; j0 += kBlock) {
        const int64_t cn = std::min(kBlock, a.c - c0), jn = std::min(kBlock, count - j0);
        for (int64_t i = 0; i < cn; ++i) {
          T* dst = base + ((c0 + i) * a.d + z) * line + j0;
          const T* src = acc + j0 * column + z * a.c + c0 + i;
          if (accumulate) {
            for (int64_t j = 0; j < jn; ++j) dst[j] += src[j * column];
          } else {
            for (int64_t j = 0; j < jn; ++j) dst[j] = src[j * column];
          }
        }
      }
}

// d loss / d planes [N, 3, C*D, H, W] into grad_planes (every element written), or with `accumulate` added
// to it (texels no point reaches are left alone), `threads` OpenMP threads.
template <typename T>
void trigrid_planes_grad(const TriGridArgs<T>& a, bool accumulate, T* grad_planes, int threads) {
  constexpr int64_t kBandRows = 8;  // texel rows per work item
  constexpr int64_t kRun = 64;      // texel columns gathered before one transposed store
  const int64_t planes = a.n * kTriGridPlanes, bands = (a.h + kBandRows - 1) / kBandRows, column = a.d * a.c;
  std::vector<TriGridBins<T>> bins(planes);
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(dynamic, 1)
    for (int64_t m = 0; m < planes; ++m)
      trigrid_bin_points(a, m / kTriGridPlanes, static_cast<int>(m % kTriGridPlanes), bins[m]);
    std::vector<T> acc(kRun * column);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < planes * bands; ++item) {
      const int64_t m = item / bands, h1 = std::min(a.h, (item % bands + 1) * kBandRows);
      for (int64_t h = (item % bands) * kBandRows; h < h1; ++h)
        for (int64_t w0 = 0; w0 < a.w; w0 += kRun) {
          const int64_t count = std::min(kRun, a.w - w0);
          if (trigrid_run_is_empty(a, bins[m], h, w0, count)) {
            if (!accumulate) trigrid_zero_run(a, m, h, w0, count, grad_planes);
            continue;
          }
          for (int64_t j = 0; j < count; ++j)
            trigrid_gather_column(a, bins[m], m / kTriGridPlanes, h, w0 + j, acc.data() + j * column);
          trigrid_store_run(a, acc.data(), m, h, w0, count, accumulate, grad_planes);
        }
    }
  }
}
