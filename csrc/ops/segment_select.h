#pragma once

// Argument checks of segment_select, shared by every backend; `backend` ("CPU",
// "CUDA") is named in the messages. Value checks (ptr monotone, ratio range, NaN or
// negative scores) read the tensors, which synchronizes on CUDA.

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

namespace refine_fast {

void check_segment_select(const at::Tensor& scores, const at::Tensor& ptr, const at::Tensor& ratio,
                          const c10::optional<at::Tensor>& key, int64_t step, bool stochastic, const char* backend);

}  // namespace refine_fast
