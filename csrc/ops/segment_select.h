#pragma once

// Argument checks of segment_select, shared by every backend; `backend` ("CPU", "CUDA") is
// named in the messages. They read no tensor values (no device synchronization): the kernels
// check ptr (ptr[0] = 0, ptr[-1] = E, non-decreasing) and the scores (no NaN, and >= 0 when
// stochastic) as they read them (CPU: an error after the loop, CUDA: device-side asserts).

#include <ATen/ATen.h>

#include <optional>

namespace refine_fast {

void check_segment_select(const at::Tensor& scores, const at::Tensor& ptr, double ratio,
                          const std::optional<at::Tensor>& key, int64_t step, bool stochastic, const char* backend);

}  // namespace refine_fast
