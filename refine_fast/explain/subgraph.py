"""The explanation subgraph of ACC@ρ and of fine-tuning: the selected edges and the nodes they touch.

Unlike PyG's ``Data.edge_subgraph`` (which keeps every node), nodes left without a selected edge are
dropped and the rest relabeled, as the paper's (and the reference implementation's) ACC@ρ does.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from ..ops.segment_select import select_counts

__all__ = ["Subgraph", "explanation_subgraph", "subgraph_slots"]


class Subgraph(NamedTuple):
    x: Tensor            # [N', D]
    edge_index: Tensor   # [2, E'] in subgraph node ids
    edge_attr: Optional[Tensor]  # [E', D_e] or None
    batch: Tensor        # [N'] graph of each node
    edges: Tensor        # [E'] int64: which input edges were kept (to gather their masks)
    num_graphs: int      # B, or B + 1 for a padded subgraph (its last graph holds the padding rows)


def subgraph_slots(node_ptr: Tensor, edge_ptr: Tensor, ratio: float) -> Tuple[int, int]:
    """``(K, S)`` for :func:`explanation_subgraph` when each graph keeps its top ``ratio`` edges
    (:func:`~refine_fast.ops.segment_select.select_counts`), from host offsets ``[B+1]``: K selected edges
    and a bound S on the kept nodes — at most two per selected edge and at most the graph's nodes, and
    every node of a graph without edges (it keeps them all)."""
    k = select_counts(edge_ptr, ratio)
    n = node_ptr.diff()
    kept = torch.where(edge_ptr.diff() > 0, torch.minimum(2 * k, n), n)
    K, S = torch.stack([k.sum(), kept.sum()]).tolist()
    return K, S


def explanation_subgraph(graphs, selected: Tensor, slots: Optional[Tuple[int, int]] = None) -> Subgraph:
    """Keep the ``selected`` edges (bool ``[E]``) of a batch of graphs and the nodes they touch. A graph
    with no selected edge keeps all its nodes, so every graph of the batch still has an output row.

    ``graphs``: a disjoint union with ``x [N, D]``, ``edge_index [2, E]``, ``edge_attr [E, D_e]`` or
    None, ``batch [N]``, ``edge_batch [E]`` and ``num_graphs`` (a
    :class:`~refine_fast.explain.packing.GraphBatch` or :class:`~refine_fast.metrics.EvalGraphs`).

    ``slots = (K, S)``, both known on the host (:func:`subgraph_slots`): ``K`` selected edges and at most
    ``S`` kept nodes. Then the
    sizes are not read from the device (no host sync, fixed shapes): the subgraph has ``K`` edges and
    ``S + 1`` node rows, the kept nodes first; the other rows are zero-feature nodes without edges in an
    extra graph ``B`` (``num_graphs = B + 1``), whose output row the caller drops. The kept graphs' rows,
    edges and order are those of the unpadded subgraph."""
    B, N = graphs.num_graphs, graphs.x.size(0)
    if slots is None:
        edges = selected.nonzero().view(-1)
    else:
        edges = torch.nonzero_static(selected, size=slots[0]).view(-1)
    edge_index = graphs.edge_index.index_select(1, edges)
    keep = torch.zeros(N, dtype=torch.bool, device=selected.device)
    keep[edge_index.reshape(-1)] = True
    has_edge = torch.zeros(B, dtype=torch.bool, device=selected.device)
    has_edge[graphs.edge_batch.index_select(0, edges)] = True
    keep |= ~has_edge[graphs.batch]
    new_id = torch.cumsum(keep, 0) - 1
    if slots is None:
        nodes = keep.nonzero().view(-1)
        x, batch, num_graphs = graphs.x.index_select(0, nodes), graphs.batch.index_select(0, nodes), B
    else:
        nodes = torch.nonzero_static(keep, size=slots[1] + 1, fill_value=N).view(-1)  # >= 1 padding row
        x = torch.cat([graphs.x, graphs.x.new_zeros(1, graphs.x.size(1))]).index_select(0, nodes)
        batch = torch.cat([graphs.batch, graphs.batch.new_full((1,), B)]).index_select(0, nodes)
        num_graphs = B + 1
    return Subgraph(
        x=x,
        edge_index=new_id[edge_index],
        edge_attr=None if graphs.edge_attr is None else graphs.edge_attr.index_select(0, edges),
        batch=batch,
        edges=edges,
        num_graphs=num_graphs,
    )
