// Exact nearest-triangle search on the CPU (system.md §2.5 step 1): a bounding-volume hierarchy per
// posed mesh (8 children per node, 8 faces per leaf, both evaluated with SIMD), traversed nearest
// child first with pruning by the best squared distance so far, each point warm-started with the
// leaf of the previous point's nearest face (consecutive samples of a ray are close).
// Reference: training/deformation/point_to_mesh.py (this is its 'cpp' accelerator).
//
// Result per point: the face minimising (squared distance, face id) lexicographically among all
// faces, or -1 when none is closer than max_distance. Boxes are pruned against the bound
// (min(sqrt(best), max_distance) + tol)^2, tol = 16 float eps x the coordinate scale, so no face
// whose computed distance could tie or beat the best is skipped; the answer therefore does not
// depend on the point order, the warm starts or the number of threads.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

constexpr int kLanes = 8;            // faces per leaf, evaluated together (SIMD)
constexpr int kRows = 16;            // per-face constants in a leaf, see Leaf
constexpr int kWidth = 8;            // children per node (three binary median splits)
constexpr int kStackSize = 256;      // traversal stack: (kWidth - 1) per level of a shallow tree
constexpr int kChunk = 64;           // consecutive points per parallel work item (warm-start chain)
constexpr float kInf = std::numeric_limits<float>::infinity();

// A node of the 8-wide tree: its children's boxes (structure of arrays) and what they are.
// An unused slot has an inverted box (lo = inf, hi = -inf), whose distance is inf.
struct alignas(64) Node {
  float lo[3][kWidth];
  float hi[3][kWidth];
  int32_t child[kWidth];  // node index or leaf index
  int32_t leaf[kWidth];   // 1 if the child is a leaf
};

// kLanes faces, structure of arrays. Rows: a (3), ab = b - a (3), ac = c - a (3), |ab|^2, |ac|^2,
// ab.ac, 1/|ab|^2, 1/|ac|^2, 1/|bc|^2 (0 for a zero-length edge), 1/area2 with area2 =
// |ab|^2 |ac|^2 - (ab.ac)^2 (0 for a degenerate face: only its edges count). Short leaves repeat a face.
struct alignas(64) Leaf {
  float row[kRows][kLanes];
  int64_t id[kLanes];
};

// One posed mesh ready for queries.
struct Mesh {
  std::vector<Node> nodes;
  std::vector<Leaf> leaves;
  float scale = 0.f;  // largest absolute vertex coordinate
};

// Axis-aligned box of a range of faces (by position in `order`) from per-face boxes.
void range_box(const std::vector<float>& box, const std::vector<int32_t>& order, int begin, int end,
               float* lo, float* hi) {
  for (int k = 0; k < 3; ++k) { lo[k] = kInf; hi[k] = -kInf; }
  for (int i = begin; i < end; ++i) {
    const float* b = &box[6 * order[i]];
    for (int k = 0; k < 3; ++k) { lo[k] = std::min(lo[k], b[k]); hi[k] = std::max(hi[k], b[3 + k]); }
  }
}

// Median split of faces order[begin:end] along their longest centroid extent, rounded to whole
// leaves (leaf i holds order[8 i : 8 i + 8]) -> the split position.
int split(std::vector<int32_t>& order, const std::vector<float>& centre, int begin, int end) {
  float lo[3] = {kInf, kInf, kInf}, hi[3] = {-kInf, -kInf, -kInf};
  for (int i = begin; i < end; ++i)
    for (int k = 0; k < 3; ++k) {
      lo[k] = std::min(lo[k], centre[3 * order[i] + k]);
      hi[k] = std::max(hi[k], centre[3 * order[i] + k]);
    }
  int axis = 0;
  for (int k = 1; k < 3; ++k) if (hi[k] - lo[k] > hi[axis] - lo[axis]) axis = k;
  int leaves = (end - begin + kLanes - 1) / kLanes;
  int mid = begin + (leaves + 1) / 2 * kLanes;
  std::nth_element(order.begin() + begin, order.begin() + mid, order.begin() + end, [&](int32_t a, int32_t b) {
    float ca = centre[3 * a + axis], cb = centre[3 * b + axis];
    return ca < cb || (ca == cb && a < b);
  });
  return mid;
}

