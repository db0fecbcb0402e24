"""The two target GNNs released with the ReFine reference implementation, rebuilt so that their
published weights (plain state_dicts) load unchanged, and the reference's reproducible splits.

- :class:`ReferenceMutagNet` (Mutagenicity, 2 classes): node/edge embeddings, 2 × [GINE → BatchNorm →
  ReLU], mean pool, MLP. Inputs as :class:`refine_fast.datasets.Mutagenicity` gives them.
- :class:`ReferenceBA3Net` (BA-3motif, 3 classes): node embedding, 2 × [LEConv of PyG 1.x → ReLU],
  mean pool, MLP. The edge weight is ``edge_attr`` (ones); edges are stored once (low → high id).

:func:`load_reference_model` picks the architecture from the state_dict's keys;
:func:`load_reference_splits` gives the graphs the reference evaluated them on.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch_geometric.nn import BatchNorm, GINEConv, MessagePassing

from ..fileio import load_tensors
from .gnns import TargetGNN, mean_pool

__all__ = ["LegacyLEConv", "ReferenceMutagNet", "ReferenceBA3Net", "load_reference_model", "reference_split",
           "load_reference_splits", "reference_class", "reference_model_from_state", "REFERENCE_SPLIT_SIZES",
           "REFERENCE_FILES"]

REFERENCE_SPLIT_SIZES: Dict[str, tuple] = {"mutag": (4337, 500, 500), "ba3": (3000, 400, 400)}
"""``(graphs in file order, test, validation)`` of the reference's split of each dataset."""


