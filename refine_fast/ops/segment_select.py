"""Segmented top-rho selection of ReFine: in each graph keep a ratio of its edges.

Segment s owns edges ``ptr[s]:ptr[s + 1]`` and keeps ``k_s = min(max(ceil(ratio * n_s), 1), n_s)``
of them (0 if empty). ``ratio * n_s`` is computed in float64 and multiplied by ``1 - 1e-6``
before the ceil, so products that are integers up to rounding (``0.3 * 10``, or a float32
ratio) do not round up to the next integer.

Deterministic: the k_s highest scores, ties to the lower index.
Stochastic: k_s edges drawn without replacement with probability proportional to ``scores``
(probabilities in [0, 1] in ReFine; any non-negative weights work), by Gumbel-top-k: the k_s
largest ``score / E`` with ``E = -log(u) ~ Exp(1)`` (the same order as ``log(score) + Gumbel``),
``u`` the float64 counter-based draw of (seed, key, step) on stream 1, independent of
concrete_sample's stream 0. Zero scores are only taken when a segment has fewer than k_s
positive scores (then by lower index).
NaN scores raise an error, and so do negative scores when stochastic.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .concrete_sample import SELECT_STREAM, _int64, uniform_reference
from .devices import check_same_device

__all__ = ["segment_select", "segment_select_reference", "select_counts"]

SELECT_COUNT_SLACK = 1e-6  # relative slack of the ceil, the same as csrc/ops/common/select.h


def segment_select(
    scores: Tensor,
    ptr: Tensor,
    ratio: float,
    key: Tensor | None = None,
    seed: int = 0,
    step: int = 0,
    stochastic: bool = True,
) -> Tensor:
    """Select k_s edges per segment.

    Args:
        scores: ``[E]`` floating, edge scores (probabilities in [0, 1] when stochastic).
        ptr: ``[S + 1]`` int64, segment boundaries (``ptr[0] = 0``, ``ptr[-1] = E``, non-decreasing).
        ratio: in (0, 1], the same for every segment (a Python float: no tensor, no device copy).
        key: ``[E]`` int64 per-edge keys; required when ``stochastic``.
        seed: the run's seed.
        step: the training step, in [0, 2**32).
        stochastic: draw without replacement instead of taking the top scores.

    Returns:
        ``[E]`` bool mask of the selected edges.
    """
    return torch.ops.refine_fast.segment_select(scores, ptr, float(ratio), key, _int64(seed), step, stochastic)


def select_counts(ptr: Tensor, ratio: float) -> Tensor:
    """``[S]`` int64 numbers of edges kept per segment, k_s."""
    n = ptr.diff()
    k = torch.ceil(float(ratio) * n.to(torch.float64) * (1.0 - SELECT_COUNT_SLACK)).to(torch.int64)
    return torch.minimum(k.clamp(min=1), n)


def segment_select_reference(
    scores: Tensor,
    ptr: Tensor,
    ratio: float,
    key: Tensor | None = None,
    seed: int = 0,
    step: int = 0,
    stochastic: bool = True,
) -> Tensor:
    """Pure-PyTorch :func:`segment_select`: one stable sort by key, one by segment, rank < k_s."""
    num_edges = scores.numel()
    if torch.isnan(scores).any():
        raise ValueError("segment_select_reference: scores must not contain NaN")
    rank_key = scores.to(torch.float64)
    if stochastic:
        if key is None:
            raise ValueError("segment_select_reference: key is required when stochastic=True")
        u = uniform_reference(key, seed, step, torch.float64, stream=SELECT_STREAM)
        rank_key = rank_key / -torch.log(u)
    counts = ptr.diff()
    segment = torch.repeat_interleave(torch.arange(counts.numel(), device=ptr.device), counts)
    order = torch.sort(rank_key, descending=True, stable=True).indices
    order = order[torch.sort(segment[order], stable=True).indices]
    rank = torch.arange(num_edges, device=scores.device) - ptr[:-1][segment]
    mask = torch.zeros(num_edges, dtype=torch.bool, device=scores.device)
    mask[order] = rank < select_counts(ptr, ratio)[segment]
    return mask


@torch.library.register_fake("refine_fast::segment_select")
def _segment_select_fake(scores, ptr, ratio, key, seed, step, stochastic):
    check_same_device("segment_select", scores=scores, ptr=ptr, key=key)
    return scores.new_empty(scores.shape, dtype=torch.bool)
