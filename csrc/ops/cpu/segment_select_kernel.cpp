// CPU kernel of segment_select: parallel over groups of whole segments balanced by
// edge count; per segment the selection keys, then an O(n_s) top-k (std::nth_element).
// ptr is checked before the loop (O(S)); the scores as they are read, the first bad one
// reported once every group has finished.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "ops/common/philox.h"
#include "ops/common/select.h"
#include "ops/cpu/first_index.h"
#include "ops/segment_select.h"

namespace refine_fast {

namespace {

// Splits segments [0, S) into at most `groups` runs of about equal edge count:
// run g is [bounds[g], bounds[g + 1]).
std::vector<int64_t> balanced_segment_groups(const int64_t* ptr, int64_t num_segments, int64_t groups) {
  const int64_t num_edges = ptr[num_segments];
  std::vector<int64_t> bounds(groups + 1, num_segments);
  bounds[0] = 0;
  for (int64_t g = 1; g < groups; ++g) {
    const int64_t target = num_edges / groups * g + num_edges % groups * g / groups;
    bounds[g] = std::max(bounds[g - 1], std::lower_bound(ptr, ptr + num_segments, target) - ptr);
  }
  return bounds;
}

// Marks the k first of keys[0, n) in the order higher key first, ties to the lower index:
// the k-th largest key t by std::nth_element on a copy, then every key > t and the
// lowest-index keys == t. O(n).
void mark_top_k(const double* keys, int64_t n, int64_t k, std::vector<double>& scratch, bool* mask) {
  if (k == 1) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i) best = keys[i] > keys[best] ? i : best;
    mask[best] = true;
    return;
  }
  scratch.assign(keys, keys + n);
  std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<double>());
  const double threshold = scratch[k - 1];
  int64_t ties_left = k;
  for (int64_t i = 0; i < n; ++i) ties_left -= keys[i] > threshold;
  for (int64_t i = 0; i < n; ++i) {
    const bool tie = keys[i] == threshold && ties_left > 0;
    ties_left -= tie;
    mask[i] = keys[i] > threshold || tie;
  }
}

// ptr[0] = 0, ptr[S] = E and non-decreasing.
void check_ptr(const int64_t* ptr, int64_t num_segments, int64_t num_edges) {
  const char* op = "segment_select (CPU): ";
  TORCH_CHECK(ptr[0] == 0, op, "ptr[0] must be 0, got ", ptr[0]);
  TORCH_CHECK(ptr[num_segments] == num_edges, op, "ptr[-1] must equal E = ", num_edges, ", got ",
              ptr[num_segments]);
  for (int64_t s = 0; s < num_segments; ++s) {
    TORCH_CHECK(ptr[s] <= ptr[s + 1], op, "ptr must be non-decreasing, got ptr[", s, "] = ", ptr[s], " > ptr[",
                s + 1, "] = ", ptr[s + 1]);
  }
}

// Scores the op refuses: NaN, and negative ones when stochastic.
template <typename scalar_t>
bool bad_score(scalar_t score, bool stochastic) {
  const double v = static_cast<double>(score);
  return v != v || (stochastic && v < 0);
}

[[noreturn]] void fail_score(double score, int64_t e) {
  TORCH_CHECK(score == score, "segment_select (CPU): scores must not contain NaN, got NaN at edge ", e);
  TORCH_CHECK(false, "segment_select (CPU): scores must be probabilities >= 0 when stochastic=True, got ", score,
              " at edge ", e);
}

// Selects in segments [seg_begin, seg_end); returns the first edge with a bad score (its segment
// is left unselected), or -1.
template <typename scalar_t>
int64_t select_segments(const scalar_t* scores, const int64_t* ptr, double ratio, const int64_t* key, int64_t seed,
                        int64_t step, bool stochastic, int64_t seg_begin, int64_t seg_end, bool* mask) {
  std::vector<double> keys, scratch;
  for (int64_t s = seg_begin; s < seg_end; ++s) {
    const int64_t begin = ptr[s], n = ptr[s + 1] - begin;
    for (int64_t i = 0; i < n; ++i) {
      if (bad_score(scores[begin + i], stochastic)) return begin + i;
    }
    const int64_t k = select_count(ratio, n);
    if (k == n) {
      std::fill(mask + begin, mask + begin + n, true);
      continue;
    }
    keys.resize(n);
    if (stochastic) {
      philox_uniform_batch<double>(key + begin, n, seed, step, kSelectStream, keys.data());
      for (int64_t i = 0; i < n; ++i) keys[i] = gumbel_select_key(static_cast<double>(scores[begin + i]), keys[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) keys[i] = static_cast<double>(scores[begin + i]);
    }
    mark_top_k(keys.data(), n, k, scratch, mask + begin);
  }
  return -1;
}

at::Tensor segment_select_cpu(const at::Tensor& scores, const at::Tensor& ptr, double ratio,
                              const std::optional<at::Tensor>& key, int64_t seed, int64_t step, bool stochastic) {
  check_segment_select(scores, ptr, ratio, key, step, stochastic, "CPU");
  const auto scores_c = scores.contiguous();
  const auto ptr_c = ptr.contiguous();
  const auto key_c = stochastic ? key->contiguous() : at::Tensor();
  const int64_t num_edges = scores.numel(), num_segments = ptr.numel() - 1;
  const int64_t* p = ptr_c.const_data_ptr<int64_t>();
  check_ptr(p, num_segments, num_edges);
  auto mask = at::zeros({num_edges}, scores.options().dtype(at::kBool));
  if (num_edges == 0) return mask;

  const auto bounds = balanced_segment_groups(p, num_segments, std::min<int64_t>(at::get_num_threads(), num_segments));
  const int64_t groups = static_cast<int64_t>(bounds.size()) - 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "segment_select_cpu", [&] {
    const scalar_t* sc = scores_c.const_data_ptr<scalar_t>();
    const int64_t* k = stochastic ? key_c.const_data_ptr<int64_t>() : nullptr;
    bool* out = mask.mutable_data_ptr<bool>();
    FirstIndex bad(num_edges);
    at::parallel_for(0, groups, 1, [&](int64_t g_begin, int64_t g_end) {
      const int64_t e = select_segments<scalar_t>(sc, p, ratio, k, seed, step, stochastic, bounds[g_begin],
                                                  bounds[g_end], out);
      if (e >= 0) bad.report(e);
    });
    if (bad.found()) fail_score(static_cast<double>(sc[bad.get()]), bad.get());
  });
  return mask;
}

}  // namespace

}  // namespace refine_fast

TORCH_LIBRARY_IMPL(refine_fast, CPU, m) { m.impl("segment_select", &refine_fast::segment_select_cpu); }
