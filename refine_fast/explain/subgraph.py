"""The subgraph of selected edges, without the nodes it leaves isolated (as the ACC@ρ evaluation)."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from .packing import GraphBatch

__all__ = ["Subgraph", "edge_subgraph"]


class Subgraph(NamedTuple):
    x: Tensor            # [N', D]
    edge_index: Tensor   # [2, E'] in subgraph node ids
    edge_attr: Optional[Tensor]
    batch: Tensor        # [N']
    node_keep: Tensor    # bool [N]: node kept
    num_graphs: int


def edge_subgraph(b: GraphBatch, selected: Tensor) -> Subgraph:
    """Keep the ``selected`` edges (bool ``[E]``) and the nodes they touch. A graph with no selected
    edge keeps all its nodes, so every graph of the batch still has an output row."""
    edge_index = b.edge_index[:, selected]
    keep = torch.zeros(b.num_nodes, dtype=torch.bool, device=selected.device)
    keep[edge_index.reshape(-1)] = True
    has_edge = torch.zeros(b.num_graphs, dtype=torch.bool, device=selected.device)
    has_edge[b.edge_batch[selected]] = True
    keep |= ~has_edge[b.batch]
    new_id = torch.cumsum(keep, 0) - 1
    return Subgraph(
        x=b.x[keep],
        edge_index=new_id[edge_index],
        edge_attr=None if b.edge_attr is None else b.edge_attr[selected],
        batch=b.batch[keep],
        node_keep=keep,
        num_graphs=b.num_graphs,
    )
