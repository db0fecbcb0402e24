// CPU kernel of segment_select: parallel over groups of whole segments balanced by
// edge count; per segment an O(n_s) std::nth_element under the total order of
// select_before (higher key first, ties to the lower index).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>
#include <vector>

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

template <typename scalar_t>
void select_segments(const scalar_t* scores, const int64_t* ptr, const double* ratio, bool per_segment_ratio,
                     const int64_t* key, int64_t seed, int64_t step, bool stochastic, int64_t seg_begin,
                     int64_t seg_end, bool* mask) {
  std::vector<std::pair<double, int64_t>> ranked;  // (selection key, local index)
  std::vector<double> uniforms;
  const auto before = [](const std::pair<double, int64_t>& a, const std::pair<double, int64_t>& b) {
    return select_before(a.first, a.second, b.first, b.second);
  };
  for (int64_t s = seg_begin; s < seg_end; ++s) {
    const int64_t begin = ptr[s], n = ptr[s + 1] - begin;
    const int64_t k = select_count(ratio[per_segment_ratio ? s : 0], n);
    bool* seg_mask = mask + begin;
    if (k == n) {
      std::fill(seg_mask, seg_mask + n, true);
      continue;
    }
    std::fill(seg_mask, seg_mask + n, false);
    ranked.resize(n);
    if (stochastic) {
      uniforms.resize(n);
      philox_uniform_batch<double>(key + begin, n, seed, step, kSelectStream, uniforms.data());
      for (int64_t i = 0; i < n; ++i) {
        ranked[i] = {gumbel_select_key(static_cast<double>(scores[begin + i]), uniforms[i]), i};
      }
    } else {
      for (int64_t i = 0; i < n; ++i) ranked[i] = {static_cast<double>(scores[begin + i]), i};
    }
    if (k == 1) {
      seg_mask[std::min_element(ranked.begin(), ranked.end(), before)->second] = true;
      continue;
    }
    std::nth_element(ranked.begin(), ranked.begin() + (k - 1), ranked.end(), before);
    for (int64_t i = 0; i < k; ++i) seg_mask[ranked[i].second] = true;
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
