"""Graph sets larger than memory: PyG ``OnDiskDataset`` folders (sqlite) with a tensor schema.

A graph set is a folder ``ROOT`` holding ``ROOT/processed/sqlite.db`` with two tables:
``GraphSet``, one row per graph and one column per attribute (PyG's typed schema: a tensor is stored
as its raw bytes, an ``int``, ``float`` or ``str`` as itself), and ``GraphSetSchema``, the attribute
names, dtypes and shapes as JSON. Nothing is pickled, so opening a set runs no code from it.
:func:`write_graphs` builds one from any iterable of ``Data``; :func:`open_graphs` opens one and
refuses anything else, among them a plain ``OnDiskDataset(ROOT)`` folder, whose rows are pickled.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data, OnDiskDataset

from ..fileio import atomic_path, file_sha256

__all__ = ["GraphSet", "write_graphs", "open_graphs"]

SCHEMA_TABLE = "GraphSetSchema"
FORMAT = 1
DTYPES = {str(t).removeprefix("torch."): t for t in (torch.float16, torch.float32, torch.float64, torch.int8,
                                                        torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)}
SCALARS = {"int": int, "float": float, "str": str}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _db_path(root: Path) -> Path:
    return root / "processed" / "sqlite.db"


def _schema_of(data: Data) -> List[Dict[str, Any]]:
    """The fields of graph 0: ``{"name", "type"}`` (+ ``"size"`` for a tensor, ``-1`` in the dimension
    that varies between graphs, PyG's concatenation dimension)."""
    fields = []
    for name, value in data.to_dict().items():
        if not _NAME.match(name):
            raise ValueError(f"write_graphs: graph 0: attribute name {name!r} is not an identifier")
        if isinstance(value, Tensor):
            kind = str(value.dtype).removeprefix("torch.")
            if kind not in DTYPES:
                raise ValueError(f"write_graphs: graph 0: attribute {name!r} has dtype {value.dtype}; a graph set "
                                 f"stores {', '.join(DTYPES)}")
            size = list(value.shape)
            if size:
                size[data.__cat_dim__(name, value) % len(size)] = -1
                if 0 in size:
                    raise ValueError(f"write_graphs: graph 0: attribute {name!r} of shape {list(value.shape)} has "
                                     f"a dimension of size 0 that is not the one that varies between graphs")
            fields.append({"name": name, "type": kind, "size": size})
        elif type(value) in SCALARS.values():
            fields.append({"name": name, "type": type(value).__name__})
        else:
            raise ValueError(f"write_graphs: graph 0: attribute {name!r} is a {type(value).__name__}; a graph set "
                             f"stores tensors, int, float and str")
    return fields


def _check_fields(fields: Any, where: str) -> List[Dict[str, Any]]:
    """``fields`` read from a database, checked to be a schema :func:`_schema_of` could have written."""
    ok = isinstance(fields, list) and len(fields) > 0
    for f in fields if ok else ():
        ok = (isinstance(f, dict) and isinstance(f.get("name"), str) and bool(_NAME.match(f["name"]))
              and (f.get("type") in SCALARS and set(f) == {"name", "type"}
                   or f.get("type") in DTYPES and set(f) == {"name", "type", "size"}
                   and isinstance(f["size"], list) and all(type(s) is int for s in f["size"])
                   and (f["size"] == [] or f["size"].count(-1) == 1 and all(s >= 1 or s == -1 for s in f["size"]))))
        if not ok:
            break
    if not ok:
        raise ValueError(f"open_graphs: {where} holds no valid graph set schema")
    return fields


class GraphSet(OnDiskDataset):
    """A schema-typed graph set (see the module docstring). Build one with :func:`write_graphs`,
    open one with :func:`open_graphs`; ``fields`` is its schema."""

    def __init__(self, root: str | os.PathLike, fields: List[Dict[str, Any]], file: str = "sqlite.db"):
        self.fields = fields
        self._file = file
        schema = {f["name"]: dict(dtype=torch.uint8, size=(-1,)) if "size" in f else SCALARS[f["type"]]
                  for f in fields}
        super().__init__(str(root), schema=schema, log=False)

    @property
    def processed_file_names(self) -> str:
        return self._file

    def row(self, data: Data, graph_id: Optional[int] = None) -> Dict[str, Any]:
        """``data`` as a database row (tensors as bytes), checked against the schema."""
        where = "a graph" if graph_id is None else f"graph {graph_id}"
        given = data.to_dict()
        names = [f["name"] for f in self.fields]
        if set(given) != set(names):
            raise ValueError(f"{where} has attributes {sorted(given)}, the graph set's schema {sorted(names)}")
        out = {}
        for f in self.fields:
            value = given[f["name"]]
            if "size" not in f:
                if type(value) is not SCALARS[f["type"]]:
                    raise ValueError(f"{where}: attribute {f['name']!r} is a {type(value).__name__}, the schema's "
                                     f"is {f['type']}")
                out[f["name"]] = value
                continue
            if not isinstance(value, Tensor) or value.dtype != DTYPES[f["type"]] or value.dim() != len(f["size"]) \
                    or any(s != -1 and s != n for s, n in zip(f["size"], value.shape)):
                got = f"{value.dtype} {list(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"{where}: attribute {f['name']!r} is {got}, the schema's {f['type']} {f['size']} "
                                 f"(-1: any size)")
            out[f["name"]] = value.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        return out

    def serialize(self, data: Data) -> Dict[str, Any]:
        return self.row(data)

    def graph(self, row: Dict[str, Any], graph_id: Optional[int] = None) -> Data:
        """A database row as a ``Data`` graph (tensors copied out of the row's bytes)."""
        data = Data()
        for f in self.fields:
            value = row[f["name"]]
            if "size" in f:
                value = self._tensor(value, f, graph_id)
            data[f["name"]] = value
        return data

    def _tensor(self, raw: Tensor, field: Dict[str, Any], graph_id: Optional[int]) -> Tensor:
        dtype, size = DTYPES[field["type"]], field["size"]
        width = dtype.itemsize * math.prod(s for s in size if s != -1)
        if raw.numel() % width or (not size and raw.numel() != width) \
                or (dtype == torch.bool and bool((raw > 1).any())):
            where = "a graph" if graph_id is None else f"graph {graph_id}"
            raise ValueError(f"graph set {self.root}: {where}: attribute {field['name']!r} holds {raw.numel()} bytes, "
                             f"not {field['type']} values of shape {size} (-1: any size); the set is corrupt")
        return raw.clone().view(dtype).view(size)

    def deserialize(self, row: Dict[str, Any]) -> Data:
        return self.graph(row)

    def get(self, idx: int) -> Data:
        return self.graph(self.db.get(idx), idx)

    def multi_get(self, indices, batch_size: Optional[int] = None) -> List[Data]:
        indices = indices.tolist() if isinstance(indices, Tensor) else list(indices)
        rows = [self.db.get(indices[0])] if len(indices) == 1 else self.db.multi_get(indices, batch_size)
        graphs = [self.graph(r, i) for r, i in zip(rows, indices)]
        return graphs if self.transform is None else [self.transform(g) for g in graphs]

    def sha256(self) -> str:
        """Fingerprint of the set: SHA-256 of its database file (read ~1 MiB at a time)."""
        return file_sha256(self.processed_paths[0])


