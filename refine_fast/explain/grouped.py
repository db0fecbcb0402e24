"""Linear and batch-norm layers whose parameters carry a leading group axis ``G``.

Rows (nodes or edges) are assigned to groups in one of two layouts:

* :class:`GroupSlices` — rows sorted by group, group g owns ``rows[bounds[g]:bounds[g+1]]``; one matmul
  per group (a short Python loop over the few classes; used in pre-training, G = number of classes);
* :class:`PaddedGroups` — B groups padded to a common row count M, ``[B*M, F]``; one batched
  matmul for all groups (used in fine-tuning, one group per explained instance; :func:`plan_buckets`
  splits a batch into a few such blocks of similar sizes to keep the padding small).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GroupSlices", "PaddedGroups", "plan_buckets"]


class GroupSlices:
    """Rows sorted by group; ``bounds`` (``G+1`` Python ints) delimit the groups."""

    def __init__(self, bounds: Sequence[int]):
        self.bounds = [int(b) for b in bounds]
        self.spans = [(g, s, e) for g, (s, e) in enumerate(zip(self.bounds[:-1], self.bounds[1:])) if e > s]

    def linear(self, x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """``x [R, F] @ weight[g] [F, H] + bias[g] [H]`` for each row's group -> ``[R, H]``."""
        parts = [x[s:e] @ weight[g] if bias is None else torch.addmm(bias[g], x[s:e], weight[g])
                 for g, s, e in self.spans]
        if not parts:
            return x.new_zeros(x.size(0), weight.size(-1))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def batch_norm(self, h: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor,
                   mode: str, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
        """Batch norm per group. ``mode``: ``'train'`` (group batch statistics, running statistics
        updated in place), ``'batch'`` (batch statistics, no update) or ``'eval'`` (running statistics).
        A group with a single row uses its running statistics."""
        parts = []
        for g, s, e in self.spans:
            use_batch = mode != "eval" and e - s > 1
            keep = mode == "train" or not use_batch
            parts.append(F.batch_norm(h[s:e], mean[g] if keep else None, var[g] if keep else None,
                                      weight[g], bias[g], use_batch, momentum, eps))
        if not parts:
            return h
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def plan_buckets(sizes: Sequence[int], max_buckets: int = 8, overhead: float = 0.0) -> List[Tuple[int, int, int]]:
    """Split consecutive groups with ``sizes`` rows into runs ``(g0, g1, M)`` (M = largest size in the
    run), merging the neighbours that add the least padding first, while there are more than
    ``max_buckets`` runs or the cheapest merge adds fewer than ``overhead`` padded rows (the cost of
    one more run, in rows)."""
    runs: List[List[int]] = []
    for g, n in enumerate(sizes):
        if runs and runs[-1][2] == n:
            runs[-1][1] = g + 1
        else:
            runs.append([g, g + 1, int(n)])

    def cost(a, b):
        M = max(a[2], b[2])
        return (b[1] - a[0]) * M - (a[1] - a[0]) * a[2] - (b[1] - b[0]) * b[2]
    while len(runs) > 1:
        i = min(range(len(runs) - 1), key=lambda j: cost(runs[j], runs[j + 1]))
        if len(runs) <= max_buckets and cost(runs[i], runs[i + 1]) >= overhead:
            break
        runs[i:i + 2] = [[runs[i][0], runs[i + 1][1], max(runs[i][2], runs[i + 1][2])]]
    return [tuple(r) for r in runs]


class PaddedGroups:
    """B groups padded to M rows each: row r of group b is row ``b*M + r`` of a ``[B*M, F]`` tensor.
    Without ``rows`` the inputs are already padded; with ``rows`` (int64 ``[N]``, padded position of
    each compact row) inputs and outputs are compact ``[N, F]``."""

    def __init__(self, num_groups: int, max_rows: int, rows: Optional[Tensor] = None):
        self.B, self.M, self.rows = int(num_groups), int(max_rows), rows

    def linear(self, x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """``x @ weight[b] + bias[b]`` with ``weight [B, F, H]``, ``bias [B, H]``: one batched matmul."""
        if self.rows is not None:
            x = x.new_zeros(self.B * self.M, x.size(1)).index_copy(0, self.rows, x)
        xb = x.view(self.B, self.M, -1)
        out = torch.bmm(xb, weight) if bias is None else torch.baddbmm(bias.unsqueeze(1), xb, weight)
        out = out.view(self.B * self.M, -1)
        return out if self.rows is None else out.index_select(0, self.rows)

    def batch_norm(self, h: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor,
                   mode: str = "eval", momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
        """Eval-mode batch norm with each group's own running statistics (``[B, H]`` each)."""
        if mode != "eval":
            raise ValueError(f"PaddedGroups.batch_norm: only mode='eval' is supported, got {mode!r}")
        if self.rows is not None:
            raise ValueError("PaddedGroups.batch_norm: expects the padded layout (rows=None)")
        scale = weight * torch.rsqrt(var + eps)
        shift = bias - mean * scale
        return torch.addcmul(shift.unsqueeze(1), h.view(self.B, self.M, -1), scale.unsqueeze(1)).view_as(h)
