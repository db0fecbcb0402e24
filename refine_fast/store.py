"""A chunked, resumable on-disk store of per-edge importances.

Layout of a store directory::

    DIR/manifest.json                 run settings (seed, ratio, steps, ...) and chunk size
    DIR/chunks/chunk_<start>_<stop>.pt  one finished chunk of graphs [start, stop)
    DIR/explanations.pt               the merged result, written by :meth:`ExplanationStore.merge`

Every ``.pt`` file holds only tensors and plain types, so ``torch.load(path, weights_only=True)``
reads it. A chunk file is written to a temporary name and renamed, so a killed run leaves either a
whole chunk or none: resuming skips the finished chunks and redoes nothing else.

``explanations.pt`` holds ``graph_ids`` int64 ``[B]``, ``ptr`` int64 ``[B+1]`` and ``importance``
float32 ``[E]``: graph ``graph_ids[i]``'s importances are ``importance[ptr[i]:ptr[i+1]]``, in its
own edge order, plus ``meta`` (the manifest). A chunk file holds the same three tensors for its graphs.
Merging holds the merged result (4 bytes per edge + 16 per graph) and one chunk in memory; a run that
skips it is read chunk by chunk (:meth:`ExplanationStore.open`, :meth:`ExplanationStore.read`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["ExplanationStore", "load_explanations", "pack", "unpack"]

MERGED = "explanations.pt"
MANIFEST = "manifest.json"


def pack(importances: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Concatenate per-graph importances ``[E_g]`` into ``(flat [E], ptr [B+1])``."""
    sizes = torch.tensor([t.numel() for t in importances], dtype=torch.long)
    ptr = torch.zeros(len(importances) + 1, dtype=torch.long)
    torch.cumsum(sizes, 0, out=ptr[1:])
    flat = torch.cat([t.detach().reshape(-1).float().cpu() for t in importances]) if importances else torch.zeros(0)
    return flat, ptr


