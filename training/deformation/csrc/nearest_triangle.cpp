// Torch bindings of the CPU nearest-triangle search (bvh.h, bvh_search.h) and of the fused warp
// (system.md §2.5): search, then the frame transfer x_c = x + A_f x + t_f of the nearest face f
// within max_distance, in one pass over the points, with its backward.
// Reference: training/deformation/point_to_mesh.py and warp.py (this is their 'cpp' accelerator).
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "bvh.h"
#include "bvh_search.h"

namespace nt = nearest_triangle;

namespace {

constexpr float kFarAway = 1e6f;    // stand-in position of non-finite query points (beyond any cut-off)
constexpr int64_t kChunk = 64;     // consecutive points per parallel work item (warm-start chain)
constexpr int kTransform = 12;     // per face: A row-major (9), then t (3)

// Refitted trees of a batch of posed meshes sharing one topology.
struct PosedMeshes {
  std::vector<nt::Mesh> meshes;
  int64_t num_faces = 0;
};

// Faces [F, 3] int64, F > 0.
void check_faces(const torch::Tensor& faces) {
  TORCH_CHECK(faces.dim() == 2 && faces.size(1) == 3 && faces.scalar_type() == torch::kInt64 && faces.size(0) > 0 &&
              faces.is_contiguous(), "faces must be contiguous int64 [F, 3] with F > 0");
}

// Vertices [V, 3] (dims 2) or [B, V, 3] (dims 3), float32, indexed in range by faces.
void check_vertices(const torch::Tensor& vertices, int64_t dims, const torch::Tensor& faces) {
  TORCH_CHECK(vertices.dim() == dims && vertices.size(-1) == 3 && vertices.scalar_type() == torch::kFloat32 &&
              vertices.is_contiguous(), "vertices must be contiguous float32 [", dims == 3 ? "B, " : "", "V, 3]");
  TORCH_CHECK(faces.min().item<int64_t>() >= 0 && faces.max().item<int64_t>() < vertices.size(-2),
              "faces index vertices out of range");
}

// Topology from one pose: vertices [V, 3] float32, faces [F, 3] int64.
std::shared_ptr<nt::Tree> build_tree(torch::Tensor vertices, torch::Tensor faces) {
  check_faces(faces);
  check_vertices(vertices, 2, faces);
  pybind11::gil_scoped_release release;
  return std::make_shared<nt::Tree>(nt::build_tree(vertices.data_ptr<float>(), faces.data_ptr<int64_t>(),
                                                   static_cast<int>(faces.size(0))));
}

// The tree refitted to posed meshes vertices [B, V, 3] float32 (faces as given to build_tree).
std::shared_ptr<PosedMeshes> refit(const nt::Tree& tree, torch::Tensor vertices, torch::Tensor faces,
                                   int64_t num_threads) {
  check_faces(faces);
  check_vertices(vertices, 3, faces);
  TORCH_CHECK(faces.size(0) == tree.num_faces, "faces: ", faces.size(0), " faces, the tree has ", tree.num_faces);
  auto out = std::make_shared<PosedMeshes>();
  out->num_faces = faces.size(0);
  const int64_t batch = vertices.size(0), num_vertices = vertices.size(1);
  out->meshes.resize(batch);
  const float* v = vertices.data_ptr<float>();
  const int64_t* f = faces.data_ptr<int64_t>();
  pybind11::gil_scoped_release release;
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads)
  for (int64_t b = 0; b < batch; ++b) out->meshes[b] = nt::refit(tree, v + 3 * num_vertices * b, num_vertices, f);
  return out;
}