def write_graphs(root: str | os.PathLike, graphs: Iterable[Data], batch_size: int = 1024) -> GraphSet:
    """Write ``graphs`` (any non-empty iterable, e.g. a generator) to a new graph set at ``root``.

    The schema is taken from the first graph; every other graph must have the same attributes,
    dtypes and sizes (but the dimension that varies between graphs, e.g. nodes or edges), else a
    ``ValueError`` names the graph and the attribute. Holds at most ``batch_size`` graphs in memory.
    Graph ``i`` of the iterable becomes graph id ``i``. The database is written under a temporary
    name and renamed when complete: a failed write leaves no set (and a full disk says so).
    """
    root = Path(root)
    if batch_size < 1:
        raise ValueError(f"write_graphs: batch_size must be >= 1, got {batch_size}")
    path = _db_path(root)
    if path.exists():
        raise FileExistsError(f"write_graphs: root {root} already holds a graph set ({path})")
    graphs = iter(graphs)
    first = next(graphs, None)
    if first is None:
        raise ValueError("write_graphs: graphs is empty (a graph set takes its schema from its first graph)")
    fields = _schema_of(first)
    try:
        with atomic_path(path) as tmp:
            dataset = GraphSet(root, fields, file=tmp.name)
            def insert(start: int, batch: List[Data]) -> None:
                dataset.db.multi_insert(range(start, start + len(batch)),
                                        [dataset.row(g, start + k) for k, g in enumerate(batch)])

            try:
                dataset.db.cursor.execute(f"CREATE TABLE {SCHEMA_TABLE} (id INTEGER PRIMARY KEY, schema TEXT NOT NULL)")
                dataset.db.cursor.execute(f"INSERT INTO {SCHEMA_TABLE} VALUES (0, ?)",
                                          (json.dumps({"format": FORMAT, "fields": fields}),))
                count, batch = 0, [first]
                for data in graphs:
                    if len(batch) == batch_size:
                        insert(count, batch)
                        count, batch = count + len(batch), []
                    batch.append(data)
                insert(count, batch)
            finally:
                dataset.close()
                tmp.with_name(tmp.name + "-journal").unlink(missing_ok=True)
    except ValueError as error:
        raise ValueError(f"write_graphs: {error}") from None
    except sqlite3.OperationalError as error:
        if "disk is full" in str(error):
            raise OSError(errno.ENOSPC, f"no space left on the device to write {path}") from error
        raise
    return open_graphs(root)


