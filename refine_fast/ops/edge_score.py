"""The fused edge-score MLP of ReFine's attributor.

The attributor scores an edge with ``Linear(H, 1)(tanh(Linear(2 D + D_e, H)(cat[z_i, z_j, a_ij])))``.
The first linear layer splits into per-node projections ``p_src = z W_src + b``, ``p_dst = z W_dst``
(one GEMM over nodes) and an edge term ``a W_e``; :func:`edge_score` does the rest per edge,
without materializing any ``[E, H]`` tensor in forward or backward (tanh is recomputed in the
backward pass). The backward pass is its own op, ``refine_fast::edge_score_backward``; double
backward is not supported.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .devices import check_same_device

__all__ = ["edge_score", "edge_score_reference"]


def edge_score(
    p_src: Tensor,
    p_dst: Tensor,
    edge_index: Tensor,
    weight: Tensor,
    bias: Tensor,
    edge_term: Optional[Tensor] = None,
    group: Optional[Tensor] = None,
) -> Tensor:
    """Edge scores ``out[e] = Σ_k weight[g, k] tanh(p_src[i, k] + p_dst[j, k] + edge_term[e, k]) + bias[g]``
    for edge ``e = (i, j)`` of group ``g = group[e]``.

    Differentiable in ``p_src``, ``p_dst``, ``edge_term``, ``weight`` and ``bias``.

    Args:
        p_src: ``[N_src, H]`` floating, source-node projections.
        p_dst: ``[N_dst, H]``, target-node projections.
        edge_index: ``[2, E]`` int64, rows (source, target).
        weight: ``[G, H]``, second-layer weight of each group.
        bias: ``[G]``, second-layer bias of each group.
        edge_term: ``[E, H]`` or None (zero), per-edge term of the pre-activation.
        group: ``[E]`` int64 in ``[0, G)`` or None (every edge in group 0).

    Returns:
        ``[E]`` of ``p_src.dtype``.
    """
    return torch.ops.refine_fast.edge_score(p_src, p_dst, edge_index, weight, bias, edge_term, group)


def edge_score_reference(
    p_src: Tensor,
    p_dst: Tensor,
    edge_index: Tensor,
    weight: Tensor,
    bias: Tensor,
    edge_term: Optional[Tensor] = None,
    group: Optional[Tensor] = None,
) -> Tensor:
    """Pure-PyTorch :func:`edge_score` (gather + add + tanh + matmul; differentiable through autograd).

    Materializes several ``[E, H]`` tensors; for tests, benchmarks and as a fallback.
    """
    h = p_src.index_select(0, edge_index[0]) + p_dst.index_select(0, edge_index[1])
    if edge_term is not None:
        h = h + edge_term
    t = torch.tanh(h)
    if group is None:
        return t @ weight[0] + bias[0]
    return (t * weight.index_select(0, group)).sum(-1) + bias.index_select(0, group)


@torch.library.register_fake("refine_fast::edge_score")
def _edge_score_fake(p_src, p_dst, edge_index, weight, bias, edge_term, group):
    check_same_device("edge_score", p_src=p_src, p_dst=p_dst, edge_index=edge_index, weight=weight, bias=bias,
                      edge_term=edge_term, group=group)
    return p_src.new_empty(edge_index.shape[1])


@torch.library.register_fake("refine_fast::edge_score_backward")
def _edge_score_backward_fake(grad, p_src, p_dst, edge_index, weight, edge_term, group):
    check_same_device("edge_score_backward", p_src=p_src, grad=grad, p_dst=p_dst, edge_index=edge_index,
                      weight=weight, edge_term=edge_term, group=group)
    grad_term = p_src.new_empty(edge_term.shape) if edge_term is not None else p_src.new_empty(0)
    return (
        p_src.new_empty(p_src.shape),
        p_src.new_empty(p_dst.shape),
        grad_term,
        p_src.new_empty(weight.shape),
        p_src.new_empty(weight.shape[0]),
    )


def _setup_context(ctx, inputs, output):
    p_src, p_dst, edge_index, weight, _bias, edge_term, group = inputs
    ctx.save_for_backward(p_src, p_dst, edge_index, weight, edge_term, group)


def _backward(ctx, grad):
    p_src, p_dst, edge_index, weight, edge_term, group = ctx.saved_tensors
    grads = torch.ops.refine_fast.edge_score_backward(grad, p_src, p_dst, edge_index, weight, edge_term, group)
    grad_src, grad_dst, grad_term, grad_weight, grad_bias = grads
    need = ctx.needs_input_grad
    return (
        grad_src if need[0] else None,
        grad_dst if need[1] else None,
        None,
        grad_weight if need[3] else None,
        grad_bias if need[4] else None,
        grad_term if edge_term is not None and need[5] else None,
        None,
    )


torch.library.register_autograd("refine_fast::edge_score", _backward, setup_context=_setup_context)
