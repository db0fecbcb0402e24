"""ReFine's edge MLP ``Linear(H, 1)(tanh(Linear(2 D + D_e, H)(cat[z_i, z_j, a_ij])))`` on the fused kernel.

The first layer is split by input rows into ``W_src``, ``W_dst`` (``[D, H]``) and ``W_edge``
(``[D_e, H]``), so that ``cat[z_i, z_j, a_ij] W = (z W_src)_i + (z W_dst)_j + a_ij W_edge``: the
node parts are per-node projections (a GEMM over the N nodes, not the E edges) and
:func:`refine_fast.ops.edge_score` does the rest per edge without any ``[E, 2 D + D_e]`` or
``[E, H]`` tensor (only ``a W_edge`` is ``[E, H]`` when there are edge features).

With ``G > 1`` groups (one MLP per class in ReFine) each edge uses its group's weights. Nodes are
then projected with every group's weights, ``[N, G H]`` by one GEMM per side, viewed as
``[N G, H]`` rows and indexed by ``i G + g`` (:func:`group_edge_index`): no gather of weights per
edge, at the price of ``G``-times larger projections. When every node belongs to one group (the
nodes of a graph explained with its predicted class), pass ``node_group`` instead: each node is
projected with its own group's weights only (``[N, H]``, one GEMM per group).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from ..ops.edge_score import edge_score

__all__ = ["EdgeScoreMLP", "EdgeScoreInputs", "group_edge_index", "grouped_linear"]


class EdgeScoreInputs(NamedTuple):
    """Per-node projections and edge-level inputs of :func:`refine_fast.ops.edge_score`."""

    p_src: Tensor  # [N_src, H] rows indexed by edge_index[0]
    p_dst: Tensor  # [N_dst, H] rows indexed by edge_index[1]
    edge_index: Tensor  # [2, E]
    edge_term: Optional[Tensor]  # [E, H] or None
    group: Optional[Tensor]  # [E] or None


def group_edge_index(edge_index: Tensor, group: Tensor, groups: int) -> Tensor:
    """Rows ``(i G + g, j G + g)`` of edge ``(i, j)`` in group ``g``, for projections of every group
    ``[N, G, H]`` viewed as ``[N G, H]``.

    Args:
        edge_index: ``[2, E]`` int64.
        group: ``[E]`` int64 in ``[0, groups)``.
        groups: ``G``.

    Returns:
        ``[2, E]`` int64.
    """
    return edge_index * groups + group


def grouped_linear(x: Tensor, group: Optional[Tensor], weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """Row ``m`` of ``x`` times ``weight[group[m]]`` (plus ``bias[group[m]]``), one GEMM per group.

    Args:
        x: ``[M, D_in]``.
        group: ``[M]`` int64 in ``[0, G)``, or None (group 0).
        weight: ``[G, D_in, H]``.
        bias: ``[G, H]`` or None.

    Returns:
        ``[M, H]``.
    """
    G = weight.size(0)
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


class EdgeScoreMLP(nn.Module):
    """``G`` edge MLPs ``Linear(H, 1)(tanh(Linear(2 D + D_e, H)(cat[z_i, z_j, a_ij])))``.

    Parameters: ``W_src``, ``W_dst`` ``[G, D, H]``, ``W_edge`` ``[G, D_e, H]`` (if ``D_e > 0``),
    ``b1`` ``[G, H]``; ``weight`` ``[G, H]``, ``bias`` ``[G]``. Group ``g``'s first layer is
    ``Linear(2 D + D_e, H)`` with weight ``cat[W_src[g], W_dst[g], W_edge[g]].T`` and bias ``b1[g]``,
    its second ``Linear(H, 1)`` with weight ``weight[g]`` and bias ``bias[g]``.

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
        self.W_src = nn.Parameter(torch.empty(G, D, H))
        self.W_dst = nn.Parameter(torch.empty(G, D, H))
        self.W_edge = nn.Parameter(torch.empty(G, De, H)) if De > 0 else None
        self.b1 = nn.Parameter(torch.empty(G, H))
        self.weight = nn.Parameter(torch.empty(G, H))
        self.bias = nn.Parameter(torch.empty(G))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """Xavier-uniform weights (as ReFine's reference), biases as ``nn.Linear``'s default."""
        fan_in = 2 * self.node_dim + self.edge_dim
        bound = math.sqrt(6.0 / (fan_in + self.hidden))  # of the whole first layer, split by rows
        for w in (self.W_src, self.W_dst, self.W_edge):
            if w is not None:
                nn.init.uniform_(w, -bound, bound)
        nn.init.uniform_(self.b1, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
        nn.init.uniform_(self.weight, -math.sqrt(6.0 / (self.hidden + 1)), math.sqrt(6.0 / (self.hidden + 1)))
        nn.init.uniform_(self.bias, -1.0 / math.sqrt(self.hidden), 1.0 / math.sqrt(self.hidden))

    def project(
        self,
        z: Tensor,
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        group: Optional[Tensor] = None,
        node_group: Optional[Tensor] = None,
    ) -> EdgeScoreInputs:
        """The first layer as per-node projections and an edge term (see the module docstring).

        Args:
            z: ``[N, D]`` node embeddings.
            edge_index: ``[2, E]`` int64.
            edge_attr: ``[E, D_e]``, required iff ``edge_dim > 0``.
            group: ``[E]`` int64 in ``[0, G)`` or None (group 0).
            node_group: ``[N]`` int64 in ``[0, G)`` or None; when given, both ends of every edge
                must share it (and it must equal ``group`` where given).

        Returns:
            :class:`EdgeScoreInputs`, to pass to :meth:`score`.
        """
        if z.dim() != 2 or z.size(1) != self.node_dim:
            raise ValueError(f"EdgeScoreMLP: z must have shape [N, {self.node_dim}], got {tuple(z.shape)}")
        if (edge_attr is None) != (self.W_edge is None):
            raise ValueError(f"EdgeScoreMLP: edge_attr is required iff edge_dim > 0 (edge_dim = {self.edge_dim})")
        G = self.groups
        if node_group is not None:
            edge_group = node_group.index_select(0, edge_index[0])
            if bool((edge_group != node_group.index_select(0, edge_index[1])).any()):
                raise ValueError("EdgeScoreMLP: node_group differs between the two ends of an edge")
            if group is not None and bool((edge_group != group).any()):
                raise ValueError("EdgeScoreMLP: group disagrees with node_group of the edges")
            group = edge_group
            p_src = grouped_linear(z, node_group, self.W_src, self.b1)
            p_dst = grouped_linear(z, node_group, self.W_dst)
        elif G == 1 or group is None:
            p_src = torch.addmm(self.b1[0], z, self.W_src[0])
            p_dst = z @ self.W_dst[0]
        else:  # every group's projection of every node: [N, G H] viewed as [N G, H]
            D, H = self.node_dim, self.hidden
            p_src = torch.addmm(self.b1.reshape(-1), z, self.W_src.transpose(0, 1).reshape(D, G * H)).view(-1, H)
            p_dst = (z @ self.W_dst.transpose(0, 1).reshape(D, G * H)).view(-1, H)
            edge_index = group_edge_index(edge_index, group, G)
        edge_term = None
        if self.W_edge is not None:
            edge_term = grouped_linear(edge_attr, group, self.W_edge)
        return EdgeScoreInputs(p_src, p_dst, edge_index, edge_term, group)

    def score(
        self,
        p_src: Tensor,
        p_dst: Tensor,
        edge_index: Tensor,
        edge_term: Optional[Tensor] = None,
        group: Optional[Tensor] = None,
    ) -> Tensor:
        """Second half of the MLP on given projections: :func:`refine_fast.ops.edge_score` with this
        module's ``weight`` and ``bias``. Returns ``[E]``."""
        return edge_score(p_src, p_dst, edge_index, self.weight, self.bias, edge_term, group)

    def forward(
        self,
        z: Tensor,
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        group: Optional[Tensor] = None,
        node_group: Optional[Tensor] = None,
    ) -> Tensor:
        """Edge scores ``[E]`` (arguments as in :meth:`project`)."""
        return self.score(*self.project(z, edge_index, edge_attr, group, node_group))

    def extra_repr(self) -> str:
        return f"node_dim={self.node_dim}, hidden={self.hidden}, edge_dim={self.edge_dim}, groups={self.groups}"
