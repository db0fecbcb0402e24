"""Save a target GNN as plain data (``torch.load(weights_only=True)`` works) and rebuild it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ..fileio import atomic_save, load_tensors
from .gnns import MODEL_CLASSES, TargetGNN
from .reference import ReferenceBA3Net, ReferenceMutagNet, reference_class, reference_model_from_state

_CLASSES = {**MODEL_CLASSES, **{cls.__name__: cls for cls in (ReferenceBA3Net, ReferenceMutagNet)}}

__all__ = ["save_model", "load_model"]


def save_model(model: TargetGNN, path: Union[str, Path], extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``{"model_class", "config", "state_dict", "extra"}`` to ``path`` (plain types and tensors)."""
    name = type(model).__name__
    if name not in _CLASSES:
        raise ValueError(f"save_model: model must be one of {sorted(_CLASSES)}, got {name}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_save({"model_class": name, "config": dict(model.config), "state_dict": state,
                 "extra": dict(extra or {})}, path)
    return path


def load_model(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> TargetGNN:
    """Rebuild the model saved by :func:`save_model` (eval mode); its ``extra`` dict is ``model.extra``.
    A released reference state_dict (``mutag_net_state.pt``, ``ba3_net_state.pt``) is loaded with
    :func:`~refine_fast.models.reference.reference_model_from_state` (the file is read once)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_model: no model file at {path}")
    try:
        blob = load_tensors(path, "model file", map_location=map_location)
    except ValueError as error:
        raise ValueError(f"load_model: {error}") from None
    if isinstance(blob, dict) and "model_class" not in blob and reference_class(blob) is not None:
        model = reference_model_from_state(blob, path)  # a released reference state_dict
        model.extra = {}
        return model
    cls = _CLASSES.get(blob.get("model_class")) if isinstance(blob, dict) else None
    if cls is None:
        got = blob.get("model_class") if isinstance(blob, dict) else type(blob).__name__
        raise ValueError(f"load_model: {path} is not a model file written by save_model (model class {got!r}, "
                         f"expected one of {sorted(_CLASSES)}) nor a released reference state_dict")
    try:
        model = cls(**blob["config"])
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"load_model: {path} holds a {cls.__name__} whose config or weights do not fit it: "
                         f"{str(error).strip().splitlines()[0]}") from None
    model.extra = blob.get("extra", {})
    return model.eval()
