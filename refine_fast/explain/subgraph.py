"""The explanation subgraph of ACC@ρ and of fine-tuning: the selected edges and the nodes they touch.

Unlike PyG's ``Data.edge_subgraph`` (which keeps every node), nodes left without a selected edge are
dropped and the rest relabeled, as the paper's (and the reference implementation's) ACC@ρ does.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

__all__ = ["Subgraph", "explanation_subgraph"]


class Subgraph(NamedTuple):
    x: Tensor            # [N', D]
    edge_index: Tensor   # [2, E'] in subgraph node ids
    edge_attr: Optional[Tensor]  # [E', D_e] or None
    batch: Tensor        # [N'] graph of each node


def explanation_subgraph(graphs, selected: Tensor) -> Subgraph:
    """Keep the ``selected`` edges (bool ``[E]``) of a batch of graphs and the nodes they touch. A graph
    with no selected edge keeps all its nodes, so every graph of the batch still has an output row.

    ``graphs``: a disjoint union with ``x [N, D]``, ``edge_index [2, E]``, ``edge_attr [E, D_e]`` or
    None, ``batch [N]``, ``edge_batch [E]`` and ``num_graphs`` (a
    :class:`~refine_fast.explain.packing.GraphBatch` or :class:`~refine_fast.metrics.EvalGraphs`)."""
    edge_index = graphs.edge_index[:, selected]
    keep = torch.zeros(graphs.x.size(0), dtype=torch.bool, device=selected.device)
    keep[edge_index.reshape(-1)] = True
    has_edge = torch.zeros(graphs.num_graphs, dtype=torch.bool, device=selected.device)
    has_edge[graphs.edge_batch[selected]] = True
    keep |= ~has_edge[graphs.batch]
    new_id = torch.cumsum(keep, 0) - 1
    return Subgraph(
        x=graphs.x[keep],
        edge_index=new_id[edge_index],
        edge_attr=None if graphs.edge_attr is None else graphs.edge_attr[selected],
        batch=graphs.batch[keep],
    )
