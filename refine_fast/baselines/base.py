"""The one interface every explainer of the comparison implements, and batching helpers."""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from ..validation import SEED, check_graphs, model_checks

__all__ = ["EdgeExplainer", "Collated", "collate", "model_kwargs", "split_edges",
           "fingerprint", "check_inputs"]


@runtime_checkable
class EdgeExplainer(Protocol):
    """``explain(model, graphs, seed) -> [importance [E_g]] * len(graphs)``, in input order.

    Trained explainers also have ``fit(model, train_graphs, seed)``, called once before ``explain``.
    ``per_ratio`` explainers (ReFine) take ``ratio=`` in ``explain`` and are re-run for every ρ of ACC@ρ.
    """

    name: str

    def explain(self, model: torch.nn.Module, graphs: Sequence, seed: int) -> List[Tensor]:
        ...


@dataclass
class Collated:
    """Graphs as one disjoint-union batch: x ``[N, D]``, edge_index ``[2, E]``, edge_attr ``[E, ...]``
    or None, batch ``[N]``, edge_ptr ``[B+1]`` (graph g owns edges ``edge_ptr[g]:edge_ptr[g+1]``)."""

    x: Tensor
    edge_index: Tensor
    edge_attr: Optional[Tensor]
    batch: Tensor
    edge_ptr: Tensor

    @property
    def num_graphs(self) -> int:
        return self.edge_ptr.numel() - 1


def collate(graphs: Sequence) -> Collated:
    """Concatenate ``Data`` graphs (only x, edge_index, edge_attr), keeping each graph's edge order."""
    if len(graphs) == 0:
        raise ValueError("collate: graphs must not be empty")
    n = torch.tensor([g.num_nodes for g in graphs])
    e = torch.tensor([g.edge_index.size(1) for g in graphs])
    node_off = torch.cat([n.new_zeros(1), n.cumsum(0)])
    edge_ptr = torch.cat([e.new_zeros(1), e.cumsum(0)])
    edge_index = torch.cat([g.edge_index.long() + node_off[i] for i, g in enumerate(graphs)], 1)
    attrs = [getattr(g, "edge_attr", None) for g in graphs]
    edge_attr = torch.cat(attrs) if all(a is not None for a in attrs) else None
    batch = torch.repeat_interleave(torch.arange(len(graphs)), n)
    return Collated(torch.cat([g.x for g in graphs]), edge_index, edge_attr, batch, edge_ptr)


def check_inputs(model: torch.nn.Module, graphs: Sequence, seed: int, caller: str, arg: str = "graphs") -> List:
    """``graphs`` as a list after :func:`refine_fast.validation.check_graphs` against the feature widths
    the model declares; ``model`` a module and ``seed`` an int. Errors name ``caller: arg``."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{caller}: model must be a torch.nn.Module, got {type(model).__name__}")
    SEED.check(seed, f"{caller}: seed")
    return check_graphs(graphs, name=f"{caller}: {arg}", **model_checks(model))


def model_kwargs(model: torch.nn.Module, edge_attr: Optional[Tensor], batch: Tensor) -> dict:
    """Keyword arguments of ``model(x, edge_index, **kw)``: ``batch``, and ``edge_attr`` when the model's
    ``forward`` accepts it and the graphs have it."""
    kw = {"batch": batch}
    if edge_attr is not None and "edge_attr" in inspect.signature(model.forward).parameters:
        kw["edge_attr"] = edge_attr
    return kw


def split_edges(flat: Tensor, edge_ptr: Tensor) -> List[Tensor]:
    """Per-graph views ``[E_g]`` of a flat ``[E]`` edge tensor."""
    return list(torch.split(flat.detach(), edge_ptr.diff().tolist()))


def fingerprint(model: Optional[torch.nn.Module], graphs: Sequence = (), extra: str = "") -> str:
    """A short hash of the model's weights (if any), the graphs' tensors and ``extra``: cached results
    and checkpoints are reused only for the same model and data."""
    h = hashlib.sha1(extra.encode())
    tensors = [] if model is None else list(model.state_dict().values())
    for g in graphs:
        tensors += [g.x, g.edge_index] + ([g.edge_attr] if getattr(g, "edge_attr", None) is not None else [])
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]