// Search each run of kChunk points (in float32) and hand (offset, count, face, sq) to `use`, in parallel.
template <typename scalar_t, typename Use>
void search_chunks(const PosedMeshes& posed, const scalar_t* points, int64_t num_points, float cap,
                   int64_t num_threads, Use use) {
  const int64_t batch = static_cast<int64_t>(posed.meshes.size());
  const int64_t chunks = (num_points + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(dynamic, 16) num_threads(num_threads)
  for (int64_t item = 0; item < batch * chunks; ++item) {
    const int64_t b = item / chunks, start = (item % chunks) * kChunk;
    const int64_t count = std::min(kChunk, num_points - start), offset = b * num_points + start;
    float x[3 * kChunk], sq[kChunk];
    int32_t face[kChunk];
    for (int64_t i = 0; i < 3 * count; ++i) x[i] = static_cast<float>(points[3 * offset + i]);
    for (int64_t i = 0; i < count; ++i) {     // a NaN/inf point is far from every face: no face, left unchanged
      if (!(std::isfinite(x[3 * i]) && std::isfinite(x[3 * i + 1]) && std::isfinite(x[3 * i + 2]))) {
        x[3 * i] = x[3 * i + 1] = x[3 * i + 2] = kFarAway;
      }
    }
    nt::search_run(posed.meshes[b], x, count, cap, face, sq);
    use(b, offset, count, face, sq);
  }
}

// Points [B, P, 3], one batch element per posed mesh.
void check_points(const torch::Tensor& points, const PosedMeshes& posed) {
  TORCH_CHECK(points.dim() == 3 && points.size(2) == 3 && points.is_contiguous() &&
              points.size(0) == static_cast<int64_t>(posed.meshes.size()),
              "points must be contiguous [B, P, 3] with B = ", posed.meshes.size(), " (the posed meshes)");
}

// points [B, P, 3] float32 -> (face [B, P] int64, -1 beyond max_distance; sq [B, P] float32, inf beyond).
std::vector<torch::Tensor> search(const PosedMeshes& posed, torch::Tensor points, double max_distance,
                                  int64_t num_threads) {
  check_points(points, posed);
  TORCH_CHECK(points.scalar_type() == torch::kFloat32, "points must be float32");
  const int64_t batch = points.size(0), num_points = points.size(1);
  auto face = torch::empty({batch, num_points}, points.options().dtype(torch::kInt64));
  auto sq = torch::empty({batch, num_points}, points.options());
  int64_t* face_out = face.data_ptr<int64_t>();
  float* sq_out = sq.data_ptr<float>();
  const float* p = points.data_ptr<float>();
  pybind11::gil_scoped_release release;
  search_chunks(posed, p, num_points, static_cast<float>(max_distance), num_threads,
                [&](int64_t, int64_t offset, int64_t count, const int32_t* f, const float* s) {
                  for (int64_t i = 0; i < count; ++i) { face_out[offset + i] = f[i]; sq_out[offset + i] = s[i]; }
                });
  return {face, sq};
}

// Standalone search, a tree per posed mesh: points [B, P, 3], vertices [B, V, 3] float32, faces [F, 3].
std::vector<torch::Tensor> nearest_triangles(torch::Tensor points, torch::Tensor vertices, torch::Tensor faces,
                                             double max_distance, int64_t num_threads) {
  check_faces(faces);
  check_vertices(vertices, 3, faces);
  PosedMeshes posed;
  posed.num_faces = faces.size(0);
  posed.meshes.resize(vertices.size(0));
  {
    const int64_t batch = vertices.size(0), num_vertices = vertices.size(1);
    const int num_faces = static_cast<int>(faces.size(0));
    pybind11::gil_scoped_release release;
    const float* v = vertices.data_ptr<float>();
    const int64_t* f = faces.data_ptr<int64_t>();
#pragma omp parallel for schedule(dynamic, 1) num_threads(num_threads)
    for (int64_t b = 0; b < batch; ++b) {
      const nt::Tree tree = nt::build_tree(v + 3 * num_vertices * b, f, num_faces);
      posed.meshes[b] = nt::refit(tree, v + 3 * num_vertices * b, num_vertices, f);
    }
  }
  return search(posed, points, max_distance, num_threads);
}

// Transforms [B, F, 12] of the posed meshes' faces, in the points' dtype.
void check_transforms(const torch::Tensor& transforms, const torch::Tensor& points, const PosedMeshes& posed) {
  TORCH_CHECK(transforms.dim() == 3 && transforms.size(0) == points.size(0) && transforms.size(1) == posed.num_faces &&
              transforms.size(2) == kTransform && transforms.is_contiguous() &&
              transforms.scalar_type() == points.scalar_type(),
              "transforms must be contiguous [B, F, 12] in the points' dtype, F = ", posed.num_faces);
}

// y = x + A x + t for one point, with a = (A row-major, t) of its face; y = x without a face.
template <typename scalar_t>
inline void transfer_point(const scalar_t* x, const scalar_t* a, scalar_t* y) {
  if (a == nullptr) {
    y[0] = x[0]; y[1] = x[1]; y[2] = x[2];
    return;
  }
  for (int k = 0; k < 3; ++k) y[k] = x[k] + ((a[3 * k] * x[0] + a[3 * k + 1] * x[1] + a[3 * k + 2] * x[2]) + a[9 + k]);
}

// Fused warp: points [B, P, 3] (float32 or float64), transforms [B, F, 12] (same dtype) ->
// (warped [B, P, 3]: x + A_f x + t_f where the nearest face f is within max_distance, else x;
//  face [B, P] int64, -1 beyond max_distance). The search computes in float32.
std::vector<torch::Tensor> warp(const PosedMeshes& posed, torch::Tensor points, torch::Tensor transforms,
                                double max_distance, int64_t num_threads) {
  check_points(points, posed);
  check_transforms(transforms, points, posed);
  const int64_t batch = points.size(0), num_points = points.size(1), num_faces = posed.num_faces;
  auto warped = torch::empty_like(points);
  auto face = torch::empty({batch, num_points}, points.options().dtype(torch::kInt64));
  int64_t* face_out = face.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "warp", [&] {
    const scalar_t* p = points.data_ptr<scalar_t>();
    const scalar_t* table = transforms.data_ptr<scalar_t>();
    scalar_t* out = warped.data_ptr<scalar_t>();
    pybind11::gil_scoped_release release;
    search_chunks(posed, p, num_points, static_cast<float>(max_distance), num_threads,
                  [&](int64_t b, int64_t offset, int64_t count, const int32_t* f, const float*) {
                    for (int64_t i = 0; i < count; ++i) {
                      face_out[offset + i] = f[i];
                      const scalar_t* a = f[i] < 0 ? nullptr : table + kTransform * (b * num_faces + f[i]);
                      transfer_point(p + 3 * (offset + i), a, out + 3 * (offset + i));
                    }
                  });
  });
  return {warped, face};
}