def open_graphs(root: str | os.PathLike) -> GraphSet:
    """Open the graph set at ``root`` (written by :func:`write_graphs`).

    Raises ``FileNotFoundError`` when ``root`` or its database is missing and ``ValueError`` when
    the database is not a schema-typed graph set — e.g. a plain ``OnDiskDataset(root)`` folder, whose
    pickled rows could run code when read: convert such a set once, in a session that trusts it,
    with ``write_graphs(new_root, OnDiskDataset(root))``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"open_graphs: root {root} is not a directory")
    path = _db_path(root)
    if not path.is_file():
        raise FileNotFoundError(f"open_graphs: {root} is not a graph set folder (no {path})")
    table = GraphSet.__name__  # PyG names the sqlite table after the dataset class
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            if table in tables and SCHEMA_TABLE in tables:
                schema = db.execute(f"SELECT schema FROM {SCHEMA_TABLE} WHERE id = 0").fetchone()
                columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError as error:
        raise ValueError(f"open_graphs: {path} is not a sqlite database ({error})") from error
    if table not in tables or SCHEMA_TABLE not in tables:
        if OnDiskDataset.__name__ in tables:
            raise ValueError(f"open_graphs: {path} stores pickled rows (PyG's default OnDiskDataset schema); "
                             f"reading them could run code, so refine_fast opens only schema-typed graph sets. "
                             f"Convert it once, in a session that trusts it: "
                             f"write_graphs(NEW_ROOT, OnDiskDataset({str(root)!r}))")
        raise ValueError(f"open_graphs: {path} has tables {tables}, not a refine_fast graph set "
                         f"({table} and {SCHEMA_TABLE}); write one with refine_fast.datasets.write_graphs")
    try:
        spec = json.loads(schema[0]) if schema else None
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ValueError(f"open_graphs: {path} holds no valid graph set schema (format {FORMAT})")
    fields = _check_fields(spec.get("fields"), str(path))
    if columns != ["id"] + [f"COL_{f['name']}" for f in fields]:
        raise ValueError(f"open_graphs: {path}: the {table} table's columns {columns} do not match its schema")
    return GraphSet(root, fields)

