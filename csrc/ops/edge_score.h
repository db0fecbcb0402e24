#pragma once

// The fused edge-score MLP: argument checks shared by every backend (`backend` — "CPU",
// "CUDA" — is named in the messages) and C++ entry points that call the dispatcher.

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace refine_fast {

// out [E] = sum_k weight[g_e, k] tanh(p_src[src_e, k] + p_dst[dst_e, k] + edge_term[e, k]) + bias[g_e].
at::Tensor edge_score(const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
                      const at::Tensor& weight, const at::Tensor& bias,
                      const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group);

// Gradients (p_src, p_dst, edge_term, weight, bias); the edge_term gradient is an empty [0]
// tensor when edge_term is None.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> edge_score_backward(
    const at::Tensor& grad, const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
    const at::Tensor& weight, const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group);

void check_edge_score(const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
                      const at::Tensor& weight, const at::Tensor& bias,
                      const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group,
                      const char* backend);

void check_edge_score_backward(const at::Tensor& grad, const at::Tensor& p_src, const at::Tensor& p_dst,
                               const at::Tensor& edge_index, const at::Tensor& weight,
                               const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group,
                               const char* backend);

}  // namespace refine_fast
