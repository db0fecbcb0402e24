// Schema and argument checks of the segmented top-rho selection.
#include "ops/segment_select.h"

#include <torch/library.h>

namespace refine_fast {

void check_segment_select(const at::Tensor& scores, const at::Tensor& ptr, const at::Tensor& ratio,
                          const c10::optional<at::Tensor>& key, int64_t step, bool stochastic, const char* backend) {
  const char* op = "segment_select";
  TORCH_CHECK(at::isFloatingType(scores.scalar_type()) && scores.dim() == 1, op, " (", backend,
              "): scores must be a 1-D floating tensor, got ", scores.scalar_type(), " of shape ", scores.sizes());
  const int64_t num_edges = scores.numel();
  TORCH_CHECK(ptr.scalar_type() == at::kLong && ptr.dim() == 1 && ptr.numel() >= 1, op, " (", backend,
              "): ptr must be a 1-D int64 tensor of shape [S + 1], got ", ptr.scalar_type(), " of shape ",
              ptr.sizes());
  TORCH_CHECK(ptr.device() == scores.device(), op, " (", backend, "): ptr must be on the device of scores (",
              scores.device(), "), got ", ptr.device());
  const int64_t num_segments = ptr.numel() - 1;
  TORCH_CHECK(at::isFloatingType(ratio.scalar_type()) &&
                  (ratio.dim() == 0 || (ratio.dim() == 1 && ratio.numel() == num_segments)),
              op, " (", backend, "): ratio must be a floating scalar tensor or of shape [S] = [", num_segments,
              "], got ", ratio.scalar_type(), " of shape ", ratio.sizes());
  TORCH_CHECK(ratio.device() == scores.device(), op, " (", backend, "): ratio must be on the device of scores (",
              scores.device(), "), got ", ratio.device());
  if (stochastic) {
    TORCH_CHECK(key.has_value(), op, " (", backend, "): key is required when stochastic=True");
  }
  if (key.has_value()) {
    const auto& k = *key;
    TORCH_CHECK(k.scalar_type() == at::kLong && k.dim() == 1 && k.numel() == num_edges, op, " (", backend,
                "): key must be int64 of shape [E] = [", num_edges, "], got ", k.scalar_type(), " of shape ",
                k.sizes());
    TORCH_CHECK(k.device() == scores.device(), op, " (", backend, "): key must be on the device of scores (",
                scores.device(), "), got ", k.device());
  }
  TORCH_CHECK(step >= 0 && step <= INT64_C(0xFFFFFFFF), op, " (", backend, "): step must be in [0, 2^32), got ",
              step);

  TORCH_CHECK(ptr[0].item<int64_t>() == 0, op, " (", backend, "): ptr[0] must be 0, got ", ptr[0].item<int64_t>());
  TORCH_CHECK(ptr[-1].item<int64_t>() == num_edges, op, " (", backend, "): ptr[-1] must equal E = ", num_edges,
              ", got ", ptr[-1].item<int64_t>());
  if (num_segments > 1) {
    TORCH_CHECK((ptr.diff() >= 0).all().item<bool>(), op, " (", backend, "): ptr must be non-decreasing");
  }
  if (ratio.numel() > 0) {
    TORCH_CHECK(((ratio > 0) & (ratio <= 1)).all().item<bool>(), op, " (", backend,
                "): ratio must be in (0, 1], got min ", ratio.min().item<double>(), " and max ",
                ratio.max().item<double>());
  }
  if (num_edges > 0) {
    TORCH_CHECK(!scores.isnan().any().item<bool>(), op, " (", backend, "): scores must not contain NaN");
    if (stochastic) {
      TORCH_CHECK(!(scores < 0).any().item<bool>(), op, " (", backend,
                  "): scores must be probabilities >= 0 when stochastic=True, got min ",
                  scores.min().item<double>());
    }
  }
}

}  // namespace refine_fast

TORCH_LIBRARY_FRAGMENT(refine_fast, m) {
  m.def(
      "segment_select(Tensor scores, Tensor ptr, Tensor ratio, Tensor? key, int seed, int step, bool stochastic) "
      "-> Tensor");
}
