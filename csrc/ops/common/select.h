#pragma once

// Per-edge math of segment_select, shared by the CPU and CUDA kernels.

#include <cmath>
#include <cstdint>

#include "ops/common/macros.h"

namespace refine_fast {

// Relative slack of the ceil in select_count: ratio * n is computed in double and
// multiplied by (1 - 1e-6) before the ceil, so that a product that should be an
// integer but lands just above it (0.3 * 10, or a float32 ratio 0.3f * 10 =
// 3.0000001) still gives that integer. The Python reference uses the same rule.
constexpr double kSelectCountSlack = 1e-6;

// k_s = min(max(ceil(ratio * n), 1), n); 0 for an empty segment.
REFINE_HOST_DEVICE inline int64_t select_count(double ratio, int64_t n) {
  if (n <= 0) return 0;
  const double x = ratio * static_cast<double>(n) * (1.0 - kSelectCountSlack);
  const int64_t k = static_cast<int64_t>(std::ceil(x));
  return k < 1 ? 1 : (k > n ? n : k);
}

// Key of the stochastic selection: score / E with E = -log(u) ~ Exp(1) from the select
// stream. Its top-k is the top-k of log(score) + Gumbel (exp of the latter is
// score / E), i.e. k draws without replacement with probability proportional to score.
// A zero score gives key 0, below every positive score, so it is only taken when needed.
// `u` is the float64 draw of (seed, key, step) on kSelectStream.
REFINE_HOST_DEVICE inline double gumbel_select_key(double score, double u) { return score / -std::log(u); }

}  // namespace refine_fast