// Backward of warp for one dtype (see warp_backward): one thread per batch element, so that each
// element's per-face sums are written by one thread only.
template <typename scalar_t>
void warp_backward_kernel(const scalar_t* g, const scalar_t* p, const int64_t* f, const scalar_t* table,
                          int64_t batch, int64_t num_points, int64_t num_faces, scalar_t* gt, scalar_t* gp,
                          int64_t num_threads) {
#pragma omp parallel for schedule(static, 1) num_threads(num_threads)
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = b * num_points; i < (b + 1) * num_points; ++i) {
      const scalar_t* gi = g + 3 * i;
      if (f[i] < 0) {
        if (gp) std::memcpy(gp + 3 * i, gi, 3 * sizeof(scalar_t));
        continue;
      }
      const scalar_t* x = p + 3 * i;
      const int64_t row = kTransform * (b * num_faces + f[i]);
      for (int k = 0; k < 3; ++k) {
        for (int j = 0; j < 3; ++j) gt[row + 3 * k + j] += gi[k] * x[j];
        gt[row + 9 + k] += gi[k];
      }
      if (gp)
        for (int j = 0; j < 3; ++j)
          gp[3 * i + j] = gi[j] + (table[row + j] * gi[0] + table[row + 3 + j] * gi[1] + table[row + 6 + j] * gi[2]);
    }
  }
}

// Backward of warp: grad [B, P, 3], points, face, transforms as in warp -> (grad_points [B, P, 3]
// (undefined unless need_points): grad + A_f^T grad where warped; grad_transforms [B, F, 12]:
// per face, the sum over its points of (grad_i x_j for A_ij, grad_i for t_i)).
std::vector<torch::Tensor> warp_backward(torch::Tensor grad, torch::Tensor points, torch::Tensor face,
                                         torch::Tensor transforms, bool need_points, int64_t num_threads) {
  TORCH_CHECK(points.dim() == 3 && grad.sizes() == points.sizes() && grad.scalar_type() == points.scalar_type() &&
              grad.is_contiguous() && points.is_contiguous(),
              "grad and points must be contiguous [B, P, 3], one dtype");
  TORCH_CHECK(face.dim() == 2 && face.size(0) == points.size(0) && face.size(1) == points.size(1) &&
              face.scalar_type() == torch::kInt64 && face.is_contiguous(), "face must be contiguous int64 [B, P]");
  TORCH_CHECK(transforms.dim() == 3 && transforms.size(0) == points.size(0) && transforms.size(2) == kTransform &&
              transforms.scalar_type() == points.scalar_type() && transforms.is_contiguous(),
              "transforms must be contiguous [B, F, 12] in the points' dtype");
  auto grad_transforms = torch::zeros_like(transforms);
  torch::Tensor grad_points = need_points ? torch::empty_like(points) : torch::Tensor();
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "warp_backward", [&] {
    pybind11::gil_scoped_release release;
    warp_backward_kernel<scalar_t>(grad.data_ptr<scalar_t>(), points.data_ptr<scalar_t>(), face.data_ptr<int64_t>(),
                                   transforms.data_ptr<scalar_t>(), points.size(0), points.size(1), transforms.size(1),
                                   grad_transforms.data_ptr<scalar_t>(),
                                   need_points ? grad_points.data_ptr<scalar_t>() : nullptr, num_threads);
  });
  return {grad_points, grad_transforms};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  pybind11::class_<nt::Tree, std::shared_ptr<nt::Tree>>(m, "Tree")
      .def_property_readonly("num_faces", [](const nt::Tree& t) { return t.num_faces; })
      .def_property_readonly("num_nodes", &nt::Tree::num_nodes)
      .def_property_readonly("num_leaves", &nt::Tree::num_leaves);
  pybind11::class_<PosedMeshes, std::shared_ptr<PosedMeshes>>(m, "PosedMeshes")
      .def_property_readonly("batch", [](const PosedMeshes& p) { return p.meshes.size(); });
  m.def("build_tree", &build_tree, "BVH topology of a mesh (one pose)");
  m.def("refit", &refit, "The topology refitted to a batch of posed meshes");
  m.def("search", &search, "Exact nearest triangle of every point (refitted meshes)");
  m.def("nearest_triangles", &nearest_triangles, "Exact nearest triangle of every point (a tree per mesh)");
  m.def("warp", &warp, "Nearest-triangle frame transfer of every point (system.md 2.5)");
  m.def("warp_backward", &warp_backward, "Gradients of warp w.r.t. the points and the per-face transforms");
}
