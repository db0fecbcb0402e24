#pragma once

// The fused edge-score MLP: argument checks shared by every backend (`backend` — "CPU",
// "CUDA" — is named in the messages) and C++ entry points that call the dispatcher.
// The checks here read no tensor values (no device synchronization); the kernels check the
// index values as they read them (CPU: an error after the loop, CUDA: device-side asserts).

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

// Raw pointers a backend kernel reads: rows of p_src / p_dst / edge_term (unit channel stride, any
// row stride), the edge endpoints, the optional group of each edge and weight [G, H], with the
// ranges the indices must lie in.
template <typename scalar_t>
struct EdgeScoreInputs {
  const scalar_t* p_src;
  int64_t src_stride;
  const scalar_t* p_dst;
  int64_t dst_stride;
  const scalar_t* edge_term;  // nullptr when None
  int64_t term_stride;
  const int64_t* src;
  const int64_t* dst;
  const int64_t* group;  // nullptr when None (every edge in group 0)
  const scalar_t* weight;
  int64_t H;
  int64_t n_src, n_dst, G;
};

// Raises the error naming the argument out of range at edge e (found by a kernel).
[[noreturn]] void fail_edge_score_range(const char* op, const char* backend, const int64_t* src, const int64_t* dst,
                                        const int64_t* group, int64_t n_src, int64_t n_dst, int64_t G, int64_t e);

// The tensors a backend kernel reads, in the layouts of EdgeScoreInputs (p_src, p_dst and edge_term
// with unit channel stride, edge_index, weight and group contiguous; other layouts are copied);
// edge_term and group are undefined when None. Owns the memory behind inputs<scalar_t>().
struct EdgeScoreTensors {
  at::Tensor p_src, p_dst, edge_index, weight, edge_term, group;

  template <typename scalar_t>
  EdgeScoreInputs<scalar_t> inputs() const {
    const int64_t E = edge_index.size(1);
    return {p_src.const_data_ptr<scalar_t>(),
            p_src.stride(0),
            p_dst.const_data_ptr<scalar_t>(),
            p_dst.stride(0),
            edge_term.defined() ? edge_term.const_data_ptr<scalar_t>() : nullptr,
            edge_term.defined() ? edge_term.stride(0) : 0,
            edge_index.const_data_ptr<int64_t>(),
            edge_index.const_data_ptr<int64_t>() + E,
            group.defined() ? group.const_data_ptr<int64_t>() : nullptr,
            weight.const_data_ptr<scalar_t>(),
            weight.size(1),
            p_src.size(0),
            p_dst.size(0),
            weight.size(0)};
  }
};

// The checked operands of edge_score / edge_score_backward, prepared for a backend kernel.
EdgeScoreTensors prepare_edge_score(const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
                                    const at::Tensor& weight, const std::optional<at::Tensor>& edge_term,
                                    const std::optional<at::Tensor>& group);

}  // namespace refine_fast
