"""Graphs packed into flat tensors once, so batches are gathered by index without re-collating."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..validation import check_batch, check_graph_ids, stack_graphs

__all__ = ["GraphBatch", "GraphPack", "KEY_STRIDE"]

KEY_STRIDE = 2**32
"""Noise key of edge e of graph g: ``g * KEY_STRIDE + e`` (e = index of the edge inside its graph)."""


@dataclass
class GraphBatch:
    """B graphs with nodes and edges contiguous per graph, in batch order.

    x ``[N, D]``, edge_index ``[2, E]`` (batch node ids), edge_attr ``[E, D_e]`` or None,
    node_ptr / edge_ptr ``[B+1]``, batch ``[N]`` and edge_batch ``[E]`` (graph of each node / edge),
    key ``[E]`` int64 noise keys; ``host_node_ptr`` / ``host_edge_ptr``: the offsets again, on the CPU,
    so that sizes are known on the host without reading the device.
    """

    x: Tensor
    edge_index: Tensor
    edge_attr: Optional[Tensor]
    node_ptr: Tensor
    edge_ptr: Tensor
    batch: Tensor
    edge_batch: Tensor
    key: Tensor
    host_node_ptr: Tensor
    host_edge_ptr: Tensor

    @property
    def num_graphs(self) -> int:
        return self.node_ptr.numel() - 1

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    @property
    def num_edges(self) -> int:
        return self.edge_index.size(1)


def _ranges(start: Tensor, count: Tensor, total: int) -> tuple[Tensor, Tensor]:
    """Concatenated ``arange(start[i], start[i] + count[i])`` (``total`` = Σ count, known on the host)
    and the output offsets ``[B+1]``."""
    out_ptr = torch.zeros(count.numel() + 1, dtype=torch.long, device=count.device)
    torch.cumsum(count, 0, out=out_ptr[1:])
    shift = torch.repeat_interleave(start - out_ptr[:-1], count, output_size=total)
    return torch.arange(total, device=count.device) + shift, out_ptr


class GraphPack:
    """A sequence of PyG ``Data`` graphs stored as flat tensors.

    Keeps ``x``, ``edge_index`` (graph-local node ids), ``edge_attr`` (2-D, optional) and the
    per-graph offsets; ``take(index)`` builds a :class:`GraphBatch` with a few vectorized gathers.
    ``graph_ids[i]`` (default ``i``) names graph i in the noise keys. The node and edge counts are also
    kept on the CPU (``host_num_nodes``, ``host_num_edges``): a batch's sizes are then known without
    reading the device.
    """

    def __init__(self, graphs: Sequence, graph_ids: Optional[Sequence[int]] = None, device=None, **checks):
        """``graphs`` are checked by :func:`refine_fast.validation.stack_graphs`; ``checks`` are its
        keyword arguments (``name``, default ``'GraphPack: graphs'``, ``node_dim``, ``edge_dim``, ...)."""
        checks.setdefault("name", "GraphPack: graphs")
        flat = stack_graphs(graphs, graph_ids=graph_ids, **checks)
        if not flat.graphs:
            raise ValueError(f"{checks['name']} must not be empty")
        device = torch.device(device) if device is not None else flat.x.device
        self.x = flat.x.to(device)
        self.edge_index = flat.edge_index.long().to(device)
        self.edge_attr = None if flat.edge_attr is None else flat.edge_attr.to(device)
        self.num_nodes = torch.tensor(flat.num_nodes, dtype=torch.long, device=device)
        self.num_edges = torch.tensor(flat.num_edges, dtype=torch.long, device=device)
        self.node_ptr = torch.cat([self.num_nodes.new_zeros(1), self.num_nodes.cumsum(0)])
        self.edge_ptr = torch.cat([self.num_edges.new_zeros(1), self.num_edges.cumsum(0)])
        self.graph_ids = flat.graph_ids.to(device)
        self.host_num_nodes = torch.tensor(flat.num_nodes, dtype=torch.long)
        self.host_num_edges = torch.tensor(flat.num_edges, dtype=torch.long)

    @classmethod
    def from_batch(cls, x: Tensor, edge_index: Tensor, batch: Optional[Tensor] = None,
                   edge_attr: Optional[Tensor] = None, graph_ids: Optional[Sequence[int]] = None,
                   **checks) -> "GraphPack":
        """Pack a PyG-style mini-batch (nodes sorted by ``batch``) without splitting it in Python.
        Edges are reordered by graph (stable); ``pack.edge_order [E]`` maps pack edges to input edges.
        The tensors are checked by :func:`refine_fast.validation.check_batch`; ``checks`` are its keyword
        arguments (``name``, default ``'GraphPack.from_batch'``, ``node_dim``, ``edge_dim``, ...)."""
        checks.setdefault("name", "GraphPack.from_batch")
        check_batch(x, edge_index, batch, edge_attr, **checks)
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        batch = batch.long()
        B = int(batch.max()) + 1 if batch.numel() else 0
        self = cls.__new__(cls)
        self.num_nodes = torch.bincount(batch, minlength=B)
        self.node_ptr = torch.cat([self.num_nodes.new_zeros(1), self.num_nodes.cumsum(0)])
        edge_graph = batch[edge_index[0]]
        self.edge_order = torch.argsort(edge_graph, stable=True)
        ei = edge_index[:, self.edge_order].long()
        self.edge_index = ei - self.node_ptr[:-1][edge_graph[self.edge_order]]
        self.num_edges = torch.bincount(edge_graph, minlength=B)
        self.edge_ptr = torch.cat([self.num_edges.new_zeros(1), self.num_edges.cumsum(0)])
        self.x = x
        if edge_attr is not None:
            edge_attr = edge_attr.view(-1, 1) if edge_attr.dim() == 1 else edge_attr
            edge_attr = edge_attr[self.edge_order]
        self.edge_attr = edge_attr
        self.graph_ids = check_graph_ids(graph_ids, B, f"{checks['name']}: graph_ids", x.device)
        self.host_num_nodes, self.host_num_edges = self.num_nodes.cpu(), self.num_edges.cpu()
        return self

    def __len__(self) -> int:
        return self.num_nodes.numel()

    def take(self, index: Tensor) -> GraphBatch:
        """Graphs ``index`` (int64 ``[B]``) as one batch, in that order. Pass ``index`` on the CPU: the
        batch's sizes then come from the host copies of the counts, and nothing waits for the device."""
        host_index = index.cpu()
        host_nn, host_ne = self.host_num_nodes[host_index], self.host_num_edges[host_index]
        zero = torch.zeros(1, dtype=torch.long)
        host_node_ptr, host_edge_ptr = torch.cat([zero, host_nn.cumsum(0)]), torch.cat([zero, host_ne.cumsum(0)])
        index = index.to(self.num_nodes.device)
        nn_, ne = self.num_nodes[index], self.num_edges[index]
        node_rows, node_ptr = _ranges(self.node_ptr[index], nn_, int(host_node_ptr[-1]))
        edge_rows, edge_ptr = _ranges(self.edge_ptr[index], ne, int(host_edge_ptr[-1]))
        arange = torch.arange(index.numel(), device=index.device)
        batch = torch.repeat_interleave(arange, nn_, output_size=node_rows.numel())
        edge_batch = torch.repeat_interleave(arange, ne, output_size=edge_rows.numel())
        edge_index = self.edge_index[:, edge_rows] + node_ptr[:-1][edge_batch]
        local = torch.arange(edge_rows.numel(), device=index.device) - edge_ptr[:-1][edge_batch]
        key = self.graph_ids[index][edge_batch] * KEY_STRIDE + local
        return GraphBatch(
            x=self.x[node_rows],
            edge_index=edge_index,
            edge_attr=None if self.edge_attr is None else self.edge_attr[edge_rows],
            node_ptr=node_ptr,
            edge_ptr=edge_ptr,
            batch=batch,
            edge_batch=edge_batch,
            key=key,
            host_node_ptr=host_node_ptr,
            host_edge_ptr=host_edge_ptr,
        )
