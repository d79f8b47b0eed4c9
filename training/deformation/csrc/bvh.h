// Bounding-volume hierarchy over the faces of a triangle mesh, for exact nearest-triangle queries
// (system.md §2.5 step 1; the search is in bvh_search.h). Torch-free.
//
// The tree's topology (which faces form each leaf, which children each node has) is built once,
// from any pose of the mesh (the warp uses the canonical mesh), and every posed mesh refits it:
// face constants and the children's boxes are recomputed in O(faces x depth), about 0.2 ms for
// SMPL. Any topology gives exact answers; a good one only makes the search faster.
//
// Topology: leaves of kLanes faces (a short leaf repeats a face), kWidth children per node (three
// binary splits of the face centroids along their longest extent). Split positions are rounded to
// whole subtrees of kLanes * kWidth^k faces, so that every node at the bottom holds kWidth full
// leaves and only the root is partly empty. Each child has two bounds: its axis-aligned box and an
// oriented box whose first axis is the child's area-weighted mean normal (tight for the gently
// curved patches of a body mesh); the search uses the larger of the two distances.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace nearest_triangle {

constexpr int kLanes = 8;   // faces per leaf, evaluated together (SIMD)
constexpr int kRows = 16;   // per-face constants in a leaf, see Leaf
constexpr int kWidth = 8;   // children per node, bounded together (SIMD)
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kEps = std::numeric_limits<float>::epsilon();
constexpr float kBoxMargin = 8.f;  // oriented-box half extents grow by this many eps x the mesh scale

// A node: its children's bounds (structure of arrays) and what they are. An unused slot has an
// inverted axis-aligned box (distance inf); a child without an oriented box has infinite half extents.
struct alignas(64) Node {
  float lo[3][kWidth];
  float hi[3][kWidth];
  float axis[9][kWidth];    // oriented box: axis a (unit vector) in rows 3a .. 3a + 2
  float centre[3][kWidth];  // box centre along each axis
  float half[3][kWidth];    // half extent along each axis
  int32_t child[kWidth];    // node index or leaf index
  uint32_t leaf_mask;       // bit c set: child c is a leaf
};

// kLanes faces, structure of arrays. Rows: a (3), ab = b - a (3), ac = c - a (3), |ab|^2, |ac|^2,
// ab.ac, 1/|ab|^2, 1/|ac|^2, 1/|bc|^2 (0 for a zero-length edge), 1/area2 with area2 =
// |ab|^2 |ac|^2 - (ab.ac)^2 (0 for a degenerate face: only its edges count).
struct alignas(64) Leaf {
  float row[kRows][kLanes];
  int32_t id[kLanes];
};

// Fixed topology: leaf faces in order, and per node its children and the leaf range below it.
struct Tree {
  int num_faces = 0;
  std::vector<int32_t> order;       // [leaves * kLanes] face ids, leaf by leaf
  std::vector<int32_t> child;       // [nodes * kWidth] node or leaf index, -1 for an unused slot
  std::vector<uint32_t> leaf_mask;  // [nodes]
  std::vector<int32_t> first_leaf;  // [nodes] the node's leaves are first_leaf .. end_leaf - 1
  std::vector<int32_t> end_leaf;
  int num_leaves() const { return static_cast<int>(order.size()) / kLanes; }
  int num_nodes() const { return static_cast<int>(leaf_mask.size()); }
};

// One posed mesh ready for queries.
struct Mesh {
  std::vector<Node> nodes;
  std::vector<Leaf> leaves;
  float scale = 0.f;  // largest absolute vertex coordinate
};