// Up to 2^levels child ranges of order[begin:end] by repeated median splits; a leaf is not split.
void partition(std::vector<int32_t>& order, const std::vector<float>& centre, int begin, int end, int levels,
               std::vector<int>& bounds) {
  if (levels == 0 || end - begin <= kLanes) {
    bounds.push_back(end);
    return;
  }
  int mid = split(order, centre, begin, end);
  partition(order, centre, begin, mid, levels - 1, bounds);
  partition(order, centre, mid, end, levels - 1, bounds);
}

// Node over faces order[begin:end] (more than one leaf's worth), its inner children built recursively.
int build_node(std::vector<Node>& nodes, std::vector<int32_t>& order, const std::vector<float>& box,
               const std::vector<float>& centre, int begin, int end) {
  std::vector<int> bounds = {begin};
  partition(order, centre, begin, end, 3, bounds);
  int index = static_cast<int>(nodes.size());
  nodes.emplace_back();
  for (int c = 0; c < kWidth; ++c) {
    for (int k = 0; k < 3; ++k) { nodes[index].lo[k][c] = kInf; nodes[index].hi[k][c] = -kInf; }
    nodes[index].child[c] = nodes[index].leaf[c] = 0;
  }
  for (size_t c = 0; c + 1 < bounds.size(); ++c) {
    int b = bounds[c], e = bounds[c + 1];
    float lo[3], hi[3];
    range_box(box, order, b, e, lo, hi);
    for (int k = 0; k < 3; ++k) { nodes[index].lo[k][c] = lo[k]; nodes[index].hi[k][c] = hi[k]; }
    bool leaf = e - b <= kLanes;
    int child = leaf ? b / kLanes : build_node(nodes, order, box, centre, b, e);
    nodes[index].child[c] = child;
    nodes[index].leaf[c] = leaf;
  }
  return index;
}

