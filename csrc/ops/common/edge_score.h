#pragma once

// Per-element math of the fused edge-score MLP, shared by the CPU and CUDA kernels:
//   out[e] = sum_k w[k] * act(p_src[k] + p_dst[k] + edge_term[k]) + b,   act = tanh.
//
// The float tanh is branch-free arithmetic (an odd polynomial near 0, (1 - e) / (1 + e) with
// e = exp(-2|x|) elsewhere; max relative error about 1e-7), so the compiler vectorizes the
// loop over the hidden channels on the CPU, and CPU and CUDA compute the same value.
// double uses the C library's tanh.

#include <cstdint>
#include <cstring>
#include <cmath>

#include "ops/common/macros.h"

namespace refine_fast {

REFINE_HOST_DEVICE inline float edge_score_bits_to_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

REFINE_HOST_DEVICE inline uint32_t edge_score_float_to_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
#endif
}

// exp(y) for y in [-18, -1]: y = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor
// polynomial of degree 7 (relative error < 6e-9), times 2^n built in the exponent bits.
// n is rounded by adding 1.5 * 2^23 (its low mantissa bits then hold n): no float-to-int
// conversion, which could trap and would keep the compiler from vectorizing.
REFINE_HOST_DEVICE inline float edge_score_exp_negative(float y) {
  const float shifted = y * 1.44269504f + 12582912.0f;
  const float nf = shifted - 12582912.0f;
  const uint32_t n_biased = edge_score_float_to_bits(shifted) - 0x4B400000u + 127u;  // n + 127 in [101, 126]
  const float r = (y - nf * 0.693145752f) - nf * 1.42860677e-6f;  // ln2 split in two parts
  float p = 1.98412698e-4f;                                       // 1/7!
  p = p * r + 1.38888889e-3f;
  p = p * r + 8.33333333e-3f;
  p = p * r + 4.16666667e-2f;
  p = p * r + 1.66666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * edge_score_bits_to_float(n_biased << 23);
}

REFINE_HOST_DEVICE inline float edge_score_activation(float x) {
  float a = x < 0.0f ? -x : x;
  a = a > 9.0f ? 9.0f : a;  // tanh(9) rounds to 1 in float; NaN passes through
  // |x| < 0.55: x + x^3 q(x^2), q fitted for relative error < 1.1e-9 on [0, 0.55].
  const float s = a * a;
  float q = -6.27423909e-3f;
  q = q * s + 2.10716787e-2f;
  q = q * s - 5.38523098e-2f;
  q = q * s + 1.33325861e-1f;
  q = q * s - 3.33333176e-1f;
  const float small = a + a * s * q;
  const float e = edge_score_exp_negative(-2.0f * (a >= 0.55f ? a : 0.55f));  // NaN -> 0.55
  const float large = (1.0f - e) / (1.0f + e);
  const float t = a < 0.55f ? small : large;
  const float signed_t = x < 0.0f ? -t : t;
  return x != x ? x : signed_t;
}

REFINE_HOST_DEVICE inline double edge_score_activation(double x) { return ::tanh(x); }

// d tanh(x) / dx from t = tanh(x).
template <typename T>
REFINE_HOST_DEVICE inline T edge_score_activation_grad(T t) {
  return T(1) - t * t;
}

}  // namespace refine_fast
