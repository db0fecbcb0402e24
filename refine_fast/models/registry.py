"""The paper's datasets by name ('ba3', 'mutag', 'mnist'): loader, target GNN and training defaults."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch

from ..datasets import BA3Motif, MNISTSuperpixels75, Mutagenicity, default_cache_dir
from ..fileio import atomic_write_text
from .gnns import BA3MotifNet, MNISTSuperpixelNet, MutagenicityNet, TargetGNN
from .io import save_model
from .train import train_gnn

__all__ = ["DatasetSpec", "REGISTRY", "load_splits", "train_for_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """``load(data_root, cache_dir, seed)`` -> dataset with ``split_idx``; ``model()`` -> untrained GNN."""
    load: Callable[[Path, Path, int], Any]
    model: Callable[[], TargetGNN]
    train: Dict[str, Any] = field(default_factory=dict)  # train_gnn keyword defaults


REGISTRY: Dict[str, DatasetSpec] = {
    "ba3": DatasetSpec(
        load=lambda root, cache, seed: BA3Motif(cache, seed=seed),
        model=BA3MotifNet,
        train=dict(epochs=40, lr=3e-3, batch_size=64)),
    "mutag": DatasetSpec(
        load=lambda root, cache, seed: Mutagenicity(root / "mutagenicity", cache_dir=cache, seed=seed),
        model=MutagenicityNet,
        train=dict(epochs=100, lr=1e-3, batch_size=128)),
    "mnist": DatasetSpec(
        load=lambda root, cache, seed: MNISTSuperpixels75(root / "mnist", cache_dir=cache, seed=seed),
        model=MNISTSuperpixelNet,
        train=dict(epochs=60, lr=2e-3, batch_size=64)),
}


def _spec(name: str) -> DatasetSpec:
    if name not in REGISTRY:
        raise ValueError(f"dataset must be one of {sorted(REGISTRY)}, got {name!r}")
    return REGISTRY[name]


def load_splits(name: str, data_root: Union[str, Path], cache_dir: Union[str, Path, None] = None,
                data_seed: int = 0) -> Tuple[Any, Tuple[Any, Any, Any]]:
    """The dataset ``name`` read from ``data_root`` (a ``../shared/data``-style folder; processed files
    go to ``cache_dir``) and its (train, val, test) subsets."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dataset = _spec(name).load(Path(data_root), cache, data_seed)
    return dataset, tuple(dataset[dataset.split_idx[k]] for k in ("train", "val", "test"))


def train_for_dataset(name: str, data_root: Union[str, Path], out_dir: Union[str, Path],
                      epochs: Optional[int] = None, seed: int = 0, progress: bool = True,
                      cache_dir: Union[str, Path, None] = None, data_seed: int = 0,
                      device: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Train the target GNN of ``name`` on ``device`` and write ``<out_dir>/model.pt`` (see :func:`load_model`)
    and ``<out_dir>/metrics.json``. Returns the metrics (accuracies, epochs, seconds, model path)."""
    spec = _spec(name)
    _, (train_set, val_set, test_set) = load_splits(name, data_root, cache_dir, data_seed)
    torch.manual_seed(seed)
    model = spec.model().to(device)
    kwargs = dict(spec.train)
    if epochs is not None:
        kwargs["epochs"] = int(epochs)
    start = time.perf_counter()
    metrics: Dict[str, Any] = train_gnn(model, train_set, val_set, test_set, seed=seed,
                                        progress=progress, **kwargs)
    metrics.update(dataset=name, seed=seed, data_seed=data_seed, lr=kwargs["lr"],
                   batch_size=kwargs["batch_size"], seconds=round(time.perf_counter() - start, 1))
    out = Path(out_dir)
    metrics["model_path"] = str(save_model(model, out / "model.pt", extra=dict(metrics)))
    atomic_write_text(json.dumps(metrics, indent=2) + "\n", out / "metrics.json")
    return metrics
