// Host-side harness for the CUDA tri-grid sampler: runs the kernels' work items
// (trigrid_forward_item / trigrid_backward_item of training/rendering/csrc/trigrid_sample.h) in a
// plain serial loop on the CPU, as the grid-stride loops of trigrid_sample_cuda.cu would, with a
// plain add in place of the atomics. Driven through ctypes by tests/test_trigrid_cpp.py.
#include "trigrid_sample.h"

namespace {

// The non-atomic add policy.
struct HostAdd {
  template <typename T>
  void operator()(T* grad_table, int64_t i, T value) const { grad_table[i] += value; }
};

// Operands of one call; float64 tensors, shapes as in TriGridArgs.
TriGridArgs<double> host_args(const double* table, const double* coords, int64_t n, int64_t p, int64_t c, int64_t h,
                              int64_t w, int64_t d) {
  TriGridArgs<double> a{table, coords, nullptr, nullptr, nullptr, n, p, c, h, w, d};
  return a;
}

}  // namespace

// features out [N, P, C] from table [N, 3, H, W, D, C] and coords [N, P, 3] (float64).
extern "C" void trigrid_forward_host(const double* table, const double* coords, double* out, int64_t n, int64_t p,
                                     int64_t c, int64_t h, int64_t w, int64_t d) {
  TriGridArgs<double> a = host_args(table, coords, n, p, c, h, w, d);
  a.out = out;
  for (int64_t i = 0; i < n * p * trigrid_groups(c); ++i) trigrid_forward_item(a, i);
}

// Adds d loss / d table into grad_table and d loss / d coords into grad_coords (both zeroed by the caller).
extern "C" void trigrid_backward_host(const double* table, const double* coords, const double* grad,
                                      double* grad_table, double* grad_coords, int64_t n, int64_t p, int64_t c,
                                      int64_t h, int64_t w, int64_t d) {
  TriGridArgs<double> a = host_args(table, coords, n, p, c, h, w, d);
  a.grad = grad;
  a.grad_table = grad_table;
  for (int64_t i = 0; i < n * p * kTriGridPlanes * trigrid_groups(c); ++i) {
    double gc[3];
    const int64_t point = trigrid_backward_item(a, i, gc, HostAdd());
    for (int axis = 0; axis < 3; ++axis) grad_coords[3 * point + axis] += gc[axis];
  }
}