namespace detail {

// Median split of order[begin:end] along the longest centroid extent, at a multiple of `unit` faces.
inline int split(std::vector<int32_t>& order, const std::vector<float>& centre, int begin, int end, int unit) {
  float lo[3] = {kInf, kInf, kInf}, hi[3] = {-kInf, -kInf, -kInf};
  for (int i = begin; i < end; ++i)
    for (int k = 0; k < 3; ++k) {
      lo[k] = std::min(lo[k], centre[3 * order[i] + k]);
      hi[k] = std::max(hi[k], centre[3 * order[i] + k]);
    }
  int axis = 0;
  for (int k = 1; k < 3; ++k) if (hi[k] - lo[k] > hi[axis] - lo[axis]) axis = k;
  int units = (end - begin + unit - 1) / unit;
  int mid = begin + (units + 1) / 2 * unit;
  std::nth_element(order.begin() + begin, order.begin() + mid, order.begin() + end, [&](int32_t a, int32_t b) {
    float ca = centre[3 * a + axis], cb = centre[3 * b + axis];
    return ca < cb || (ca == cb && a < b);
  });
  return mid;
}

// Child ranges of order[begin:end]: up to 2^levels pieces of at most `unit` faces, appended to bounds.
inline void partition(std::vector<int32_t>& order, const std::vector<float>& centre, int begin, int end, int levels,
                      int unit, std::vector<int>& bounds) {
  if (levels == 0 || end - begin <= unit) {
    bounds.push_back(end);
    return;
  }
  int mid = split(order, centre, begin, end, unit);
  partition(order, centre, begin, mid, levels - 1, unit, bounds);
  partition(order, centre, mid, end, levels - 1, unit, bounds);
}

// Node over faces order[begin:end] (more than one leaf's worth); its inner children built recursively.
inline int build_node(Tree& tree, std::vector<int32_t>& order, const std::vector<float>& centre, int begin, int end) {
  int unit = kLanes;
  while (unit * kWidth < end - begin) unit *= kWidth;
  std::vector<int> bounds = {begin};
  partition(order, centre, begin, end, 3, unit, bounds);
  int index = tree.num_nodes();
  tree.child.resize(tree.child.size() + kWidth, -1);
  tree.leaf_mask.push_back(0);
  tree.first_leaf.push_back(begin / kLanes);
  tree.end_leaf.push_back((end + kLanes - 1) / kLanes);
  for (size_t c = 0; c + 1 < bounds.size(); ++c) {
    int b = bounds[c], e = bounds[c + 1];
    bool leaf = e - b <= kLanes;
    int child = leaf ? b / kLanes : build_node(tree, order, centre, b, e);
    tree.child[index * kWidth + c] = child;
    if (leaf) tree.leaf_mask[index] |= 1u << c;
  }
  return index;
}

// Fill lane j of a leaf with face vertices a, b, c and face id.
inline void set_lane(Leaf& leaf, int j, const float* a, const float* b, const float* c, int32_t id) {
  float ab[3], ac[3], bc[3];
  for (int k = 0; k < 3; ++k) {
    ab[k] = b[k] - a[k]; ac[k] = c[k] - a[k]; bc[k] = c[k] - b[k];
    leaf.row[k][j] = a[k]; leaf.row[3 + k][j] = ab[k]; leaf.row[6 + k][j] = ac[k];
  }
  float ab2 = ab[0] * ab[0] + ab[1] * ab[1] + ab[2] * ab[2], ac2 = ac[0] * ac[0] + ac[1] * ac[1] + ac[2] * ac[2];
  float abac = ab[0] * ac[0] + ab[1] * ac[1] + ab[2] * ac[2], bc2 = bc[0] * bc[0] + bc[1] * bc[1] + bc[2] * bc[2];
  float area2 = ab2 * ac2 - abac * abac;
  const float values[7] = {ab2, ac2, abac, ab2 > 0 ? 1 / ab2 : 0.f, ac2 > 0 ? 1 / ac2 : 0.f,
                           bc2 > 0 ? 1 / bc2 : 0.f, area2 > 0 ? 1 / area2 : 0.f};
  for (int r = 0; r < 7; ++r) leaf.row[9 + r][j] = values[r];
  leaf.id[j] = id;
}

// Axis-aligned box and summed area-weighted normal of a range of leaves.
struct Summary {
  float lo[3] = {kInf, kInf, kInf}, hi[3] = {-kInf, -kInf, -kInf};
  double normal[3] = {0, 0, 0};
  void add(const Summary& o) {
    for (int k = 0; k < 3; ++k) {
      lo[k] = std::min(lo[k], o.lo[k]); hi[k] = std::max(hi[k], o.hi[k]); normal[k] += o.normal[k];
    }
  }
};

// Summary of one leaf's faces; tri holds each slot's three vertices ([kLanes][3][3]).
inline Summary leaf_summary(const float* tri, const int32_t* ids) {
  Summary s;
  for (int j = 0; j < kLanes; ++j) {
    const float* t = tri + 9 * j;
    for (int v = 0; v < 3; ++v)
      for (int k = 0; k < 3; ++k) {
        s.lo[k] = std::min(s.lo[k], t[3 * v + k]);
        s.hi[k] = std::max(s.hi[k], t[3 * v + k]);
      }
    if (j > 0 && ids[j] == ids[0]) continue;  // a repeated face counts once
    double u[3], w[3];
    for (int k = 0; k < 3; ++k) { u[k] = t[3 + k] - t[k]; w[k] = t[6 + k] - t[k]; }
    s.normal[0] += u[1] * w[2] - u[2] * w[1];
    s.normal[1] += u[2] * w[0] - u[0] * w[2];
    s.normal[2] += u[0] * w[1] - u[1] * w[0];
  }
  return s;
}

// Orthonormal axes of an oriented box: the mean normal, then the longest box axis made
// perpendicular to it, then their cross product. False if the normal vanishes.
inline bool box_axes(const Summary& s, float* axes) {
  double n[3] = {s.normal[0], s.normal[1], s.normal[2]};
  double length = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
  if (!(length > 0)) return false;
  for (int k = 0; k < 3; ++k) n[k] /= length;
  int order[3] = {0, 1, 2};
  std::sort(order, order + 3, [&](int a, int b) { return s.hi[a] - s.lo[a] > s.hi[b] - s.lo[b]; });
  double u[3];
  for (int attempt = 0; attempt < 3; ++attempt) {  // the longest axis not parallel to the normal
    for (int k = 0; k < 3; ++k) u[k] = (k == order[attempt]) - n[order[attempt]] * n[k];
    length = std::sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2]);
    if (length > 0.1) break;
  }
  for (int k = 0; k < 3; ++k) u[k] /= length;
  double w[3] = {n[1] * u[2] - n[2] * u[1], n[2] * u[0] - n[0] * u[2], n[0] * u[1] - n[1] * u[0]};
  for (int k = 0; k < 3; ++k) { axes[k] = float(n[k]); axes[3 + k] = float(u[k]); axes[6 + k] = float(w[k]); }
  return true;
}

