"""The parameter-free part of the attributor's convolution: ``Â x`` over the whole batch at once."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["gcn_norm", "propagate"]


def gcn_norm(edge_index: Tensor, num_nodes: int, edge_weight: Optional[Tensor] = None,
             dtype: torch.dtype = torch.float32) -> Tensor:
    """Symmetric normalization without self loops, as PyG's ``gcn_norm(add_self_loops=False)``:
    ``w_ij / sqrt(deg_i deg_j)`` with ``deg`` the weighted in-degree; 0 where a degree is 0. -> ``[E]``."""
    src, dst = edge_index
    if edge_weight is None:
        edge_weight = torch.ones(src.numel(), dtype=dtype, device=src.device)
    deg = edge_weight.new_zeros(num_nodes).index_add(0, dst, edge_weight)
    positive = deg > 0
    inv = torch.where(positive, deg, torch.ones_like(deg)).rsqrt() * positive  # no inf/NaN gradient at deg 0
    return inv[src] * edge_weight * inv[dst]


def propagate(h: Tensor, edge_index: Tensor, norm: Tensor) -> Tensor:
    """``out[j] = Σ_{(i, j)} norm_ij · h[i]`` (messages flow source -> target). ``h [N, H]`` -> ``[N, H]``."""
    src, dst = edge_index
    return torch.zeros_like(h).index_add(0, dst, h.index_select(0, src) * norm.unsqueeze(1))
