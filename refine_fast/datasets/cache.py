"""Where processed datasets are cached, keyed by the content of the files they were processed from, and
content fingerprints of loaded datasets."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from torch import Tensor

from ..fileio import file_sha256, tensors_sha256

__all__ = ["default_cache_dir", "source_key", "dataset_sha256"]


def default_cache_dir() -> Path:
    """``$REFINE_FAST_CACHE`` if set, else ``~/.cache/refine_fast``."""
    return Path(os.environ.get("REFINE_FAST_CACHE", Path.home() / ".cache" / "refine_fast"))


def source_key(files: Iterable[Path]) -> str:
    """16 hex digits of SHA-256 over the names and bytes of ``files``: the cache folder of the data
    processed from them, so other raw files (another ``--data-root``, an edited file) are processed
    into their own folder instead of reusing stale results."""
    h = hashlib.sha256()
    for f in sorted(Path(f) for f in files):
        h.update(f"{f.name}\0{file_sha256(f)}\0".encode())
    return h.hexdigest()[:16]


def dataset_sha256(dataset) -> str:
    """Fingerprint of an in-memory PyG dataset's content: :func:`refine_fast.fileio.tensors_sha256` of its
    collated tensors, their slices and its ``split_idx`` (when it has one)."""
    tensors = {f"data.{k}": v for k, v in dataset._data.to_dict().items() if isinstance(v, Tensor)}
    tensors.update({f"slices.{k}": v for k, v in (dataset.slices or {}).items()})
    tensors.update({f"split.{k}": v for k, v in getattr(dataset, "split_idx", {}).items()})
    return tensors_sha256(tensors)
