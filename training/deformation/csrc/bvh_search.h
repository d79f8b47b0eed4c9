// Exact nearest-triangle query of one point against a refitted tree (bvh.h). Torch-free.
//
// Result: the face minimising (squared distance, face id) lexicographically among all faces, or -1
// when none is closer than max_distance. Bounds are pruned against (min(sqrt(best), max_distance)
// + tol)^2, tol = 16 float eps x the coordinate scale, so no face whose computed distance could tie
// or beat the best is skipped: the answer does not depend on the point order, the warm starts or
// the number of threads. Each point is warm-started with the leaf of the previous point's nearest
// face (consecutive samples of a ray are close) and that leaf is not evaluated twice; without a warm
// start, the first bound comes from descending to the nearest leaf. The traversal then visits every
// child within the bound, leaves at once, inner nodes from a stack.
//
// The child bounds and leaf distances use AVX2 + FMA when the compiler targets them (-march=native
// on any recent x86-64), else portable loops with the same results up to float rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "bvh.h"

#if defined(__AVX2__) && defined(__FMA__) && !defined(NEAREST_TRIANGLE_PORTABLE)
#include <immintrin.h>
#define NEAREST_TRIANGLE_AVX2 1
#endif

namespace nearest_triangle {

constexpr int kStackSize = 256;  // traversal stack: at most kWidth entries per tree level
constexpr float kTolerance = 16.f;  // pruning margin in float eps x the coordinate scale

#ifdef NEAREST_TRIANGLE_AVX2

// Squared distances d[kWidth] from p to the children's bounds (max of the axis-aligned and the
// oriented box distance); returns the bit mask of those <= limit.
inline unsigned child_sq_distances(const Node& n, const float* p, float limit, float* d) {
  const __m256 px = _mm256_set1_ps(p[0]), py = _mm256_set1_ps(p[1]), pz = _mm256_set1_ps(p[2]);
  const __m256 zero = _mm256_setzero_ps(), magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 q[3] = {px, py, pz};
  __m256 box = zero, oriented = zero;
  for (int k = 0; k < 3; ++k) {
    __m256 e = _mm256_max_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_load_ps(n.lo[k]), q[k]),
                                           _mm256_sub_ps(q[k], _mm256_load_ps(n.hi[k]))), zero);
    box = _mm256_fmadd_ps(e, e, box);
    __m256 l = _mm256_fmsub_ps(_mm256_load_ps(n.axis[3 * k]), px, _mm256_load_ps(n.centre[k]));
    l = _mm256_fmadd_ps(_mm256_load_ps(n.axis[3 * k + 1]), py, l);
    l = _mm256_fmadd_ps(_mm256_load_ps(n.axis[3 * k + 2]), pz, l);
    e = _mm256_max_ps(_mm256_sub_ps(_mm256_and_ps(l, magnitude), _mm256_load_ps(n.half[k])), zero);
    oriented = _mm256_fmadd_ps(e, e, oriented);
  }
  const __m256 out = _mm256_max_ps(box, oriented);
  _mm256_store_ps(d, out);
  return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(out, _mm256_set1_ps(limit), _CMP_LE_OQ)));
}

// |p - segment|^2 for the segment origin + t e, t in [0, 1], given a = p - origin and t's unclamped
// numerator over |e|^2 (proj x inverse length^2).
inline __m256 segment_sq(__m256 ax, __m256 ay, __m256 az, __m256 ex, __m256 ey, __m256 ez, __m256 t) {
  t = _mm256_min_ps(_mm256_max_ps(t, _mm256_setzero_ps()), _mm256_set1_ps(1.f));
  ax = _mm256_fnmadd_ps(t, ex, ax); ay = _mm256_fnmadd_ps(t, ey, ay); az = _mm256_fnmadd_ps(t, ez, az);
  return _mm256_fmadd_ps(az, az, _mm256_fmadd_ps(ay, ay, _mm256_mul_ps(ax, ax)));
}

