// CPU kernel of segment_select: parallel over groups of whole segments balanced by
// edge count; per segment the selection keys, then an O(n_s) top-k (std::nth_element).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "ops/common/philox.h"
#include "ops/common/select.h"
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

template <typename scalar_t>
void select_segments(const scalar_t* scores, const int64_t* ptr, const double* ratio, bool per_segment_ratio,
                     const int64_t* key, int64_t seed, int64_t step, bool stochastic, int64_t seg_begin,
                     int64_t seg_end, bool* mask) {
  std::vector<double> keys, scratch;
  for (int64_t s = seg_begin; s < seg_end; ++s) {
    const int64_t begin = ptr[s], n = ptr[s + 1] - begin;
    const int64_t k = select_count(ratio[per_segment_ratio ? s : 0], n);
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
}

at::Tensor segment_select_cpu(const at::Tensor& scores, const at::Tensor& ptr, const at::Tensor& ratio,
                              const c10::optional<at::Tensor>& key, int64_t seed, int64_t step, bool stochastic) {
  check_segment_select(scores, ptr, ratio, key, step, stochastic, "CPU");
  const auto scores_c = scores.contiguous();
  const auto ptr_c = ptr.contiguous();
  const auto ratio_c = ratio.to(at::kDouble).contiguous();
  const auto key_c = stochastic ? key->contiguous() : at::Tensor();
  auto mask = at::zeros({scores.numel()}, scores.options().dtype(at::kBool));
  const int64_t num_segments = ptr.numel() - 1;
  if (scores.numel() == 0) return mask;

  const int64_t* p = ptr_c.data_ptr<int64_t>();
  const auto bounds = balanced_segment_groups(p, num_segments, std::min<int64_t>(at::get_num_threads(), num_segments));
  const int64_t groups = static_cast<int64_t>(bounds.size()) - 1;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "segment_select_cpu", [&] {
    const scalar_t* sc = scores_c.data_ptr<scalar_t>();
    const double* r = ratio_c.data_ptr<double>();
    const int64_t* k = stochastic ? key_c.data_ptr<int64_t>() : nullptr;
    bool* out = mask.data_ptr<bool>();
    at::parallel_for(0, groups, 1, [&](int64_t g_begin, int64_t g_end) {
      select_segments<scalar_t>(sc, p, r, ratio_c.dim() == 1, k, seed, step, stochastic, bounds[g_begin],
                                bounds[g_end], out);
    });
  });
  return mask;
}

}  // namespace

}  // namespace refine_fast

TORCH_LIBRARY_IMPL(refine_fast, CPU, m) { m.impl("segment_select", &refine_fast::segment_select_cpu); }