// Set child slot c of node n to the bounds of the faces in tri[first .. end) (slots of 3 vertices).
inline void set_child_bounds(Node& n, int c, const Summary& s, const float* tri, int64_t first, int64_t end,
                             float margin) {
  for (int k = 0; k < 3; ++k) { n.lo[k][c] = s.lo[k]; n.hi[k][c] = s.hi[k]; }
  float axes[9];
  if (!box_axes(s, axes)) return;  // no oriented box: infinite half extents (set by the caller)
  float lo[3] = {kInf, kInf, kInf}, hi[3] = {-kInf, -kInf, -kInf};
  for (int64_t i = 3 * first; i < 3 * end; ++i) {
    const float* p = tri + 3 * i;
    for (int a = 0; a < 3; ++a) {
      float x = axes[3 * a] * p[0] + axes[3 * a + 1] * p[1] + axes[3 * a + 2] * p[2];
      lo[a] = std::min(lo[a], x); hi[a] = std::max(hi[a], x);
    }
  }
  for (int k = 0; k < 9; ++k) n.axis[k][c] = axes[k];
  for (int a = 0; a < 3; ++a) {
    n.centre[a][c] = 0.5f * (lo[a] + hi[a]);
    n.half[a][c] = 0.5f * (hi[a] - lo[a]) + margin;
  }
}

}  // namespace detail

