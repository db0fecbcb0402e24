"""The target GNNs the paper explains, as plain PyG modules of ``MessagePassing`` layers.

Every model maps ``(x [N, F], edge_index [2, E], edge_attr [E, D] | None, batch [N] | None)`` to
graph logits ``[B, C]``; ``embed`` returns the pooled graph representation ``[B, hidden]``. Because
all message passing goes through PyG layers with explain support, PyG's edge masks
(``torch_geometric.explain.algorithm.utils.set_masks``) multiply every message.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import GINEConv, LEConv, global_mean_pool

__all__ = ["TargetGNN", "BA3MotifNet", "MutagenicityNet", "MNISTSuperpixelNet", "MODEL_CLASSES"]


def mean_pool(h: Tensor, batch: Optional[Tensor], num_graphs: Optional[int] = None) -> Tensor:
    """Mean of each graph's node rows ``h [N, H]`` -> ``[B, H]`` (one graph when ``batch`` is None).
    ``num_graphs`` given: ``batch.max()`` is not read from the device."""
    return global_mean_pool(h, batch, size=num_graphs)


def _mlp(hidden: int, out_channels: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out_channels))


class TargetGNN(nn.Module):
    """Base class: keeps the constructor arguments (plain types) so the model can be saved and rebuilt."""

    def __init__(self, **config: Any):
        super().__init__()
        self.config: Dict[str, Any] = dict(config)

    def embed(self, x: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor] = None,
              batch: Optional[Tensor] = None, num_graphs: Optional[int] = None) -> Tensor:
        """The pooled graph representation ``[B, hidden]`` (``num_graphs`` = B, optional)."""
        raise NotImplementedError

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor] = None,
                batch: Optional[Tensor] = None, num_graphs: Optional[int] = None) -> Tensor:
        """Graph logits ``[B, C]``."""
        return self.head(self.embed(x, edge_index, edge_attr, batch, num_graphs))


class BA3MotifNet(TargetGNN):
    """BA-3motif: LEConv ×2 (ReLU), mean pool, MLP. A one-column ``edge_attr`` is used as the LEConv
    edge weight (ones on BA-3motif)."""

    def __init__(self, in_channels: int = 4, hidden: int = 64, num_classes: int = 3,
                 num_layers: int = 2, dropout: float = 0.0):
        super().__init__(in_channels=in_channels, hidden=hidden, num_classes=num_classes,
                         num_layers=num_layers, dropout=dropout)
        self.convs = nn.ModuleList(
            LEConv(in_channels if i == 0 else hidden, hidden) for i in range(num_layers))
        self.head = _mlp(hidden, num_classes, dropout)

    def embed(self, x, edge_index, edge_attr=None, batch=None, num_graphs=None):
        weight = None if edge_attr is None else edge_attr.reshape(-1)
        for conv in self.convs:
            x = torch.relu(conv(x, edge_index, weight))
        return mean_pool(x, batch, num_graphs)


class _GINENet(TargetGNN):
    """GINE layers (MLP update, edge features added to messages), mean pool, MLP."""

    def __init__(self, in_channels: int, edge_dim: int, hidden: int, num_classes: int,
                 num_layers: int, dropout: float):
        super().__init__(in_channels=in_channels, edge_dim=edge_dim, hidden=hidden,
                         num_classes=num_classes, num_layers=num_layers, dropout=dropout)
        self.edge_dim = edge_dim
        self.lin_in = nn.Linear(in_channels, hidden)
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden)), train_eps=True, edge_dim=edge_dim)
            for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(num_layers))
        self.head = _mlp(hidden, num_classes, dropout)

    def embed(self, x, edge_index, edge_attr=None, batch=None, num_graphs=None):
        if edge_attr is None:
            edge_attr = x.new_zeros(edge_index.size(1), self.edge_dim)
        h = self.lin_in(x)
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h, edge_index, edge_attr)))
        return mean_pool(h, batch, num_graphs)


class MutagenicityNet(_GINENet):
    """Mutagenicity: GINE ×3 over one-hot atoms (14) and one-hot bonds (3), mean pool, MLP."""

    def __init__(self, in_channels: int = 14, edge_dim: int = 3, hidden: int = 64,
                 num_classes: int = 2, num_layers: int = 3, dropout: float = 0.2):
        super().__init__(in_channels, edge_dim, hidden, num_classes, num_layers, dropout)


class MNISTSuperpixelNet(_GINENet):
    """MNIST superpixels: GINE ×4 over (intensity, centroid) with relative positions as edge features,
    mean pool, MLP. (The paper uses SplineConv, which needs the torch-spline-conv package.)"""

    def __init__(self, in_channels: int = 3, edge_dim: int = 2, hidden: int = 96,
                 num_classes: int = 10, num_layers: int = 4, dropout: float = 0.2):
        super().__init__(in_channels, edge_dim, hidden, num_classes, num_layers, dropout)


MODEL_CLASSES = {cls.__name__: cls for cls in (BA3MotifNet, MutagenicityNet, MNISTSuperpixelNet)}
