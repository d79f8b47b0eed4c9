// An 8 x 8 block transposed through registers, optionally scaling its source rows, for float on AVX (the
// channels-last kernels of cpu/fir_filter.cpp and cpu/channels_last.cpp, and the texel table of
// training/rendering/csrc/trigrid_sample.cpp, which includes this folder):
//
//   dst[j * dst_stride + i] = src[i * src_stride + j] (* scale[i] when scale is given),  i, j < 8
//
// Returns false and does nothing for other types or without AVX; callers then copy element by element.
#pragma once

#include <cstdint>

#ifdef __AVX__
#include <immintrin.h>
#endif

template <typename T>
inline bool transpose_8x8(const T*, int64_t, T*, int64_t, const T*) {
  return false;
}

#ifdef __AVX__
// r[i] = row i of an 8 x 8 block -> r[j] = column j, in registers.
inline void transpose_8x8_registers(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    t[j] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x20);
    t[j + 4] = _mm256_permute2f128_ps(r[j], r[j + 4], 0x31);
  }
  for (int j = 0; j < 8; ++j) r[j] = t[j];
}

template <>
inline bool transpose_8x8<float>(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                                 const float* scale) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm256_loadu_ps(src + i * src_stride);
    if (scale) r[i] = _mm256_mul_ps(r[i], _mm256_set1_ps(scale[i]));
  }
  transpose_8x8_registers(r);
  for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dst + j * dst_stride, r[j]);
  return true;
}
#endif
