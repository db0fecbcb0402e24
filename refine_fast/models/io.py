"""Save a target GNN as plain data (``torch.load(weights_only=True)`` works) and rebuild it."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from ..validation import load_checked
from .gnns import MODEL_CLASSES, TargetGNN
from .reference import ReferenceBA3Net, ReferenceMutagNet, load_reference_model, reference_class

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
    torch.save({"model_class": name, "config": dict(model.config), "state_dict": state,
                "extra": dict(extra or {})}, path)
    return path


def load_model(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> TargetGNN:
    """Rebuild the model saved by :func:`save_model` (eval mode); its ``extra`` dict is ``model.extra``.
    A released reference state_dict (``mutag_net_state.pt``, ``ba3_net_state.pt``) is loaded with
    :func:`~refine_fast.models.reference.load_reference_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_model: no model file at {path}")
    blob = load_checked(path, "load_model", map_location)
    if isinstance(blob, dict) and "model_class" not in blob and reference_class(blob) is not None:
        model = load_reference_model(path, map_location)  # a released reference state_dict
        model.extra = {}
        return model
    if not isinstance(blob, dict) or not {"config", "state_dict"} <= set(blob):
        raise ValueError(f"load_model: {path} is not a model file written by save_model (nor a released "
                         f"reference state_dict)")
    cls = _CLASSES.get(blob.get("model_class"))
    if cls is None:
        raise ValueError(f"load_model: {path} holds unknown model class {blob.get('model_class')!r}")
    model = cls(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    model.extra = blob.get("extra", {})
    return model.eval()