class LegacyLEConv(MessagePassing):
    """LEConv as PyG 1.x defined it (the operator the released BA-3motif weights were trained with):
    ``x_i' = lin3(x_i) + Σ_{j→i} w_ji · (lin1(x_i) − lin2(x_j))`` with sum aggregation. PyG 2.x's
    ``LEConv`` swaps the roles of i and j. ``[N, F_in] -> [N, F_out]``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(aggr="add")
        self.lin1 = nn.Linear(in_channels, out_channels)
        self.lin2 = nn.Linear(in_channels, out_channels, bias=False)
        self.lin3 = nn.Linear(in_channels, out_channels)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Optional[Tensor] = None) -> Tensor:
        out = self.propagate(edge_index, a=self.lin1(x), b=self.lin2(x), edge_weight=edge_weight)
        return out + self.lin3(x)

    def message(self, a_i: Tensor, b_j: Tensor, edge_weight: Optional[Tensor]) -> Tensor:
        out = a_i - b_j
        return out if edge_weight is None else out * edge_weight.view(-1, 1)


class ReferenceMutagNet(TargetGNN):
    """The reference's Mutagenicity GNN (``mutag_net.pt``): ``x [N, 14]``, ``edge_attr [E, 3]`` -> ``[B, 2]``."""

    def __init__(self, in_channels: int = 14, edge_dim: int = 3, hidden: int = 32, mlp_hidden: int = 75,
                 num_layers: int = 2, num_classes: int = 2):
        super().__init__(in_channels=in_channels, edge_dim=edge_dim, hidden=hidden, mlp_hidden=mlp_hidden,
                         num_layers=num_layers, num_classes=num_classes)
        self.node_emb = nn.Linear(in_channels, hidden)
        self.edge_emb = nn.Linear(edge_dim, hidden)
        self.convs = nn.ModuleList(
            GINEConv(nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, hidden)))
            for _ in range(num_layers))
        self.batch_norms = nn.ModuleList(BatchNorm(hidden) for _ in range(num_layers))
        self.lin1 = nn.Linear(hidden, hidden // 2)
        self.lin2 = nn.Linear(hidden // 2, num_classes)

    def embed(self, x, edge_index, edge_attr=None, batch=None, num_graphs=None):
        if edge_attr is None:
            raise ValueError("ReferenceMutagNet: edge_attr [E, 3] (one-hot bond types) is required")
        h, e = self.node_emb(x), self.edge_emb(edge_attr)
        for conv, norm in zip(self.convs, self.batch_norms):
            h = torch.relu(norm(conv(h, edge_index, e)))
        return mean_pool(h, batch, num_graphs)

    def head(self, h: Tensor) -> Tensor:
        return self.lin2(torch.relu(self.lin1(h)))


class ReferenceBA3Net(TargetGNN):
    """The reference's BA-3motif GNN (``ba3_net.pt``): ``x [N, 4]``, edge weight ``edge_attr [E, 1]``
    (ones) -> ``[B, 3]``. The reference's dropout (p = 0.4, never switched off there) is applied only in
    training mode here, so explanations are deterministic."""

    def __init__(self, in_channels: int = 4, hidden: int = 64, num_layers: int = 2, num_classes: int = 3,
                 dropout: float = 0.4):
        super().__init__(in_channels=in_channels, hidden=hidden, num_layers=num_layers,
                         num_classes=num_classes, dropout=dropout)
        self.dropout = float(dropout)
        self.node_emb = nn.Linear(in_channels, hidden)
        self.convs = nn.ModuleList(LegacyLEConv(hidden, hidden) for _ in range(num_layers))
        self.lin1 = nn.Linear(hidden, hidden)
        self.lin2 = nn.Linear(hidden, num_classes)

    def embed(self, x, edge_index, edge_attr=None, batch=None, num_graphs=None):
        weight = None if edge_attr is None else edge_attr.reshape(-1)
        h = nn.functional.dropout(self.node_emb(x), self.dropout, self.training)
        for conv in self.convs:
            h = torch.relu(conv(h, edge_index, weight))
        h = nn.functional.dropout(h, self.dropout, self.training)
        return mean_pool(h, batch, num_graphs)

    def head(self, h: Tensor) -> Tensor:
        return self.lin2(torch.relu(self.lin1(h)))


def reference_class(state: dict) -> Optional[type]:
    """The released architecture a state_dict belongs to (by its keys), or None."""
    if "edge_emb.weight" in state and "convs.0.nn.0.weight" in state:
        return ReferenceMutagNet
    if "convs.0.lin3.weight" in state and "node_emb.weight" in state:
        return ReferenceBA3Net
    return None


def load_reference_model(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> TargetGNN:
    """One of the released target GNNs from its state_dict file (``mutag_net_state.pt`` /
    ``ba3_net_state.pt``), in eval mode. The architecture is recognized by the state_dict's keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_reference_model: no file at {path}")
    try:
        state = load_tensors(path, "torch state_dict", map_location=map_location)
    except ValueError as error:
        raise ValueError(f"load_reference_model: {error}") from None
    return reference_model_from_state(state, path)


def reference_model_from_state(state, path: Union[str, Path]) -> TargetGNN:
    """The released target GNN whose state_dict ``state`` was read from ``path`` (named in errors), in
    eval mode; the architecture is recognized by the keys."""
    if not isinstance(state, dict):
        raise ValueError(f"load_reference_model: {path} holds a {type(state).__name__}, expected a state_dict")
    cls = reference_class(state)
    if cls is None:
        raise ValueError(f"load_reference_model: {path} is neither the reference's Mutagenicity nor its "
                         f"BA-3motif GNN (keys: {sorted(state)[:4]}...)")
    model: TargetGNN = cls()
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"load_reference_model: {path} does not fit {type(model).__name__}: {error}") from None
    return model.eval()


def reference_split(dataset: str) -> Dict[str, Tensor]:
    """The reference's split of ``dataset`` (``'mutag'`` or ``'ba3'``) as indices into the graphs in file
    order (for BA-3motif: indices of the official 3,000-graph file, ``graph_index`` of
    :func:`refine_fast.datasets.load_ba3motif_official`): Python's ``random.seed(0)`` then
    ``random.shuffle``; test = the first block, validation = the next, train = the rest.
    -> ``{"train", "val", "test"}`` int64 tensors."""
    if dataset not in REFERENCE_SPLIT_SIZES:
        raise ValueError(f"reference_split: dataset must be one of {sorted(REFERENCE_SPLIT_SIZES)}, got {dataset!r}")
    total, n_test, n_val = REFERENCE_SPLIT_SIZES[dataset]
    order = list(range(total))
    random.Random(0).shuffle(order)
    perm = torch.tensor(order, dtype=torch.long)
    return {"test": perm[:n_test], "val": perm[n_test:n_test + n_val], "train": perm[n_test + n_val:]}


REFERENCE_FILES = {"mutag": "mutag_net_state.pt", "ba3": "ba3_net_state.pt"}
"""The released models' file names inside a ``--reference-models`` folder."""


def load_reference_splits(dataset: str, data_root: Union[str, Path], cache_dir: Union[str, Path, None] = None,
                          data_seed: int = 0) -> Tuple[list, list, list]:
    """``(train, val, test)`` lists of ``Data`` on which the released GNN of ``dataset`` is evaluated, as in
    the reference (:func:`reference_split`), read from a ``../shared/data``-style ``data_root``.

    Mutagenicity: the TU files, split as the reference did. BA-3motif: test and validation are the
    official graphs of ``ba3motif/ba3motif_official_subset800.npz`` (node features drawn with
    ``data_seed``); the official training graphs are not available, so train is the training split of
    refine_fast's generated BA-3motif (seed ``data_seed``), which the released model classifies as well
    (99.7%)."""
    from ..datasets import BA3Motif, Mutagenicity, default_cache_dir, load_ba3motif_official

    split = reference_split(dataset)
    root = Path(data_root)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if dataset == "mutag":
        graphs = Mutagenicity(root / "mutagenicity", cache_dir=cache)
        return tuple(list(graphs[split[k]]) for k in ("train", "val", "test"))
    official = load_ba3motif_official(root / "ba3motif" / "ba3motif_official_subset800.npz", seed=data_seed)
    by_index = {g.graph_index: g for g in official}
    missing = [int(i) for i in torch.cat([split["val"], split["test"]]) if int(i) not in by_index]
    if missing:
        raise ValueError(f"load_reference_splits: the BA-3motif file lacks {len(missing)} of the reference's "
                         f"test/validation graphs (e.g. graph_index {missing[0]})")
    generated = BA3Motif(cache, seed=data_seed)
    return (list(generated[generated.split_idx["train"]]), [by_index[int(i)] for i in split["val"]],
            [by_index[int(i)] for i in split["test"]])
