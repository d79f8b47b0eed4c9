// upfirdn2d element math: one output pixel of "insert up-1 zeros, pad (negative = crop), convolve
// with a 2-D FIR filter, keep every down-th pixel, scale by gain". Along one axis, with g the
// filter used as cross-correlation taps (g = f when flip_filter, else f reversed):
//   y[o] = gain * sum_k g[k] * xup[o * down + k - pad0],   xup[m] = x[m / up] if up | m else 0.
// Only the taps that land on a real input sample are visited (a polyphase loop), so the cost per
// output is about (fh / up_y) * (fw / up_x) multiply-adds.
#pragma once

#include "ops_common.h"

// Arguments of one upfirdn2d call; x and y are contiguous [planes, h, w] images (planes = N * C).
struct UpFirDn2dArgs {
  const void* x;  // [planes, in_h, in_w] of T
  const void* f;  // [filter_h, filter_w] of Scalar<T>::Acc
  void* y;        // [planes, out_h, out_w] of T
  int64_t planes, in_h, in_w, out_h, out_w;
  int up_x, up_y, down_x, down_y, pad_x0, pad_y0, filter_w, filter_h;
  bool flip_filter;
  double gain;
};

// The filter taps k in [first, last] (stepping by up) that read a real input sample.
struct UpFirDn2dTaps {
  int first, last;
  int64_t base;  // xup index read by tap 0: o * down - pad0
};

// Taps of output index `o` along one axis with `in_size` input samples and `taps` filter taps.
OPS_HD UpFirDn2dTaps upfirdn2d_taps(int64_t o, int up, int down, int pad0, int64_t in_size, int taps) {
  UpFirDn2dTaps t;
  t.base = o * down - pad0;
  const int64_t lo = t.base < 0 ? -t.base : 0;
  const int64_t hi_limit = in_size * up - 1 - t.base;
  const int64_t hi = hi_limit < taps - 1 ? hi_limit : taps - 1;
  const int64_t phase = (t.base + lo) % up;
  const int64_t first = lo + (phase == 0 ? 0 : up - phase);
  t.first = static_cast<int>(first < taps ? first : taps);  // clamped so that the casts are safe
  t.last = static_cast<int>(hi > -1 ? hi : -1);
  return t;
}

// Output element `i` (row-major over [planes, out_h, out_w]) in the accumulation type.
template <typename T>
OPS_HD typename Scalar<T>::Acc upfirdn2d_element(const UpFirDn2dArgs& p, int64_t i) {
  using A = typename Scalar<T>::Acc;
  const int64_t ox = i % p.out_w;
  const int64_t oy = (i / p.out_w) % p.out_h;
  const int64_t plane = i / (p.out_w * p.out_h);
  const T* x = static_cast<const T*>(p.x) + plane * p.in_h * p.in_w;
  const A* f = static_cast<const A*>(p.f);
  const UpFirDn2dTaps ty = upfirdn2d_taps(oy, p.up_y, p.down_y, p.pad_y0, p.in_h, p.filter_h);
  const UpFirDn2dTaps tx = upfirdn2d_taps(ox, p.up_x, p.down_x, p.pad_x0, p.in_w, p.filter_w);
  A acc = 0;
  for (int ky = ty.first; ky <= ty.last; ky += p.up_y) {
    const int64_t iy = (ty.base + ky) / p.up_y;
    const int fy = p.flip_filter ? ky : p.filter_h - 1 - ky;
    for (int kx = tx.first; kx <= tx.last; kx += p.up_x) {
      const int64_t ix = (tx.base + kx) / p.up_x;
      const int fx = p.flip_filter ? kx : p.filter_w - 1 - kx;
      acc += Scalar<T>::load(x[iy * p.in_w + ix]) * f[fy * p.filter_w + fx];
    }
  }
  return acc * static_cast<A>(p.gain);
}

// Launch the kernel over all output elements on `stream` (defined in upfirdn2d.cu).
void upfirdn2d_launch(const UpFirDn2dArgs& args, DType dtype, CUstream_st* stream);
