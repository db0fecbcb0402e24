"""The one interface every explainer of the comparison implements, and its helpers."""
from __future__ import annotations

import hashlib
from typing import List, Optional, Protocol, Sequence, runtime_checkable

import torch
from torch import Tensor

from ..validation import SEED, check_graphs, model_checks

__all__ = ["EdgeExplainer", "split_edges", "fingerprint", "check_inputs"]


@runtime_checkable
class EdgeExplainer(Protocol):
    """``explain(model, graphs, seed) -> [importance [E_g]] * len(graphs)``, in input order.

    Trained explainers also have ``fit(model, train_graphs, seed)``, called once before ``explain``.
    ``per_ratio`` explainers (ReFine) take ``ratio=`` in ``explain`` and are re-run for every ρ of ACC@ρ.
    """

    name: str

    def explain(self, model: torch.nn.Module, graphs: Sequence, seed: int) -> List[Tensor]:
        ...


def check_inputs(model: torch.nn.Module, graphs: Sequence, seed: int, caller: str, arg: str = "graphs") -> List:
    """``graphs`` as a list after :func:`refine_fast.validation.check_graphs` against the feature widths
    the model declares; ``model`` a module and ``seed`` an int. Errors name ``caller: arg``."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{caller}: model must be a torch.nn.Module, got {type(model).__name__}")
    SEED.check(seed, f"{caller}: seed")
    return check_graphs(graphs, name=f"{caller}: {arg}", **model_checks(model))


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