def unpack(flat: Tensor, ptr: Tensor) -> list[Tensor]:
    """Inverse of :func:`pack`: a list of ``[E_g]`` tensors."""
    return list(torch.split(flat, ptr.diff().tolist())) if ptr.numel() > 1 else []


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class ExplanationStore:
    """Resumable store for explaining graphs ``0..num_graphs-1`` in chunks of ``chunk_size``.

    ``meta`` describes the run (seed, ratio, steps, model, ...). Reopening a directory whose manifest
    has a different ``meta``, ``num_graphs`` or ``chunk_size`` raises instead of mixing two runs,
    unless ``overwrite=True``, which clears it.
    """

    def __init__(self, directory: str | os.PathLike, num_graphs: int, chunk_size: int, meta: dict,
                 overwrite: bool = False):
        if chunk_size < 1:
            raise ValueError(f"ExplanationStore: chunk_size must be >= 1, got {chunk_size}")
        self.dir = Path(directory)
        self.chunk_dir = self.dir / "chunks"
        self.num_graphs = int(num_graphs)
        self.chunk_size = int(chunk_size)
        manifest = {"num_graphs": self.num_graphs, "chunk_size": self.chunk_size, "meta": meta}
        path = self.dir / MANIFEST
        resumed = path.exists() and not overwrite
        if resumed:
            old = json.loads(path.read_text())
            if old != json.loads(json.dumps(manifest)):
                raise ValueError(
                    f"ExplanationStore: {self.dir} holds a run with other settings ({old}); "
                    f"pass overwrite=True (--overwrite) or choose another output directory")
        elif overwrite and self.dir.exists():
            for f in list(self.chunk_dir.glob("chunk_*.pt")) + [self.dir / MERGED]:
                f.unlink(missing_ok=True)
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        if not resumed:
            path.write_text(json.dumps(manifest, indent=1))
        self.manifest = manifest

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "ExplanationStore":
        """Reopen the store at ``directory`` with the settings of its manifest."""
        path = Path(directory) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"ExplanationStore.open: no {MANIFEST} in {directory}")
        m = json.loads(path.read_text())
        return cls(directory, m["num_graphs"], m["chunk_size"], m["meta"])

    def chunks(self) -> list[tuple[int, int]]:
        """All ``(start, stop)`` graph ranges of the run."""
        return [(s, min(s + self.chunk_size, self.num_graphs)) for s in range(0, self.num_graphs, self.chunk_size)]

    def _path(self, start: int, stop: int) -> Path:
        return self.chunk_dir / f"chunk_{start:010d}_{stop:010d}.pt"

    def done(self, start: int, stop: int) -> bool:
        return self._path(start, stop).exists()

    def pending(self) -> Iterator[tuple[int, int]]:
        """The chunks not yet written (a resumed run starts here)."""
        return ((s, e) for s, e in self.chunks() if not self.done(s, e))

    def write(self, start: int, stop: int, importances: Sequence[Tensor], graph_ids: Tensor | None = None) -> None:
        """Write the importances of graphs ``start..stop-1`` (one ``[E_g]`` tensor each).

        ``graph_ids`` int64 ``[stop-start]`` names the graphs (e.g. their dataset indices); default
        their positions ``start..stop-1``.
        """
        if len(importances) != stop - start:
            raise ValueError(f"ExplanationStore.write: expected {stop - start} importances, got {len(importances)}")
        ids = torch.arange(start, stop) if graph_ids is None else torch.as_tensor(graph_ids, dtype=torch.long)
        if ids.shape != (stop - start,):
            raise ValueError(f"ExplanationStore.write: graph_ids must have shape [{stop - start}], got {list(ids.shape)}")
        flat, ptr = pack(importances)
        _atomic_save({"graph_ids": ids, "ptr": ptr, "importance": flat}, self._path(start, stop))

    def read(self, start: int, stop: int) -> tuple[Tensor, list[Tensor]]:
        """A finished chunk: ``(graph_ids [stop-start], [importance [E_g]] * (stop-start))``."""
        part = torch.load(self._path(start, stop), weights_only=True)
        return part["graph_ids"], unpack(part["importance"], part["ptr"])

    def _check_finished(self, caller: str) -> None:
        missing = list(self.pending())
        if missing:
            raise RuntimeError(f"{caller}: {len(missing)} chunks of {self.dir} are not finished, first {missing[0]}")

    def merge(self) -> Path:
        """Concatenate every chunk into ``explanations.pt``; raises if a chunk is missing.

        Memory: the merged tensors (4 bytes per edge + 16 bytes per graph) plus one chunk, read
        twice through ``mmap`` (sizes first, then the copy into the preallocated result)."""
        self._check_finished("ExplanationStore.merge")
        counts = [int(torch.load(self._path(s, e), weights_only=True, mmap=True)["ptr"][-1])
                  for s, e in self.chunks()]
        ids = torch.empty(self.num_graphs, dtype=torch.long)
        ptr = torch.zeros(self.num_graphs + 1, dtype=torch.long)
        flat = torch.empty(sum(counts), dtype=torch.float32)
        edges = 0
        for s, e in self.chunks():
            part = torch.load(self._path(s, e), weights_only=True, mmap=True)
            n = int(part["ptr"][-1])
            ids[s:e] = part["graph_ids"]
            ptr[s + 1:e + 1] = part["ptr"][1:] + edges
            flat[edges:edges + n] = part["importance"]
            edges += n
            del part  # unmaps the chunk file
        out = self.dir / MERGED
        _atomic_save({"graph_ids": ids, "ptr": ptr, "importance": flat, "meta": self.manifest["meta"]}, out)
        return out


def load_explanations(path: str | os.PathLike) -> tuple[Tensor, list[Tensor], dict]:
    """Read ``explanations.pt`` (or its directory): ``(graph_ids [B], [importance [E_g]] * B, meta)``.

    A directory without ``explanations.pt`` (a run with ``--no-merge``) is read from its chunks,
    which must all be finished."""
    path = Path(path)
    if path.is_dir() and not (path / MERGED).exists() and (path / MANIFEST).exists():
        store = ExplanationStore.open(path)
        store._check_finished("load_explanations")
        parts = [store.read(s, e) for s, e in store.chunks()]
        ids = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
        return ids, [t for p in parts for t in p[1]], store.manifest["meta"]
    if path.is_dir():
        path = path / MERGED
    if not path.exists():
        raise FileNotFoundError(f"load_explanations: no explanations file at {path}")
    data = torch.load(path, weights_only=True)
    return data["graph_ids"], unpack(data["importance"], data["ptr"]), data.get("meta", {})
