"""The explained classifier as a black box: logits of batched graphs, optionally under an edge mask."""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Optional

import torch
from torch import Tensor
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks
from torch_geometric.nn import MessagePassing

from .packing import GraphBatch, GraphPack

__all__ = ["TargetModel", "accepts_edge_attr", "model_kwargs", "unregister_masks"]


def accepts_edge_attr(model: torch.nn.Module) -> bool:
    """Whether ``model.forward`` has an ``edge_attr`` parameter: then the graphs' edge features are passed."""
    return "edge_attr" in inspect.signature(model.forward).parameters


def model_kwargs(model: torch.nn.Module, edge_attr: Optional[Tensor], batch: Tensor,
                 use_edge_attr: Optional[bool] = None) -> dict:
    """Keyword arguments of ``model(x, edge_index, **kw)``: ``batch``, and ``edge_attr`` when the graphs
    have it and the model takes it (``use_edge_attr``, default :func:`accepts_edge_attr`).
    (:class:`TargetModel` also passes ``num_graphs`` to a model whose ``forward`` takes it, so that its
    pooling need not read ``batch.max()`` from the device, as refine_fast's own models do.)"""
    kw = {"batch": batch}
    if edge_attr is not None and (accepts_edge_attr(model) if use_edge_attr is None else use_edge_attr):
        kw["edge_attr"] = edge_attr
    return kw


def _takes(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def unregister_masks(model: torch.nn.Module) -> None:
    """Remove the edge-mask *parameter* slot PyG's GNNExplainer leaves on every ``MessagePassing`` layer.

    Once ``_edge_mask`` was a registered parameter, PyG's ``set_masks`` wraps any later mask in a new
    ``Parameter`` (a detached leaf), so gradients no longer reach the caller's mask (SA, ReFine).
    """
    for module in model.modules():
        if isinstance(module, MessagePassing) and "_edge_mask" in module._parameters:
            del module._parameters["_edge_mask"]
            module._edge_mask = None


class TargetModel:
    """Calls ``model(x, edge_index, batch=batch[, edge_attr=edge_attr])`` -> logits ``[B, C]``.

    ``edge_attr`` is passed when the model's ``forward`` has an ``edge_attr`` parameter
    (:func:`accepts_edge_attr`; override with ``use_edge_attr``). An edge mask ``[E]`` is applied to every
    ``MessagePassing`` layer with PyG's explain hook (``set_masks(..., apply_sigmoid=False)``), i.e. each
    message is multiplied by it.
    Raw logits and log-probabilities both work: only their softmax / log-softmax are used.
    """

    def __init__(self, model: torch.nn.Module, use_edge_attr: Optional[bool] = None):
        self.model = model
        self.use_edge_attr = accepts_edge_attr(model) if use_edge_attr is None else use_edge_attr
        embed = getattr(model, "embed", None)
        self._takes_num_graphs = (_takes(model.forward, "num_graphs"), callable(embed) and _takes(embed, "num_graphs"))

    def __call__(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int,
                 edge_attr: Optional[Tensor] = None, edge_mask: Optional[Tensor] = None,
                 mask_sigmoid: bool = False, embed: bool = False) -> Tensor:
        """Logits ``[B, C]`` (or with ``embed`` the model's graph representation ``model.embed(...)``,
        ``[B, H]``). ``mask_sigmoid`` passes the edge mask through a sigmoid inside the model first."""
        kwargs = model_kwargs(self.model, edge_attr, batch, self.use_edge_attr)
        if self._takes_num_graphs[embed]:
            kwargs["num_graphs"] = num_graphs
        forward = self.model.forward
        if embed:
            forward = getattr(self.model, "embed", None)
            if forward is None:
                raise ValueError(
                    f"TargetModel: representation='target' needs the model to have an embed(x, edge_index, ..., "
                    f"batch=...) method returning graph representations; {type(self.model).__name__} has none "
                    f"(use representation='attributor')")
        if edge_mask is None:
            out = forward(x, edge_index, **kwargs)
        else:
            unregister_masks(self.model)
            set_masks(self.model, edge_mask, edge_index, apply_sigmoid=mask_sigmoid)
            try:
                out = forward(x, edge_index, **kwargs)
            finally:
                clear_masks(self.model)
        if out.dim() != 2 or out.size(0) != num_graphs:
            raise ValueError(
                f"TargetModel: the model must return graph-level {'representations' if embed else 'logits'} of "
                f"shape [{num_graphs}, C], got {tuple(out.shape)}")
        return out

    def representation(self, choice: str) -> str:
        """``ReFineConfig.representation`` resolved: ``'auto'`` is ``'target'`` when the model has an
        ``embed`` method (its graph representation), else ``'attributor'``."""
        if choice == "auto":
            return "target" if callable(getattr(self.model, "embed", None)) else "attributor"
        return choice

    def on(self, b: GraphBatch, edge_mask: Optional[Tensor] = None, mask_sigmoid: bool = False) -> Tensor:
        """Logits ``[B, C]`` of a whole :class:`GraphBatch`."""
        return self(b.x, b.edge_index, b.batch, b.num_graphs, b.edge_attr, edge_mask, mask_sigmoid)

    @contextmanager
    def frozen(self):
        """Eval mode and no parameter gradients inside the block; the previous state is restored."""
        was_training = self.model.training
        flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self.model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield self
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
            self.model.train(was_training)

    @torch.no_grad()
    def predict(self, pack: GraphPack, batch_size: int = 256) -> Tensor:
        """Full-graph logits ``[len(pack), C]`` (call inside :meth:`frozen`)."""
        outs = []
        for start in range(0, len(pack), batch_size):
            index = torch.arange(start, min(start + batch_size, len(pack)), device=pack.x.device)
            outs.append(self.on(pack.take(index)))
        return torch.cat(outs)
