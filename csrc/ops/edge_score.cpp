// Schemas, argument checks and dispatcher entry points of the fused edge-score MLP.
#include "ops/edge_score.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

namespace refine_fast {

namespace {

void check_same(const char* op, const char* backend, const char* name, const at::Tensor& t,
                const at::Tensor& p_src) {
  TORCH_CHECK(t.scalar_type() == p_src.scalar_type(), op, " (", backend, "): ", name,
              " must have the dtype of p_src (", p_src.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == p_src.device(), op, " (", backend, "): ", name, " must be on the device of p_src (",
              p_src.device(), "), got ", t.device());
}

// Rows of a [rows, H] tensor with unit channel stride (other layouts are copied).
at::Tensor rows_view(const at::Tensor& t) { return t.stride(1) == 1 ? t : t.contiguous(); }

// Checks shared by the forward and the backward; returns E.
int64_t check_inputs(const char* op, const char* backend, const at::Tensor& p_src, const at::Tensor& p_dst,
                     const at::Tensor& edge_index, const at::Tensor& weight,
                     const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group) {
  TORCH_CHECK(at::isFloatingType(p_src.scalar_type()) && p_src.dim() == 2, op, " (", backend,
              "): p_src must be a 2-D floating tensor [N_src, H], got ", p_src.scalar_type(), " of shape ",
              p_src.sizes());
  const int64_t H = p_src.size(1);
  check_same(op, backend, "p_dst", p_dst, p_src);
  TORCH_CHECK(p_dst.dim() == 2 && p_dst.size(1) == H, op, " (", backend, "): p_dst must have shape [N_dst, H = ", H,
              "], got ", p_dst.sizes());
  TORCH_CHECK(edge_index.scalar_type() == at::kLong && edge_index.dim() == 2 && edge_index.size(0) == 2, op, " (",
              backend, "): edge_index must be int64 of shape [2, E], got ", edge_index.scalar_type(), " of shape ",
              edge_index.sizes());
  TORCH_CHECK(edge_index.device() == p_src.device(), op, " (", backend,
              "): edge_index must be on the device of p_src (", p_src.device(), "), got ", edge_index.device());
  const int64_t E = edge_index.size(1);
  check_same(op, backend, "weight", weight, p_src);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == H, op, " (", backend, "): weight must have shape [G, H = ", H,
              "], got ", weight.sizes());
  const int64_t G = weight.size(0);
  if (edge_term.has_value()) {
    check_same(op, backend, "edge_term", *edge_term, p_src);
    TORCH_CHECK(edge_term->dim() == 2 && edge_term->size(0) == E && edge_term->size(1) == H, op, " (", backend,
                "): edge_term must have shape [E = ", E, ", H = ", H, "], got ", edge_term->sizes());
  }
  if (group.has_value()) {
    TORCH_CHECK(group->scalar_type() == at::kLong && group->dim() == 1 && group->size(0) == E, op, " (", backend,
                "): group must be int64 of shape [E = ", E, "], got ", group->scalar_type(), " of shape ",
                group->sizes());
    TORCH_CHECK(group->device() == p_src.device(), op, " (", backend, "): group must be on the device of p_src (",
                p_src.device(), "), got ", group->device());
  } else {
    TORCH_CHECK(E == 0 || G >= 1, op, " (", backend, "): weight must have at least one row (group 0), got shape ",
                weight.sizes());
  }
  return E;
}

}  // namespace

void fail_edge_score_range(const char* op, const char* backend, const int64_t* src, const int64_t* dst,
                           const int64_t* group, int64_t n_src, int64_t n_dst, int64_t G, int64_t e) {
  if (group != nullptr) {
    TORCH_CHECK(group[e] >= 0 && group[e] < G, op, " (", backend, "): group must be in [0, ", G, "), got ", group[e],
                " at edge ", e);
  }
  TORCH_CHECK(src[e] >= 0 && src[e] < n_src, op, " (", backend, "): edge_index[0] (source nodes) must be in [0, ",
              n_src, "), got ", src[e], " at edge ", e);
  TORCH_CHECK(dst[e] >= 0 && dst[e] < n_dst, op, " (", backend, "): edge_index[1] (target nodes) must be in [0, ",
              n_dst, "), got ", dst[e], " at edge ", e);
  TORCH_INTERNAL_ASSERT(false, op, " (", backend, "): edge ", e, " reported out of range but is not");
}

void check_edge_score(const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
                      const at::Tensor& weight, const at::Tensor& bias,
                      const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group,
                      const char* backend) {
  const char* op = "edge_score";
  check_inputs(op, backend, p_src, p_dst, edge_index, weight, edge_term, group);
  check_same(op, backend, "bias", bias, p_src);
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), op, " (", backend, "): bias must have shape [G = ",
              weight.size(0), "], got ", bias.sizes());
}

void check_edge_score_backward(const at::Tensor& grad, const at::Tensor& p_src, const at::Tensor& p_dst,
                               const at::Tensor& edge_index, const at::Tensor& weight,
                               const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group,
                               const char* backend) {
  const char* op = "edge_score_backward";
  const int64_t E = check_inputs(op, backend, p_src, p_dst, edge_index, weight, edge_term, group);
  check_same(op, backend, "grad", grad, p_src);
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == E, op, " (", backend, "): grad must have shape [E = ", E,
              "], got ", grad.sizes());
}

EdgeScoreTensors prepare_edge_score(const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
                                    const at::Tensor& weight, const std::optional<at::Tensor>& edge_term,
                                    const std::optional<at::Tensor>& group) {
  return {rows_view(p_src),
          rows_view(p_dst),
          edge_index.contiguous(),
          weight.contiguous(),
          edge_term ? rows_view(*edge_term) : at::Tensor(),
          group ? group->contiguous() : at::Tensor()};
}

at::Tensor edge_score(const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
                      const at::Tensor& weight, const at::Tensor& bias,
                      const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("refine_fast::edge_score", "")
                       .typed<decltype(edge_score)>();
  return op.call(p_src, p_dst, edge_index, weight, bias, edge_term, group);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> edge_score_backward(
    const at::Tensor& grad, const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
    const at::Tensor& weight, const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("refine_fast::edge_score_backward", "")
                       .typed<decltype(edge_score_backward)>();
  return op.call(grad, p_src, p_dst, edge_index, weight, edge_term, group);
}

}  // namespace refine_fast

TORCH_LIBRARY_FRAGMENT(refine_fast, m) {
  m.def(
      "edge_score(Tensor p_src, Tensor p_dst, Tensor edge_index, Tensor weight, Tensor bias, Tensor? edge_term, "
      "Tensor? group) -> Tensor");
  m.def(
      "edge_score_backward(Tensor grad, Tensor p_src, Tensor p_dst, Tensor edge_index, Tensor weight, "
      "Tensor? edge_term, Tensor? group) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}
