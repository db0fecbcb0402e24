"""The parameter-free part of the attributor's convolution: ``Â x`` over the whole batch at once."""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor

__all__ = ["gcn_norm", "propagate", "Propagation"]


def gcn_norm(edge_index: Tensor, num_nodes: int, edge_weight: Optional[Tensor] = None,
             dtype: torch.dtype = torch.float32) -> Tensor:
    """Symmetric normalization without self loops, as PyG's ``gcn_norm(add_self_loops=False)``:
    ``w_ij / sqrt(deg_i deg_j)`` with ``deg`` the weighted in-degree; 0 where a degree is 0. -> ``[E]``.

    Not PyG's own: pre-training differentiates through ``edge_weight`` (the sampled mask, which can
    underflow to 0), and where a node's in-weights sum to 0 PyG's ``deg.pow_(-0.5)`` then masking gives
    the edges into it a NaN gradient (0 · inf); here it is 0. Same speed (88 against 84 µs forward,
    280 against 309 µs forward + backward, 7,700 edges, one thread)."""
    src, dst = edge_index
    if edge_weight is None:
        edge_weight = torch.ones(src.numel(), dtype=dtype, device=src.device)
    deg = edge_weight.new_zeros(num_nodes).index_add(0, dst, edge_weight)
    positive = deg > 0
    inv = torch.where(positive, deg, torch.ones_like(deg)).rsqrt() * positive  # no inf/NaN gradient at deg 0
    return inv.index_select(0, src) * edge_weight * inv.index_select(0, dst)  # not inv[src]: tests/test_run_to_run.py


def propagate(h: Tensor, edge_index: Tensor, norm: Tensor) -> Tensor:
    """``out[j] = Σ_{(i, j)} norm_ij · h[i]`` (messages flow source -> target). ``h [N, H]`` -> ``[N, H]``."""
    src, dst = edge_index
    return torch.zeros_like(h).index_add(0, dst, h.index_select(0, src) * norm.unsqueeze(1))


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, h: Tensor) -> Tensor:
        ctx.adj_t = adj_t
        return adj @ h

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.adj_t @ grad


class Propagation:
    """``Â x`` for a fixed edge set and fixed weights, as a CSR matrix (and its transpose for the
    backward): one sparse matmul each way instead of gather + scale + scatter. ``[N, H] -> [N, H]``."""

    def __init__(self, edge_index: Tensor, norm: Tensor, num_nodes: int):
        src, dst = edge_index
        with warnings.catch_warnings():  # CSR support is flagged beta; matmul with a dense matrix is all we use
            warnings.simplefilter("ignore")
            size = (num_nodes, num_nodes)
            self.adj = torch.sparse_coo_tensor(torch.stack([dst, src]), norm, size).coalesce().to_sparse_csr()
            self.adj_t = torch.sparse_coo_tensor(torch.stack([src, dst]), norm, size).coalesce().to_sparse_csr()

    def __call__(self, h: Tensor) -> Tensor:
        return _SparseMatmul.apply(self.adj, self.adj_t, h)
