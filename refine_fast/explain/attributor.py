"""G edge attributors (one per class, or one shared) with parameters stacked along a group axis."""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.edge_score_mlp import edge_mlp
from .propagate import Propagation, propagate

__all__ = ["StackedAttributors", "encode", "encode_reference_norm", "score"]

Params = Dict[str, Tensor]
BIAS_INIT = ("zeros", "uniform")


class StackedAttributors(nn.Module):
    """``G`` attributors, each: node ``Linear(D -> H)`` + ReLU, then ``L`` × [ARMA-style conv
    ``ReLU(Â h W + h V + b)`` (K = T = 1, ``Â`` symmetric-normalized, no self loops) -> BatchNorm],
    and the edge head ``Linear(2H + D_e -> H) -> tanh -> Linear(H -> 1)`` over ``[z_i, z_j, a_ij]``.

    Every parameter has a leading group axis ``G``. Parameter shapes:
    ``lin_weight [G, D, H]``, ``lin_bias [G, H]``; per layer l ``conv{l}_weight [G, H, 2H]`` (columns
    ``[W | V]``: propagated | root), ``conv{l}_bias [G, H]``, ``bn{l}_weight``/``bn{l}_bias [G, H]``
    (buffers ``bn{l}_mean``/``bn{l}_var [G, H]``); head ``head_weight [G, H, 2H]`` (columns
    ``[src | dst]``), ``head_bias [G, H]``, ``head_edge_weight [G, D_e, H]`` (if ``D_e > 0``),
    ``out_weight [G, H]``, ``out_bias [G]``: the parameters of :class:`refine_fast.nn.EdgeScoreMLP`
    (``weight``, ``bias``, ``edge_weight``, ``out_weight``, ``out_bias``), computed by the same
    :func:`refine_fast.nn.edge_mlp`.
    """

    def __init__(self, groups: int, node_dim: int, edge_dim: int = 0, hidden: int = 50,
                 num_layers: int = 2, seed: Optional[int] = None, bias_init: str = "zeros"):
        super().__init__()
        if bias_init not in BIAS_INIT:
            raise ValueError(f"StackedAttributors: bias_init must be one of {BIAS_INIT}, got {bias_init!r}")
        self.bias_init = bias_init
        for name, v, lo in (("groups", groups, 1), ("node_dim", node_dim, 1), ("edge_dim", edge_dim, 0),
                            ("hidden", hidden, 1), ("num_layers", num_layers, 1)):
            if int(v) < lo:
                raise ValueError(f"StackedAttributors: {name} must be >= {lo}, got {v}")
        G, D, De, H = int(groups), int(node_dim), int(edge_dim), int(hidden)
        self.groups, self.node_dim, self.edge_dim, self.hidden, self.num_layers = G, D, De, H, int(num_layers)
        empty = lambda *shape: nn.Parameter(torch.empty(*shape))  # noqa: E731
        self.lin_weight, self.lin_bias = empty(G, D, H), empty(G, H)
        for l in range(self.num_layers):
            self.register_parameter(f"conv{l}_weight", empty(G, H, 2 * H))
            self.register_parameter(f"conv{l}_bias", empty(G, H))
            self.register_parameter(f"bn{l}_weight", empty(G, H))
            self.register_parameter(f"bn{l}_bias", empty(G, H))
            self.register_buffer(f"bn{l}_mean", torch.zeros(G, H))
            self.register_buffer(f"bn{l}_var", torch.ones(G, H))
        self.head_weight, self.head_bias = empty(G, H, 2 * H), empty(G, H)
        self.head_edge_weight = empty(G, De, H) if De > 0 else None
        self.out_weight, self.out_bias = empty(G, H), empty(G)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: Optional[int] = None):
        """Xavier-uniform weights (each group drawn independently), identity batch norm, and biases by
        ``bias_init``: ``'zeros'``, or ``'uniform'`` — U(±1/√fan_in) for the node and edge-head linears, as
        ``torch.nn.Linear`` draws them (the reference's attributors; its ARMA biases start at 0 here too)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        H = self.hidden

        def xavier(t: Tensor, fan_in: int, fan_out: int):
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            t.copy_(torch.rand(t.shape, generator=gen, dtype=torch.float64) * 2 * bound - bound)

        xavier(self.lin_weight, self.node_dim, H)
        for l in range(self.num_layers):
            xavier(getattr(self, f"conv{l}_weight"), H, H)
            getattr(self, f"conv{l}_bias").zero_()
            getattr(self, f"bn{l}_weight").fill_(1.0)
            getattr(self, f"bn{l}_bias").zero_()
            getattr(self, f"bn{l}_mean").zero_()
            getattr(self, f"bn{l}_var").fill_(1.0)
        fan_in = 2 * H + self.edge_dim  # one Linear(2H + D_e -> H), split by input rows
        xavier(self.head_weight, fan_in, H)
        if self.head_edge_weight is not None:
            xavier(self.head_edge_weight, fan_in, H)
        xavier(self.out_weight, H, 1)
        for b, fan_in in ((self.lin_bias, self.node_dim), (self.head_bias, fan_in), (self.out_bias, H)):
            if self.bias_init == "uniform":
                bound = 1.0 / math.sqrt(fan_in)
                b.copy_(torch.rand(b.shape, generator=gen, dtype=torch.float64) * 2 * bound - bound)
            else:
                b.zero_()

    def params(self) -> Params:
        return dict(self.named_parameters())

    def stats(self) -> Params:
        return dict(self.named_buffers())

    @torch.no_grad()
    def gather(self, group: Tensor) -> tuple[Params, Params]:
        """Per-instance copies: ``{name: param[group]}`` as fresh leaves requiring grad (``[B, ...]``),
        and the matching batch-norm running statistics."""
        params = {k: v.index_select(0, group).requires_grad_() for k, v in self.params().items()}
        stats = {k: v.index_select(0, group) for k, v in self.stats().items()}
        return params, stats


def encode(p: Params, stats: Params, x: Tensor, edge_index: Tensor, norm, nodes, bn_mode: str) -> Tensor:
    """Node embeddings ``z [N, H]``. ``nodes`` is a grouping (:mod:`.grouped`) of the N rows, ``norm``
    the normalized adjacency values ``[E]`` (:func:`.propagate.gcn_norm`) or a prepared
    :class:`.propagate.Propagation`, ``bn_mode`` as in :meth:`GroupSlices.batch_norm`."""
    H = p["lin_bias"].size(-1)
    h = F.relu(nodes.linear(x, p["lin_weight"], p["lin_bias"]))
    layer = 0
    while f"conv{layer}_weight" in p:
        hw = nodes.linear(h, p[f"conv{layer}_weight"], F.pad(p[f"conv{layer}_bias"], (H, 0)))
        hw_prop, hw_root = hw.split(H, dim=1)
        agg = norm(hw_prop) if isinstance(norm, Propagation) else propagate(hw_prop, edge_index, norm)
        h = F.relu(agg + hw_root)  # conv act; ReLU∘ReLU = ReLU
        h = nodes.batch_norm(h, p[f"bn{layer}_weight"], p[f"bn{layer}_bias"],
                             stats[f"bn{layer}_mean"], stats[f"bn{layer}_var"], bn_mode)
        layer += 1
    return h


def encode_reference_norm(p: Params, stats: Params, x: Tensor, edge_index: Tensor, norm, nodes,
                          graph_bounds: Sequence[int], node_graph: Tensor, momentum: float = 0.1,
                          eps: float = 1e-5) -> Tensor:
    """Node embeddings ``z [N, H]`` in pre-training with the reference code's batch norm
    (``ReFineConfig.pretrain_norm='reference'``).

    The reference scores graph i by running its class's attributor on *every* node of the batch with only
    graph i's edges, so the batch statistics it normalizes graph i with come from N rows: its own, and all
    other nodes as if they had no edges. A feature that edges switch on is then divided by a small
    deviation and amplified. Here: one edge-free pass per attributor over all N rows, and per-graph
    statistics from sums over those rows with the graph's own rows swapped in. The edge-free rows feed the
    next layer normalized with the mean of their group's statistics (the reference: graph i's; they differ
    by O(n_i / N)); the running statistics track that mean.

    ``nodes``: the rows grouped by attributor (:class:`.grouped.GroupSlices`); ``graph_bounds`` (``G+1``
    host ints): the graphs of each group, in order; ``node_graph [N]``: each row's graph in the batch.
    """
    H, N = p["lin_bias"].size(-1), x.size(0)
    h = F.relu(nodes.linear(x, p["lin_weight"], p["lin_bias"]))
    free = {g: F.relu(torch.addmm(p["lin_bias"][g], x, p["lin_weight"][g])) for g, _, _ in nodes.spans}
    layer = 0
    while f"conv{layer}_weight" in p:
        weight, bias = p[f"conv{layer}_weight"], p[f"conv{layer}_bias"]
        hw_prop, hw_root = nodes.linear(h, weight, F.pad(bias, (H, 0))).split(H, dim=1)
        agg = norm(hw_prop) if isinstance(norm, Propagation) else propagate(hw_prop, edge_index, norm)
        h_groups = F.relu(agg + hw_root).split(nodes.sizes)
        gamma, beta = p[f"bn{layer}_weight"], p[f"bn{layer}_bias"]
        running_mean, running_var = stats[f"bn{layer}_mean"], stats[f"bn{layer}_var"]
        last = f"conv{layer + 1}_weight" not in p
        parts = []
        for g, s, e in nodes.spans:
            c = F.relu(torch.addmm(bias[g], free[g], weight[g][:, H:]))  # [N, H]: every row without edges
            g0, g1 = graph_bounds[g], graph_bounds[g + 1]
            graph = node_graph[s:e] - g0
            own, own_free = h_groups[g], c[s:e]

            def per_graph(v: Tensor) -> Tensor:
                return v.new_zeros(g1 - g0, H).index_add(0, graph, v)

            mean = (c.sum(0) + per_graph(own - own_free)) / N  # [graphs of g, H]
            sq = (c.square().sum(0) + per_graph(own.square() - own_free.square())) / N
            var = (sq - mean.square()).clamp_min(0)
            scale = gamma[g] * torch.rsqrt(var + eps)
            # index_select, not mean[graph]: the backward of tensor indexing accumulates with CPU atomics
            # across threads (order-dependent sums); index_select's backward adds row by row
            parts.append((own - mean.index_select(0, graph)) * scale.index_select(0, graph) + beta[g])
            mean_g, var_g = mean.mean(0), var.mean(0)
            if not last:  # the last layer's edge-free rows feed nothing
                free[g] = (c - mean_g) * (gamma[g] * torch.rsqrt(var_g + eps)) + beta[g]
            with torch.no_grad():
                running_mean[g].lerp_(mean_g.detach(), momentum)
                running_var[g].lerp_(var_g.detach() * (N / max(N - 1, 1)), momentum)
        h = parts[0] if len(parts) == 1 else torch.cat(parts)
        layer += 1
    return h


def score(p: Params, z: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], nodes, edges,
          edge_group: Optional[Tensor]) -> Tensor:
    """Edge scores ``α [E]`` by each edge's group: the head of ``p`` through
    :func:`refine_fast.nn.edge_mlp` (``nodes`` / ``edges``: groupings of :mod:`.grouped`)."""
    if "head_edge_weight" in p and edge_attr is None:
        raise ValueError("StackedAttributors: edge_dim > 0 but the graphs have no edge_attr")
    return edge_mlp(z, edge_index, edge_attr, nodes, edges, edge_group, weight=p["head_weight"],
                    bias=p["head_bias"], edge_weight=p.get("head_edge_weight"), out_weight=p["out_weight"],
                    out_bias=p["out_bias"])
