// Host harness of the nearest-triangle search headers (training/deformation/csrc/bvh.h,
// bvh_search.h) without torch: tests build it with and without -DNEAREST_TRIANGLE_PORTABLE to run
// the portable path (the one non-AVX2 CPUs compile) next to the vectorised one.
#include "bvh.h"
#include "bvh_search.h"

namespace nt = nearest_triangle;

// Tree from tree_vertices [V, 3], refitted to vertices [V, 3]; nearest face (-1 beyond cap) and
// squared distance of points [P, 3], searched in runs of `run` consecutive points.
extern "C" void nearest_host(const float* tree_vertices, const float* vertices, int64_t num_vertices,
                             const int64_t* faces, int num_faces, const float* points, int64_t num_points,
                             float cap, int64_t run, int32_t* face, float* sq) {
  const nt::Tree tree = nt::build_tree(tree_vertices, faces, num_faces);
  const nt::Mesh mesh = nt::refit(tree, vertices, num_vertices, faces);
  for (int64_t start = 0; start < num_points; start += run) {
    const int64_t count = num_points - start < run ? num_points - start : run;
    nt::search_run(mesh, points + 3 * start, count, cap, face + start, sq + start);
  }
}

// 1 if the harness was compiled with the AVX2 path, else 0.
extern "C" int nearest_host_vectorised() {
#ifdef NEAREST_TRIANGLE_AVX2
  return 1;
#else
  return 0;
#endif
}