// Squared distances d[kLanes] from p to the faces of a leaf (branch-free; see leaf rows in bvh.h):
// the face interior when the projection's barycentric coordinates are inside, else (and also then,
// which only matters for slivers) the nearest of the three edges. Returns the smallest.
inline float leaf_sq_distances(const Leaf& leaf, const float* p, float* d) {
  const float(*r)[kLanes] = leaf.row;
  auto row = [&](int k) { return _mm256_load_ps(r[k]); };
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.f);
  const __m256 ax = _mm256_sub_ps(_mm256_set1_ps(p[0]), row(0)), ay = _mm256_sub_ps(_mm256_set1_ps(p[1]), row(1)),
               az = _mm256_sub_ps(_mm256_set1_ps(p[2]), row(2));
  const __m256 bx = row(3), by = row(4), bz = row(5), cx = row(6), cy = row(7), cz = row(8);
  const __m256 d1 = _mm256_fmadd_ps(az, bz, _mm256_fmadd_ps(ay, by, _mm256_mul_ps(ax, bx)));
  const __m256 d2 = _mm256_fmadd_ps(az, cz, _mm256_fmadd_ps(ay, cy, _mm256_mul_ps(ax, cx)));
  const __m256 v = _mm256_mul_ps(_mm256_fmsub_ps(row(10), d1, _mm256_mul_ps(row(11), d2)), row(15));
  const __m256 w = _mm256_mul_ps(_mm256_fmsub_ps(row(9), d2, _mm256_mul_ps(row(11), d1)), row(15));
  const __m256 fx = _mm256_fnmadd_ps(w, cx, _mm256_fnmadd_ps(v, bx, ax));
  const __m256 fy = _mm256_fnmadd_ps(w, cy, _mm256_fnmadd_ps(v, by, ay));
  const __m256 fz = _mm256_fnmadd_ps(w, cz, _mm256_fnmadd_ps(v, bz, az));
  const __m256 face = _mm256_fmadd_ps(fz, fz, _mm256_fmadd_ps(fy, fy, _mm256_mul_ps(fx, fx)));
  __m256 edge = segment_sq(ax, ay, az, bx, by, bz, _mm256_mul_ps(d1, row(12)));
  edge = _mm256_min_ps(edge, segment_sq(ax, ay, az, cx, cy, cz, _mm256_mul_ps(d2, row(13))));
  const __m256 px = _mm256_sub_ps(ax, bx), py = _mm256_sub_ps(ay, by), pz = _mm256_sub_ps(az, bz);
  const __m256 qx = _mm256_sub_ps(cx, bx), qy = _mm256_sub_ps(cy, by), qz = _mm256_sub_ps(cz, bz);
  const __m256 pq = _mm256_fmadd_ps(pz, qz, _mm256_fmadd_ps(py, qy, _mm256_mul_ps(px, qx)));
  edge = _mm256_min_ps(edge, segment_sq(px, py, pz, qx, qy, qz, _mm256_mul_ps(pq, row(14))));
  const __m256 inside = _mm256_and_ps(
      _mm256_and_ps(_mm256_cmp_ps(row(15), zero, _CMP_GT_OQ), _mm256_cmp_ps(v, zero, _CMP_GE_OQ)),
      _mm256_and_ps(_mm256_cmp_ps(w, zero, _CMP_GE_OQ), _mm256_cmp_ps(_mm256_add_ps(v, w), one, _CMP_LE_OQ)));
  const __m256 out = _mm256_blendv_ps(edge, _mm256_min_ps(face, edge), inside);
  _mm256_store_ps(d, out);
  __m256 low = _mm256_min_ps(out, _mm256_permute2f128_ps(out, out, 1));
  low = _mm256_min_ps(low, _mm256_shuffle_ps(low, low, _MM_SHUFFLE(1, 0, 3, 2)));
  low = _mm256_min_ps(low, _mm256_shuffle_ps(low, low, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm256_cvtss_f32(low);
}

#else  // portable: the same arithmetic lane by lane

inline unsigned child_sq_distances(const Node& n, const float* p, float limit, float* d) {
#pragma omp simd
  for (int c = 0; c < kWidth; ++c) {
    float box = 0.f, oriented = 0.f;
    for (int k = 0; k < 3; ++k) {
      float e = std::max(std::max(n.lo[k][c] - p[k], p[k] - n.hi[k][c]), 0.f);
      box += e * e;
      float l = n.axis[3 * k][c] * p[0] - n.centre[k][c] + n.axis[3 * k + 1][c] * p[1] + n.axis[3 * k + 2][c] * p[2];
      e = std::max(std::fabs(l) - n.half[k][c], 0.f);
      oriented += e * e;
    }
    d[c] = std::max(box, oriented);
  }
  unsigned mask = 0;
  for (int c = 0; c < kWidth; ++c) mask |= static_cast<unsigned>(d[c] <= limit) << c;
  return mask;
}

inline float segment_sq(float ax, float ay, float az, float ex, float ey, float ez, float t) {
  t = std::min(std::max(t, 0.f), 1.f);
  ax -= t * ex; ay -= t * ey; az -= t * ez;
  return ax * ax + ay * ay + az * az;
}

inline float leaf_sq_distances(const Leaf& leaf, const float* p, float* d) {
  const float(*r)[kLanes] = leaf.row;
#pragma omp simd
  for (int j = 0; j < kLanes; ++j) {
    float ax = p[0] - r[0][j], ay = p[1] - r[1][j], az = p[2] - r[2][j];
    float bx = r[3][j], by = r[4][j], bz = r[5][j], cx = r[6][j], cy = r[7][j], cz = r[8][j];
    float d1 = ax * bx + ay * by + az * bz, d2 = ax * cx + ay * cy + az * cz;
    float v = (r[10][j] * d1 - r[11][j] * d2) * r[15][j], w = (r[9][j] * d2 - r[11][j] * d1) * r[15][j];
    float fx = ax - v * bx - w * cx, fy = ay - v * by - w * cy, fz = az - v * bz - w * cz;
    float face = fx * fx + fy * fy + fz * fz;
    float edge = std::min(segment_sq(ax, ay, az, bx, by, bz, d1 * r[12][j]),
                          segment_sq(ax, ay, az, cx, cy, cz, d2 * r[13][j]));
    float px = ax - bx, py = ay - by, pz = az - bz, qx = cx - bx, qy = cy - by, qz = cz - bz;
    edge = std::min(edge, segment_sq(px, py, pz, qx, qy, qz, (px * qx + py * qy + pz * qz) * r[14][j]));
    bool inside = r[15][j] > 0 && v >= 0 && w >= 0 && v + w <= 1;
    d[j] = inside ? std::min(face, edge) : edge;
  }
  float lowest = d[0];
  for (int j = 1; j < kLanes; ++j) lowest = std::min(lowest, d[j]);
  return lowest;
}

#endif

// The best face so far of one query point and the pruning bound that goes with it.
struct Query {
  float p[3];
  float cap, tol;      // max_distance and the rounding margin
  float limit;         // squared pruning radius
  float best = kInf;
  int32_t face = -1;
  int32_t leaf = -1;   // the leaf holding `face`
  int32_t warm = -1;   // the leaf evaluated before the traversal (skipped by it)

  // Evaluate the faces of leaf i; keep the smallest (distance, face id) and tighten the bound. The leaf's best
  // is its smallest distance with the smallest id among the lanes at that distance, found without a branch
  // per lane.
  void visit(const Mesh& m, int32_t i) {
    alignas(32) float d[kLanes];
    const float lowest = leaf_sq_distances(m.leaves[i], p, d);
    if (!(lowest <= best)) return;
    const int32_t* id = m.leaves[i].id;
    unsigned at_lowest = 0;
    for (int j = 0; j < kLanes; ++j) at_lowest |= static_cast<unsigned>(d[j] == lowest) << j;
    int32_t nearest = id[__builtin_ctz(at_lowest)];
    for (at_lowest &= at_lowest - 1; at_lowest; at_lowest &= at_lowest - 1)
      nearest = std::min(nearest, id[__builtin_ctz(at_lowest)]);
    if (lowest < best || nearest < face) {
      best = lowest;
      face = nearest;
      leaf = i;
      float radius = std::min(std::sqrt(best), cap) + tol;
      limit = radius * radius;
    }
  }

  // Follow the nearest child down to a leaf and evaluate it: a first bound without a warm start.
  void descend(const Mesh& m) {
    int32_t node = 0;
    for (;;) {
      alignas(32) float d[kWidth];
      unsigned mask = child_sq_distances(m.nodes[node], p, limit, d);
      if (!mask) return;
      int nearest = __builtin_ctz(mask);
      for (mask &= mask - 1; mask; mask &= mask - 1)
        if (d[__builtin_ctz(mask)] < d[nearest]) nearest = __builtin_ctz(mask);
      const Node& n = m.nodes[node];
      if (n.leaf_mask >> nearest & 1u) {
        warm = n.child[nearest];
        visit(m, warm);
        return;
      }
      node = n.child[nearest];
    }
  }

  // Visit every leaf within the bound: children bounded together, leaves evaluated at once, inner
  // nodes deferred on a stack with their lower bounds.
  void traverse(const Mesh& m) {
    int32_t stack_node[kStackSize];
    float stack_bound[kStackSize];
    int top = 0;
    stack_node[top] = 0;
    stack_bound[top++] = 0.f;
    while (top > 0) {
      --top;
      if (!(stack_bound[top] <= limit)) continue;
      const Node& n = m.nodes[stack_node[top]];
      alignas(32) float d[kWidth];
      const unsigned mask = child_sq_distances(n, p, limit, d);
      for (unsigned bits = mask & n.leaf_mask; bits; bits &= bits - 1) {
        const int c = __builtin_ctz(bits);
        if (d[c] <= limit && n.child[c] != warm) visit(m, n.child[c]);
      }
      for (unsigned bits = mask & ~n.leaf_mask; bits; bits &= bits - 1) {
        const int c = __builtin_ctz(bits);
        stack_node[top] = n.child[c];
        stack_bound[top++] = d[c];
      }
    }
  }
};

// Nearest faces of points [count, 3] (consecutive points warm-start each other): face [count]
// (-1 beyond cap) and squared distance sq [count] (inf beyond cap).
inline void search_run(const Mesh& m, const float* points, int64_t count, float cap, int32_t* face, float* sq) {
  int32_t warm = -1;
  for (int64_t i = 0; i < count; ++i) {
    Query q;
    const float* p = points + 3 * i;
    q.p[0] = p[0]; q.p[1] = p[1]; q.p[2] = p[2];
    const float scale = std::max({m.scale, std::fabs(p[0]), std::fabs(p[1]), std::fabs(p[2])});
    q.cap = cap;
    q.tol = kTolerance * kEps * scale;
    q.limit = (cap + q.tol) * (cap + q.tol);
    q.warm = warm;
    if (warm >= 0) q.visit(m, warm);
    else q.descend(m);
    q.traverse(m);
    const bool inside = q.best < cap * cap;
    face[i] = inside ? q.face : -1;
    sq[i] = inside ? q.best : kInf;
    warm = inside ? q.leaf : -1;
  }
}

}  // namespace nearest_triangle
