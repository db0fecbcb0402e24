#pragma once

// Counter-based random numbers: Philox-4x32-10 (Salmon et al., SC'11).
// A draw is a pure function of (seed, per-edge key, step, stream), so CPU and
// CUDA produce the same bits whatever the thread count or batch layout.
//   Philox key     = (seed lo, seed hi)
//   Philox counter = (edge key lo, edge key hi, step, stream)

#include <cstdint>

#include "ops/common/macros.h"

namespace refine_fast {

// Independent noise streams; each op reads its own.
constexpr uint32_t kConcreteStream = 0;  // logistic noise of concrete_sample
constexpr uint32_t kSelectStream = 1;    // Gumbel noise of segment_select

struct Philox4 {
  uint32_t x[4];
};

REFINE_HOST_DEVICE inline void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

// The Random123 Philox-4x32 with 10 rounds.
REFINE_HOST_DEVICE inline Philox4 philox4x32_10(Philox4 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, ctr.x[0], &hi0, &lo0);
    philox_mulhilo(kMul1, ctr.x[2], &hi1, &lo1);
    ctr = Philox4{{hi1 ^ ctr.x[1] ^ key0, lo1, hi0 ^ ctr.x[3] ^ key1, lo0}};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// The four random words for one (seed, key, step, stream).
REFINE_HOST_DEVICE inline Philox4 philox_draw(int64_t seed, int64_t key, int64_t step, uint32_t stream) {
  const uint64_t k = static_cast<uint64_t>(key), s = static_cast<uint64_t>(seed);
  Philox4 ctr{{static_cast<uint32_t>(k), static_cast<uint32_t>(k >> 32), static_cast<uint32_t>(step), stream}};
  return philox4x32_10(ctr, static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32));
}

// float32 in (0, 1): the top 23 bits of x0 at the cell centres, ((x0 >> 9) + 0.5) * 2^-23.
// Every value is exact in float32 and lies in [2^-24, 1 - 2^-24] (24 bits plus the half
// offset would need a 25-bit significand and round the top value to 1).
REFINE_HOST_DEVICE inline float philox_uniform_float(const Philox4& r) {
  return (static_cast<float>(r.x[0] >> 9) + 0.5f) * 1.1920928955078125e-07f;  // 2^-23
}

// float64 in (0, 1): 52 bits from x0 (all 32) and x1 (top 20), ((v) + 0.5) * 2^-52, exact.
REFINE_HOST_DEVICE inline double philox_uniform_double(const Philox4& r) {
  const uint64_t v = (static_cast<uint64_t>(r.x[0]) << 20) | (r.x[1] >> 12);
  return (static_cast<double>(v) + 0.5) * 2.220446049250313080847263336181640625e-16;  // 2^-52
}

// u in (0, 1) of the precision of T (float or double).
template <typename T>
REFINE_HOST_DEVICE inline T philox_uniform(const Philox4& r);

template <>
REFINE_HOST_DEVICE inline float philox_uniform<float>(const Philox4& r) {
  return philox_uniform_float(r);
}

template <>
REFINE_HOST_DEVICE inline double philox_uniform<double>(const Philox4& r) {
  return philox_uniform_double(r);
}

#ifndef __CUDACC__
// CPU: u[e] = uniform of (seed, keys[e], step, stream) for e < n. The loop is integer-only
// (bit-exact on every instruction set) and vectorizes; with GCC on x86-64 Linux it is also
// built for AVX-512 and AVX2, picked at load time.
template <typename T>
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void philox_uniform_batch(const int64_t* keys, int64_t n, int64_t seed, int64_t step, uint32_t stream, T* u) {
  for (int64_t e = 0; e < n; ++e) u[e] = philox_uniform<T>(philox_draw(seed, keys[e], step, stream));
}
#endif

}  // namespace refine_fast