// Fill lane j of a leaf with face vertices a, b, c and face id.
void set_lane(Leaf& leaf, int j, const float* a, const float* b, const float* c, int64_t id) {
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

// Search structure of one posed mesh: vertices [V, 3] float32, faces [F, 3] int64.
Mesh build_mesh(const float* vertices, int64_t num_vertices, const int64_t* faces, int num_faces) {
  Mesh mesh;
  for (int64_t i = 0; i < 3 * num_vertices; ++i) mesh.scale = std::max(mesh.scale, std::fabs(vertices[i]));
  std::vector<float> box(6 * num_faces), centre(3 * num_faces);
  for (int f = 0; f < num_faces; ++f)
    for (int k = 0; k < 3; ++k) {
      float x0 = vertices[3 * faces[3 * f] + k], x1 = vertices[3 * faces[3 * f + 1] + k];
      float x2 = vertices[3 * faces[3 * f + 2] + k];
      box[6 * f + k] = std::min({x0, x1, x2});
      box[6 * f + 3 + k] = std::max({x0, x1, x2});
      centre[3 * f + k] = (x0 + x1 + x2) / 3.f;
    }
  std::vector<int32_t> order(num_faces);
  for (int f = 0; f < num_faces; ++f) order[f] = f;
  if (num_faces <= kLanes) {  // a root whose only child is the one leaf
    Node root;
    for (int c = 0; c < kWidth; ++c) {
      for (int k = 0; k < 3; ++k) { root.lo[k][c] = kInf; root.hi[k][c] = -kInf; }
      root.child[c] = 0;
      root.leaf[c] = 1;
    }
    float lo[3], hi[3];
    range_box(box, order, 0, num_faces, lo, hi);
    for (int k = 0; k < 3; ++k) { root.lo[k][0] = lo[k]; root.hi[k][0] = hi[k]; }
    mesh.nodes.push_back(root);
  } else {
    build_node(mesh.nodes, order, box, centre, 0, num_faces);
  }
  mesh.leaves.resize((num_faces + kLanes - 1) / kLanes);
  for (size_t i = 0; i < mesh.leaves.size(); ++i)
    for (int j = 0; j < kLanes; ++j) {
      int slot = std::min<int>(static_cast<int>(i) * kLanes + j, num_faces - 1);
      slot = slot / kLanes == static_cast<int>(i) ? slot : static_cast<int>(i) * kLanes;  // repeat a face
      const int64_t* f = faces + 3 * order[slot];
      set_lane(mesh.leaves[i], j, vertices + 3 * f[0], vertices + 3 * f[1], vertices + 3 * f[2], order[slot]);
    }
  return mesh;
}

// Squared distances from p to the kLanes faces of a leaf (branch-free, vectorised). The closest
// point is in the face interior when its barycentric coordinates (v, w) and 1 - v - w are all
// non-negative (Voronoi region of the face), otherwise on the nearest of the three edges; the
// edges are also taken in the first case, which only matters for slivers (rounded barycentrics).
// Not inlined, so that every evaluation of a face rounds the same way (results are order-independent).
__attribute__((noinline)) void leaf_sq_distances(const Leaf& leaf, const float* p, float* out) {
  const float(*r)[kLanes] = leaf.row;
#pragma omp simd
  for (int j = 0; j < kLanes; ++j) {
    float ax = p[0] - r[0][j], ay = p[1] - r[1][j], az = p[2] - r[2][j];
    float bx = r[3][j], by = r[4][j], bz = r[5][j], cx = r[6][j], cy = r[7][j], cz = r[8][j];
    float d1 = ax * bx + ay * by + az * bz, d2 = ax * cx + ay * cy + az * cz;
    float v = (r[10][j] * d1 - r[11][j] * d2) * r[15][j], w = (r[9][j] * d2 - r[11][j] * d1) * r[15][j];
    float fx = ax - v * bx - w * cx, fy = ay - v * by - w * cy, fz = az - v * bz - w * cz;
    float face = fx * fx + fy * fy + fz * fz;
    float t = std::min(std::max(d1 * r[12][j], 0.f), 1.f);
    float ex = ax - t * bx, ey = ay - t * by, ez = az - t * bz;
    float edge = ex * ex + ey * ey + ez * ez;
    t = std::min(std::max(d2 * r[13][j], 0.f), 1.f);
    ex = ax - t * cx; ey = ay - t * cy; ez = az - t * cz;
    edge = std::min(edge, ex * ex + ey * ey + ez * ez);
    float px = ax - bx, py = ay - by, pz = az - bz, qx = cx - bx, qy = cy - by, qz = cz - bz;
    t = std::min(std::max((px * qx + py * qy + pz * qz) * r[14][j], 0.f), 1.f);
    ex = px - t * qx; ey = py - t * qy; ez = pz - t * qz;
    edge = std::min(edge, ex * ex + ey * ey + ez * ez);
    bool inside = r[15][j] > 0 && v >= 0 && w >= 0 && v + w <= 1;
    out[j] = inside ? std::min(face, edge) : edge;
  }
}

// Squared distances from p to the kWidth child boxes of a node (vectorised; inf for unused slots).
inline void box_sq_distances(const Node& n, const float* p, float* out) {
#pragma omp simd
  for (int c = 0; c < kWidth; ++c) {
    float ex = std::max(std::max(n.lo[0][c] - p[0], p[0] - n.hi[0][c]), 0.f);
    float ey = std::max(std::max(n.lo[1][c] - p[1], p[1] - n.hi[1][c]), 0.f);
    float ez = std::max(std::max(n.lo[2][c] - p[2], p[2] - n.hi[2][c]), 0.f);
    out[c] = ex * ex + ey * ey + ez * ez;
  }
}

// Best face so far of one query and the box-pruning bound that goes with it.
struct Query {
  float p[3];
  float cap, tol;     // max_distance and the rounding margin
  float best = kInf;
  int64_t face = -1;
  int32_t leaf = -1;  // leaf holding `face`
  float limit;

  // Evaluate the faces of leaf i; keep the smallest (distance, face id) and tighten the bound.
  void visit(const Mesh& m, int32_t i) {
    alignas(64) float d[kLanes];
    leaf_sq_distances(m.leaves[i], p, d);
    const int64_t* id = m.leaves[i].id;
    bool better = false;
    for (int j = 0; j < kLanes; ++j) {
      if (d[j] < best || (d[j] == best && id[j] < face)) {
        best = d[j];
        face = id[j];
        better = true;
      }
    }
    if (better) {
      leaf = i;
      float radius = std::min(std::sqrt(best), cap) + tol;
      limit = radius * radius;
    }
  }
};

// Nearest-child-first traversal: children within the bound in order of distance, leaves
// evaluated at once, inner nodes deferred on a stack (nearest on top) with their lower bounds.
void traverse(const Mesh& m, Query& q) {
  int32_t stack_node[kStackSize];
  float stack_bound[kStackSize];
  int top = 0;
  stack_node[top] = 0;
  stack_bound[top++] = 0.f;
  while (top > 0) {
    --top;
    if (!(stack_bound[top] <= q.limit)) continue;
    const Node& n = m.nodes[stack_node[top]];
    alignas(64) float d[kWidth];
    box_sq_distances(n, q.p, d);
    int hits[kWidth], count = 0;
    for (int c = 0; c < kWidth; ++c) {
      if (!(d[c] <= q.limit)) continue;
      int i = count++;
      for (; i > 0 && d[hits[i - 1]] > d[c]; --i) hits[i] = hits[i - 1];
      hits[i] = c;
    }
    for (int i = 0; i < count; ++i)
      if (n.leaf[hits[i]] && d[hits[i]] <= q.limit) q.visit(m, n.child[hits[i]]);
    for (int i = count - 1; i >= 0; --i)
      if (!n.leaf[hits[i]]) {
        stack_node[top] = n.child[hits[i]];
        stack_bound[top++] = d[hits[i]];
      }
  }
}

// Search points [count, 3] of one mesh, each warm-started with the previous point's nearest leaf.
void search_run(const Mesh& m, const float* points, int64_t count, float cap, int64_t* face, float* sq) {
  int32_t warm = -1;
  for (int64_t i = 0; i < count; ++i) {
    Query q;
    const float* p = points + 3 * i;
    q.p[0] = p[0]; q.p[1] = p[1]; q.p[2] = p[2];
    float scale = std::max({m.scale, std::fabs(p[0]), std::fabs(p[1]), std::fabs(p[2])});
    q.cap = cap;
    q.tol = 16.f * std::numeric_limits<float>::epsilon() * scale;
    q.limit = (cap + q.tol) * (cap + q.tol);
    if (warm >= 0) q.visit(m, warm);
    traverse(m, q);
    bool inside = q.best < cap * cap;
    face[i] = inside ? q.face : -1;
    sq[i] = inside ? q.best : kInf;
    warm = inside ? q.leaf : -1;
  }
}

}  // namespace