// Topology from one pose of the mesh: vertices [V, 3] float32, faces [F, 3] int64 (F > 0).
inline Tree build_tree(const float* vertices, const int64_t* faces, int num_faces) {
  Tree tree;
  tree.num_faces = num_faces;
  std::vector<float> centre(3 * num_faces);
  for (int f = 0; f < num_faces; ++f)
    for (int k = 0; k < 3; ++k)
      centre[3 * f + k] = (vertices[3 * faces[3 * f] + k] + vertices[3 * faces[3 * f + 1] + k] +
                           vertices[3 * faces[3 * f + 2] + k]) / 3.f;
  std::vector<int32_t> order(num_faces);
  for (int f = 0; f < num_faces; ++f) order[f] = f;
  if (num_faces <= kLanes) {  // a root whose only child is the one leaf
    tree.child.assign(kWidth, -1);
    tree.child[0] = 0;
    tree.leaf_mask = {1u};
    tree.first_leaf = {0};
    tree.end_leaf = {1};
  } else {
    detail::build_node(tree, order, centre, 0, num_faces);
  }
  int leaves = (num_faces + kLanes - 1) / kLanes;
  tree.order.resize(leaves * kLanes);
  for (int i = 0; i < leaves; ++i)
    for (int j = 0; j < kLanes; ++j) {
      int slot = i * kLanes + j;
      tree.order[slot] = order[slot < num_faces ? slot : i * kLanes];  // a short leaf repeats its first face
    }
  return tree;
}

// The tree's bounds and face constants for one posed mesh: vertices [V, 3] float32, faces [F, 3] int64.
inline Mesh refit(const Tree& tree, const float* vertices, int64_t num_vertices, const int64_t* faces) {
  Mesh mesh;
  for (int64_t i = 0; i < 3 * num_vertices; ++i) mesh.scale = std::max(mesh.scale, std::fabs(vertices[i]));
  const float margin = kBoxMargin * kEps * mesh.scale;
  const int leaves = tree.num_leaves();
  std::vector<float> tri(9 * static_cast<size_t>(leaves) * kLanes);  // each slot's three vertices
  for (size_t s = 0; s < tree.order.size(); ++s)
    for (int v = 0; v < 3; ++v)
      for (int k = 0; k < 3; ++k) tri[9 * s + 3 * v + k] = vertices[3 * faces[3 * tree.order[s] + v] + k];
  mesh.leaves.resize(leaves);
  std::vector<detail::Summary> leaf(leaves);
  for (int i = 0; i < leaves; ++i) {
    const float* t = &tri[9 * static_cast<size_t>(i) * kLanes];
    for (int j = 0; j < kLanes; ++j)
      detail::set_lane(mesh.leaves[i], j, t + 9 * j, t + 9 * j + 3, t + 9 * j + 6, tree.order[i * kLanes + j]);
    leaf[i] = detail::leaf_summary(t, &tree.order[i * kLanes]);
  }
  mesh.nodes.resize(tree.num_nodes());
  for (int index = 0; index < tree.num_nodes(); ++index) {
    Node& n = mesh.nodes[index];
    n.leaf_mask = tree.leaf_mask[index];
    for (int c = 0; c < kWidth; ++c) {
      for (int k = 0; k < 3; ++k) { n.lo[k][c] = kInf; n.hi[k][c] = -kInf; n.centre[k][c] = 0.f; n.half[k][c] = kInf; }
      for (int k = 0; k < 9; ++k) n.axis[k][c] = 0.f;
      const int child = tree.child[index * kWidth + c];
      n.child[c] = std::max(child, 0);
      if (child < 0) continue;
      const bool is_leaf = n.leaf_mask >> c & 1u;
      const int first = is_leaf ? child : tree.first_leaf[child], end = is_leaf ? child + 1 : tree.end_leaf[child];
      detail::Summary s;
      for (int i = first; i < end; ++i) s.add(leaf[i]);
      detail::set_child_bounds(n, c, s, tri.data(), int64_t(first) * kLanes, int64_t(end) * kLanes, margin);
    }
  }
  return mesh;
}

}  // namespace nearest_triangle
