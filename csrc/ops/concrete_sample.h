#pragma once

// Argument checks of uniform, concrete_sample and concrete_sample_backward, shared by
// every backend; `backend` ("CPU", "CUDA") is named in the messages.

#include <ATen/ATen.h>

namespace refine_fast {

void check_uniform(const at::Tensor& key, int64_t step, at::ScalarType dtype, const char* backend);

void check_concrete_sample(const at::Tensor& logits, const at::Tensor& key, int64_t step, double temperature,
                           const char* backend);

void check_concrete_sample_backward(const at::Tensor& grad, const at::Tensor& output, double temperature,
                                    const char* backend);

}  // namespace refine_fast
