"""ReFine's edge MLP ``Linear(H, 1)(tanh(Linear(2 D + D_e, H)(cat[z_i, z_j, a_ij])))`` on the fused kernel.

:func:`edge_mlp` is its one implementation: :class:`EdgeScoreMLP` calls it, and so do ReFine's stacked
attributors (:func:`refine_fast.explain.attributor.score`), with their per-instance parameter copies.

The first layer is split by input rows into ``W_src``, ``W_dst`` (``[D, H]``) and ``W_edge``
(``[D_e, H]``), so that ``cat[z_i, z_j, a_ij] W = (z W_src)_i + (z W_dst)_j + a_ij W_edge``: the
node parts are per-node projections (one GEMM over the N nodes for both, ``z [W_src | W_dst]``, not
over the E edges) and :func:`refine_fast.ops.edge_score` does the rest per edge without any
``[E, 2 D + D_e]`` or ``[E, H]`` tensor (only ``a W_edge`` is ``[E, H]`` when there are edge features).

With ``G > 1`` groups (one MLP per class in ReFine) each edge uses its group's weights. How rows
(nodes, edges) map to groups is a *row layout*: any object with ``linear(x [R, F], weight [G, F, K],
bias [G, K] | None) -> [R', K]``. This module has two — :class:`RowGroups` (each row its own group,
rows in any order) and :class:`EveryGroup` (every row projected with every group's weights) — and
ReFine's attributors bring the layouts of :mod:`refine_fast.explain.grouped` (rows sorted by group,
or padded per instance).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.edge_score import edge_score

__all__ = ["EdgeScoreMLP", "edge_mlp", "RowGroups", "EveryGroup", "group_edge_index"]


class RowGroups:
    """Row ``m`` in group ``group[m]`` (``[R]`` int64 in ``[0, G)``; None: every row in group 0), rows in
    any order: :meth:`linear` is one GEMM per group over that group's rows."""

    def __init__(self, group: Optional[Tensor] = None):
        self.group = group

    def linear(self, x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """Row ``m`` of ``x [R, F]`` times ``weight[group[m]]`` (``[G, F, K]``) plus ``bias[group[m]]``
        (``[G, K]`` or None) -> ``[R, K]``."""
        G, group = weight.size(0), self.group
        if G == 1 or group is None:
            return x @ weight[0] if bias is None else torch.addmm(bias[0], x, weight[0])
        order = torch.argsort(group, stable=True)
        counts = torch.bincount(group, minlength=G).tolist()
        parts = [
            rows @ weight[g] if bias is None else torch.addmm(bias[g], rows, weight[g])
            for g, rows in enumerate(x.index_select(0, order).split(counts))
        ]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        return torch.cat(parts).index_select(0, inverse)


class EveryGroup:
    """Every row projected with every group's weights: :meth:`linear` gives ``[R G, K]``, row ``r G + g``
    = row ``r`` in group ``g`` (one GEMM; index it with :func:`group_edge_index`)."""

    def linear(self, x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """``x [R, F]``, ``weight [G, F, K]``, ``bias [G, K]`` or None -> ``[R G, K]``."""
        G, F_, K = weight.shape
        flat = weight.transpose(0, 1).reshape(F_, G * K)
        out = x @ flat if bias is None else torch.addmm(bias.reshape(-1), x, flat)
        return out.view(-1, K)


def group_edge_index(edge_index: Tensor, group: Tensor, groups: int) -> Tensor:
    """Rows ``(i G + g, j G + g)`` of edge ``(i, j)`` in group ``g``, for projections of every group
    ``[N, G, H]`` viewed as ``[N G, H]`` (:class:`EveryGroup`).

    Args:
        edge_index: ``[2, E]`` int64.
        group: ``[E]`` int64 in ``[0, groups)``.
        groups: ``G``.

    Returns:
        ``[2, E]`` int64.
    """
    return edge_index * groups + group


def edge_mlp(z: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor], nodes, edges, group: Optional[Tensor], *,
             weight: Tensor, bias: Tensor, edge_weight: Optional[Tensor], out_weight: Tensor,
             out_bias: Tensor) -> Tensor:
    """Edge scores ``out(tanh(W_src z_i + W_dst z_j + W_edge a_ij + b)) + c`` by each edge's group -> ``[E]``.

    Args:
        z: ``[N, D]`` node embeddings.
        edge_index: ``[2, E]`` int64, rows of the projections ``nodes.linear`` returns.
        edge_attr: ``[E, D_e]``, used iff ``edge_weight`` is given.
        nodes, edges: the row layouts (see the module docstring) of the nodes and of the edges.
        group: ``[E]`` int64 group of each edge for the second layer, or None (group 0).
        weight: ``[G, D, 2H]``, columns ``[W_src | W_dst]``; bias ``b`` ``[G, H]``.
        edge_weight: ``W_edge`` ``[G, D_e, H]`` or None (no edge features).
        out_weight, out_bias: the second layer, ``[G, H]`` and ``[G]``.
    """
    H = bias.size(-1)
    proj = nodes.linear(z, weight, F.pad(bias, (0, H)))
    edge_term = None if edge_weight is None else edges.linear(edge_attr.to(z.dtype), edge_weight)
    p_src, p_dst = proj.split(H, dim=1)
    return edge_score(p_src, p_dst, edge_index, out_weight, out_bias, edge_term, group)


class EdgeScoreMLP(nn.Module):
    """``G`` edge MLPs ``Linear(H, 1)(tanh(Linear(2 D + D_e, H)(cat[z_i, z_j, a_ij])))`` (:func:`edge_mlp`).

    Parameters: ``weight`` ``[G, D, 2H]`` (columns ``[W_src | W_dst]``), ``edge_weight`` ``[G, D_e, H]``
    (if ``D_e > 0``), ``bias`` ``[G, H]``; ``out_weight`` ``[G, H]``, ``out_bias`` ``[G]``. Group ``g``'s
    first layer is ``Linear(2 D + D_e, H)`` with weight ``cat[W_src[g], W_dst[g], W_edge[g]].T`` and bias
    ``bias[g]``, its second ``Linear(H, 1)`` with weight ``out_weight[g]`` and bias ``out_bias[g]``.

    Args:
        node_dim: ``D``.
        hidden: ``H``.
        edge_dim: ``D_e`` (0: no edge features).
        groups: ``G``.
    """

    def __init__(self, node_dim: int, hidden: int, edge_dim: int = 0, groups: int = 1):
        super().__init__()
        for name, value, low in (("node_dim", node_dim, 1), ("hidden", hidden, 1), ("edge_dim", edge_dim, 0),
                                 ("groups", groups, 1)):
            if int(value) < low:
                raise ValueError(f"EdgeScoreMLP: {name} must be >= {low}, got {value}")
        self.node_dim, self.hidden, self.edge_dim, self.groups = int(node_dim), int(hidden), int(edge_dim), int(groups)
        G, D, H, De = self.groups, self.node_dim, self.hidden, self.edge_dim
        self.weight = nn.Parameter(torch.empty(G, D, 2 * H))
        self.edge_weight = nn.Parameter(torch.empty(G, De, H)) if De > 0 else None
        self.bias = nn.Parameter(torch.empty(G, H))
        self.out_weight = nn.Parameter(torch.empty(G, H))
        self.out_bias = nn.Parameter(torch.empty(G))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """Xavier-uniform weights (as ReFine's reference), biases as ``nn.Linear``'s default."""
        fan_in = 2 * self.node_dim + self.edge_dim
        bound = math.sqrt(6.0 / (fan_in + self.hidden))  # of the whole first layer, split by rows
        for w in (self.weight, self.edge_weight):
            if w is not None:
                nn.init.uniform_(w, -bound, bound)
        nn.init.uniform_(self.bias, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
        nn.init.uniform_(self.out_weight, -math.sqrt(6.0 / (self.hidden + 1)), math.sqrt(6.0 / (self.hidden + 1)))
        nn.init.uniform_(self.out_bias, -1.0 / math.sqrt(self.hidden), 1.0 / math.sqrt(self.hidden))

    def forward(
        self,
        z: Tensor,
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        group: Optional[Tensor] = None,
        node_group: Optional[Tensor] = None,
    ) -> Tensor:
        """Edge scores ``[E]``.

        Args:
            z: ``[N, D]`` node embeddings.
            edge_index: ``[2, E]`` int64.
            edge_attr: ``[E, D_e]``, required iff ``edge_dim > 0``.
            group: ``[E]`` int64 in ``[0, G)`` or None (group 0). Without ``node_group`` every node is
                projected with every group's weights (``[N G, H]``, :class:`EveryGroup`).
            node_group: ``[N]`` int64 in ``[0, G)`` or None; when given, both ends of every edge must
                share it (and it must equal ``group`` where given), and each node is projected with its
                own group's weights only (``[N, H]``, :class:`RowGroups`; e.g. the nodes of graphs
                explained each with its predicted class).
        """
        if z.dim() != 2 or z.size(1) != self.node_dim:
            raise ValueError(f"EdgeScoreMLP: z must have shape [N, {self.node_dim}], got {tuple(z.shape)}")
        if (edge_attr is None) != (self.edge_weight is None):
            raise ValueError(f"EdgeScoreMLP: edge_attr is required iff edge_dim > 0 (edge_dim = {self.edge_dim})")
        if node_group is not None:
            edge_group = node_group.index_select(0, edge_index[0])
            if bool((edge_group != node_group.index_select(0, edge_index[1])).any()):
                raise ValueError("EdgeScoreMLP: node_group differs between the two ends of an edge")
            if group is not None and bool((edge_group != group).any()):
                raise ValueError("EdgeScoreMLP: group disagrees with node_group of the edges")
            group, nodes = edge_group, RowGroups(node_group)
        elif self.groups == 1 or group is None:
            group, nodes = None, RowGroups()
        else:
            nodes, edge_index = EveryGroup(), group_edge_index(edge_index, group, self.groups)
        return edge_mlp(z, edge_index, edge_attr, nodes, RowGroups(group), group, weight=self.weight,
                        bias=self.bias, edge_weight=self.edge_weight, out_weight=self.out_weight,
                        out_bias=self.out_bias)

    def extra_repr(self) -> str:
        return f"node_dim={self.node_dim}, hidden={self.hidden}, edge_dim={self.edge_dim}, groups={self.groups}"