// points [B, P, 3] float32, vertices [B, V, 3] float32, faces [F, 3] int64 -> (face [B, P] int64, sq [B, P]).
std::vector<torch::Tensor> nearest_triangles(torch::Tensor points, torch::Tensor vertices, torch::Tensor faces,
                                             double max_distance, int64_t num_threads) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3 && points.scalar_type() == torch::kFloat32,
              "points must be float32 [B, P, 3]");
  TORCH_CHECK(vertices.dim() == 3 && vertices.size(2) == 3 && vertices.scalar_type() == torch::kFloat32 &&
              vertices.size(0) == points.size(0), "vertices must be float32 [B, V, 3]");
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3 && faces.scalar_type() == torch::kInt64 && faces.size(0) > 0,
              "faces must be int64 [F, 3]");
  points = points.contiguous();
  vertices = vertices.contiguous();
  faces = faces.contiguous();
  const int64_t batch = points.size(0), num_points = points.size(1), num_vertices = vertices.size(1);
  const int num_faces = static_cast<int>(faces.size(0));
  auto face = torch::empty({batch, num_points}, faces.options());
  auto sq = torch::empty({batch, num_points}, points.options());
  const float* p = points.data_ptr<float>();
  const float* v = vertices.data_ptr<float>();
  const int64_t* f = faces.data_ptr<int64_t>();
  int64_t* face_out = face.data_ptr<int64_t>();
  float* sq_out = sq.data_ptr<float>();
  const float cap = static_cast<float>(max_distance);
  {
    pybind11::gil_scoped_release release;
    std::vector<Mesh> meshes(batch);
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads)
    for (int64_t b = 0; b < batch; ++b) meshes[b] = build_mesh(v + 3 * num_vertices * b, num_vertices, f, num_faces);
    const int64_t chunks = (num_points + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(dynamic, 16) num_threads(num_threads)
    for (int64_t item = 0; item < batch * chunks; ++item) {
      int64_t b = item / chunks, start = (item % chunks) * kChunk;
      int64_t count = std::min<int64_t>(kChunk, num_points - start);
      int64_t offset = b * num_points + start;
      search_run(meshes[b], p + 3 * offset, count, cap, face_out + offset, sq_out + offset);
    }
  }
  return {face, sq};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("nearest_triangles", &nearest_triangles, "Exact nearest triangle of every point (BVH search)");
}
