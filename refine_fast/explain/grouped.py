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


class _SlicedLinear(torch.autograd.Function):
    """``x[s:e] @ weight[g] (+ bias[g])`` per span ``(g, s, e)`` covering all rows, each product written
    into its rows of one output (and likewise in the backward pass): no per-group ``cat`` or ``stack``."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], spans) -> Tensor:
        out = x.new_empty(x.size(0), weight.size(-1))
        for g, s, e in spans:
            if bias is None:
                torch.mm(x[s:e], weight[g], out=out[s:e])
            else:
                torch.addmm(bias[g], x[s:e], weight[g], out=out[s:e])
        ctx.save_for_backward(x, weight)
        ctx.spans, ctx.has_bias = spans, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = x.new_empty(x.shape)
            for g, s, e in ctx.spans:
                torch.mm(grad[s:e], weight[g].t(), out=grad_x[s:e])
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(weight)
            for g, s, e in ctx.spans:
                grad_w[g] = x[s:e].t() @ grad[s:e]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.new_zeros(weight.size(0), weight.size(-1))
            for g, s, e in ctx.spans:
                torch.sum(grad[s:e], 0, out=grad_b[g])
        return grad_x, grad_w, grad_b, None


class GroupSlices:
    """Rows sorted by group; ``bounds`` (``G+1`` Python ints, from 0 to the row count) delimit the groups.

    Rows are cut with ``split`` and parameters with ``unbind`` (batch norm) or written in place (linear):
    slicing per group would give a zero-padded full-size gradient per group in the backward pass."""

    def __init__(self, bounds: Sequence[int]):
        self.bounds = [int(b) for b in bounds]
        self.sizes = [e - s for s, e in zip(self.bounds[:-1], self.bounds[1:])]
        self.spans = [(g, s, e) for g, (s, e) in enumerate(zip(self.bounds[:-1], self.bounds[1:])) if e > s]

    def linear(self, x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """``x [R, F] @ weight[g] [F, H] + bias[g] [H]`` for each row's group -> ``[R, H]``."""
        if self.bounds[0] != 0 or x.size(0) != self.bounds[-1]:
            raise ValueError(f"GroupSlices.linear: x must have the groups' {self.bounds[-1]} rows, got {x.size(0)}")
        if not self.spans:
            return x.new_zeros(x.size(0), weight.size(-1))
        return _SlicedLinear.apply(x, weight, bias, self.spans)

    def batch_norm(self, h: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor,
                   mode: str, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
        """Batch norm per group. ``mode``: ``'train'`` (group batch statistics, running statistics
        updated in place), ``'batch'`` (batch statistics, no update) or ``'eval'`` (running statistics).
        A group with a single row uses its running statistics."""
        if not self.spans:
            return h
        hs, ws, bs = h.split(self.sizes), weight.unbind(0), bias.unbind(0)
        parts = []
        for g, s, e in self.spans:
            use_batch = mode != "eval" and e - s > 1
            keep = mode == "train" or not use_batch
            parts.append(F.batch_norm(hs[g], mean[g] if keep else None, var[g] if keep else None,
                                      ws[g], bs[g], use_batch, momentum, eps))
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

    def __init__(self, num_groups: int, max_rows: int, rows: Optional[Tensor] = None, sizes: Optional[Tensor] = None):
        self.B, self.M, self.rows, self.sizes = int(num_groups), int(max_rows), rows, sizes
        # built on the first 'graph' batch norm: [B, M, 1] 1 on each group's own rows, [B, 1, 1] row counts
        # (at least 1), [B, 1, 1] groups of one row
        self._valid = self._count = self._single = None

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
        """Batch norm with each group's own parameters (``[B, H]`` each): ``'eval'`` uses the group's
        running statistics ``mean``/``var``; ``'graph'`` the statistics of the group's own first
        ``sizes[b]`` rows (needs ``sizes``; padding rows do not count; a group of one row has no spread and
        uses its running statistics, as :meth:`GroupSlices.batch_norm`)."""
        if self.rows is not None:
            raise ValueError("PaddedGroups.batch_norm: expects the padded layout (rows=None)")
        hb = h.view(self.B, self.M, -1)
        if mode == "graph":
            if self.sizes is None:
                raise ValueError("PaddedGroups.batch_norm: mode='graph' needs the groups' sizes")
            if self._valid is None or self._valid.dtype != h.dtype:
                own_rows = torch.arange(self.M, device=h.device) < self.sizes.unsqueeze(1)
                self._valid = own_rows.unsqueeze(2).to(h.dtype)
                self._count = self.sizes.clamp_min(1).to(h.dtype).view(-1, 1, 1)
                self._single = (self.sizes <= 1).view(-1, 1, 1)
            mean = torch.where(self._single, mean.unsqueeze(1), (hb * self._valid).sum(1, keepdim=True) / self._count)
            centered = (hb - mean) * self._valid  # padding rows: 0, then the bias
            var = torch.where(self._single, var.unsqueeze(1), centered.square().sum(1, keepdim=True) / self._count)
            scale = weight.unsqueeze(1) * torch.rsqrt(var + eps)
            return torch.addcmul(bias.unsqueeze(1), centered, scale).view_as(h)
        if mode != "eval":
            raise ValueError(f"PaddedGroups.batch_norm: mode must be 'eval' or 'graph', got {mode!r}")
        scale = weight * torch.rsqrt(var + eps)
        shift = bias - mean * scale
        return torch.addcmul(shift.unsqueeze(1), hb, scale.unsqueeze(1)).view_as(h)
