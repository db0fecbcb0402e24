"""Graph sets larger than memory, stored with PyG's ``OnDiskDataset`` (sqlite backend).

A graph set is a folder ``ROOT`` holding ``ROOT/processed/sqlite.db``, the file a plain
``torch_geometric.data.OnDiskDataset(ROOT)`` writes: one row per graph, the ``Data`` object
serialized with ``torch.save``. :func:`write_graphs` builds one from any iterable of ``Data`` a
batch at a time; :func:`open_graphs` opens one read-only in spirit (it never creates or changes a
table) and checks that it is one. Reading unpickles the rows (``torch.load(weights_only=False)``):
open only graph sets you trust.
"""
from __future__ import annotations

import copy
import os
import sqlite3
from pathlib import Path
from typing import Iterable

import torch
from torch_geometric.data import Data, OnDiskDataset

__all__ = ["write_graphs", "open_graphs"]

TABLE = OnDiskDataset.__name__  # PyG names the sqlite table after the dataset class


def _db_path(root: Path) -> Path:
    return root / "processed" / "sqlite.db"


def write_graphs(root: str | os.PathLike, graphs: Iterable[Data], batch_size: int = 1024) -> OnDiskDataset:
    """Write ``graphs`` (any iterable, e.g. a generator) to a new graph set at ``root``.

    Holds at most ``batch_size`` graphs in memory. Each graph's tensors are copied first, so a slice
    of an in-memory dataset stores its own edges rather than the whole dataset's storage. Graph ``i``
    of the iterable becomes graph id ``i``.
    """
    root = Path(root)
    if batch_size < 1:
        raise ValueError(f"write_graphs: batch_size must be >= 1, got {batch_size}")
    if _db_path(root).exists():
        raise FileExistsError(f"write_graphs: root {root} already holds a graph set ({_db_path(root)})")
    dataset = OnDiskDataset(str(root), log=False)
    batch = []
    for data in graphs:
        batch.append(copy.copy(data).apply(torch.Tensor.clone))
        if len(batch) == batch_size:
            dataset.extend(batch)
            batch = []
    if batch:
        dataset.extend(batch)
    return dataset


def open_graphs(root: str | os.PathLike) -> OnDiskDataset:
    """Open the graph set at ``root`` (written by :func:`write_graphs` or ``OnDiskDataset(root)``).

    Raises ``FileNotFoundError`` when ``root`` or its database is missing and ``ValueError`` when
    the database holds no ``OnDiskDataset`` table (e.g. a subclass's, whose schema only that
    subclass can read: open it with the subclass and use :func:`refine_fast.stream.explain_to_store`).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"open_graphs: root {root} is not a directory")
    path = _db_path(root)
    if not path.is_file():
        raise FileNotFoundError(f"open_graphs: {root} is not an OnDiskDataset folder (no {path})")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    except sqlite3.DatabaseError as error:
        raise ValueError(f"open_graphs: {path} is not a sqlite database ({error})") from error
    if TABLE not in tables:
        raise ValueError(f"open_graphs: {path} has tables {tables}, not PyG's default {TABLE!r} table; "
                         f"write it with refine_fast.datasets.write_graphs or OnDiskDataset(root)")
    return OnDiskDataset(str(root), log=False)
