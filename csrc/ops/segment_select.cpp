// Schema and argument checks of the segmented top-rho selection.
#include "ops/segment_select.h"

#include <torch/library.h>

namespace refine_fast {

void check_segment_select(const at::Tensor& scores, const at::Tensor& ptr, double ratio,
                          const std::optional<at::Tensor>& key, int64_t step, bool stochastic, const char* backend) {
  const char* op = "segment_select";
  TORCH_CHECK(at::isFloatingType(scores.scalar_type()) && scores.dim() == 1, op, " (", backend,
              "): scores must be a 1-D floating tensor, got ", scores.scalar_type(), " of shape ", scores.sizes());
  const int64_t num_edges = scores.numel();
  TORCH_CHECK(ptr.scalar_type() == at::kLong && ptr.dim() == 1 && ptr.numel() >= 1, op, " (", backend,
              "): ptr must be a 1-D int64 tensor of shape [S + 1], got ", ptr.scalar_type(), " of shape ",
              ptr.sizes());
  TORCH_CHECK(ptr.device() == scores.device(), op, " (", backend, "): ptr must be on the device of scores (",
              scores.device(), "), got ", ptr.device());
  TORCH_CHECK(ratio > 0 && ratio <= 1, op, " (", backend, "): ratio must be in (0, 1], got ", ratio);
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
}

}  // namespace refine_fast

TORCH_LIBRARY_FRAGMENT(refine_fast, m) {
  m.def(
      "segment_select(Tensor scores, Tensor ptr, float ratio, Tensor? key, int seed, int step, bool stochastic) "
      "-> Tensor");
}
