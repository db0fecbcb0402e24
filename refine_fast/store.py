"""A chunked, resumable, checked on-disk store of per-edge importances.

Layout of a store directory::

    DIR/manifest.json                 format, chunk size and the run's settings (``meta``)
    DIR/chunks/chunk_<start>_<stop>.pt  one finished chunk of graphs [start, stop)
    DIR/explanations.pt               the merged result, written by :meth:`ExplanationStore.merge`

Every ``.pt`` file holds only tensors and plain types, so ``torch.load(path, weights_only=True)``
reads it, and carries ``sha256``, the checksum of its tensors (:func:`refine_fast.fileio.tensors_sha256`
of ``graph_ids``, ``ptr`` and ``importance``; the merged file's also covers ``meta``). Files are
written to a temporary name and renamed, so a killed run leaves either a whole chunk or none;
resuming checks every finished chunk, sets aside one that is empty, truncated or fails its checksum
(``<name>.corrupt``, with a warning) and recomputes it, and redoes nothing else.

``explanations.pt`` holds ``graph_ids`` int64 ``[B]``, ``ptr`` int64 ``[B+1]`` and ``importance``
float32 ``[E]``: graph ``graph_ids[i]``'s importances are ``importance[ptr[i]:ptr[i+1]]``, in its
own edge order, plus ``meta`` (the manifest's) and ``sha256``. A chunk file holds the same three
tensors for its graphs and ``sha256``. Merging holds the merged result (4 bytes per edge + 16 per
graph) and one chunk in memory; a run that skips it is read chunk by chunk
(:meth:`ExplanationStore.open`, :meth:`ExplanationStore.read`).
"""
from __future__ import annotations

import json
import operator
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from .fileio import atomic_save, atomic_write_text, load_tensors, tensors_sha256

__all__ = ["ExplanationStore", "load_explanations", "concat_importances", "split_importances"]

MERGED = "explanations.pt"
MANIFEST = "manifest.json"
FORMAT = 2  # 1: no format key, chunks without checksums (still read; never resumed)
TENSORS = ("graph_ids", "ptr", "importance")


def concat_importances(importances: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Concatenate per-graph importances ``[E_g]`` into ``(flat [E], ptr [B+1])``."""
    sizes = torch.tensor([t.numel() for t in importances], dtype=torch.long)
    ptr = torch.zeros(len(importances) + 1, dtype=torch.long)
    torch.cumsum(sizes, 0, out=ptr[1:])
    flat = torch.cat([t.detach().reshape(-1).float().cpu() for t in importances]) if importances else torch.zeros(0)
    return flat, ptr


def split_importances(flat: Tensor, ptr: Tensor) -> list[Tensor]:
    """Inverse of :func:`concat_importances`: a list of ``[E_g]`` tensors."""
    return list(torch.split(flat, ptr.diff().tolist())) if ptr.numel() > 1 else []




def _show(value) -> str:
    """A manifest value for a message (fingerprints shortened to 12 hex digits)."""
    if value is _MISSING:
        return "(not recorded)"
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12] + "…"
    return json.dumps(value)


_MISSING = object()


def _checked_part(part, n: Optional[int], checksum: bool, extra_keys: Sequence[str] = ()) -> Optional[str]:
    """Why a loaded chunk / merged file is not a valid result for ``n`` graphs (``None``: it is)."""
    if not isinstance(part, dict) or not all(isinstance(part.get(k), Tensor) for k in TENSORS):
        return f"not a refine_fast explanations file (expected tensors {', '.join(TENSORS)})"
    ids, ptr, flat = (part[k] for k in TENSORS)
    b = ids.numel() if n is None else n
    if ids.dtype != torch.long or ids.shape != (b,) or ptr.dtype != torch.long or ptr.shape != (b + 1,):
        return f"graph_ids / ptr are not int64 [{b}] / [{b + 1}] (got {list(ids.shape)} / {list(ptr.shape)})"
    if flat.dtype != torch.float32 or flat.dim() != 1 or int(ptr[0]) != 0 or int(ptr[-1]) != flat.numel() \
            or bool((ptr.diff() < 0).any()):
        return "ptr does not delimit importance (float32 [E])"
    if "sha256" in part:
        if part["sha256"] != _digest(part, extra_keys):
            return "corrupt: its checksum does not match its contents"
    elif checksum:
        return "without a checksum"
    return None


def _digest(part: dict, extra_keys: Sequence[str] = ()) -> str:
    return tensors_sha256({k: part[k] for k in TENSORS},
                          extra=json.dumps({k: part.get(k) for k in extra_keys}, sort_keys=True))


def _load(path: Path, mmap: bool = False):
    return load_tensors(path, "explanations file", mmap=mmap)


class ExplanationStore:
    """Resumable store for explaining graphs ``0..num_graphs-1`` in chunks of ``chunk_size``.

    ``meta`` describes the run (seed, ratio, steps, fingerprints of the model and explainer, ...).
    Reopening a directory whose manifest has a different ``meta``, ``num_graphs`` or ``chunk_size``
    raises a ``ValueError`` naming every difference instead of mixing two runs, unless
    ``overwrite=True``; keys in ``informational`` (e.g. file paths, whose contents are fingerprinted
    in other keys) are recorded but not compared. Nothing is written until :meth:`start` (called by
    the first :meth:`write`): a run that fails before its first chunk leaves the directory as it was.
    """

    def __init__(self, directory: str | os.PathLike, num_graphs: int, chunk_size: int, meta: dict,
                 overwrite: bool = False, informational: Sequence[str] = ()):
        for name, value, low in (("num_graphs", num_graphs, 0), ("chunk_size", chunk_size, 1)):
            try:
                if isinstance(value, bool):
                    raise TypeError
                operator.index(value)
            except TypeError:
                raise TypeError(f"ExplanationStore: {name} must be an int, got {value!r}") from None
            if int(value) < low:
                raise ValueError(f"ExplanationStore: {name} must be >= {low}, got {int(value)}")
        self.dir = Path(directory)
        self.chunk_dir = self.dir / "chunks"
        self.num_graphs = int(num_graphs)
        self.chunk_size = int(chunk_size)
        self.informational = tuple(informational)
        self.manifest = {"format": FORMAT, "num_graphs": self.num_graphs, "chunk_size": self.chunk_size,
                         "meta": json.loads(json.dumps(meta))}
        self._verified: set = set()
        old = None if overwrite else self._read_manifest()
        self._started = old is not None
        if old is not None:
            self._check_same_run(old)
            if old != self.manifest:  # only informational keys differ: record the new values
                atomic_write_text(json.dumps(self.manifest, indent=1), self.dir / MANIFEST)

    def _read_manifest(self) -> Optional[dict]:
        path = self.dir / MANIFEST
        if not path.exists():
            return None
        try:
            old = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"ExplanationStore: {path} is not valid JSON ({error}); pass overwrite=True "
                             f"(--overwrite) to discard that run or choose another directory") from None
        if not isinstance(old, dict) or not isinstance(old.get("meta"), dict):
            raise ValueError(f"ExplanationStore: {path} is not an explanation store manifest")
        return old

    def _check_same_run(self, old: dict) -> None:
        hint = "pass overwrite=True (--overwrite) to discard it or choose another directory"
        if old.get("format", 1) != FORMAT:
            raise ValueError(f"ExplanationStore: {self.dir} holds a run written by another version of refine_fast "
                             f"(store format {old.get('format', 1)}, this one writes {FORMAT}), whose settings "
                             f"and chunks cannot be checked; {hint}")
        diffs = [f"{k} {_show(old.get(k, _MISSING))} there, {_show(self.manifest[k])} now"
                 for k in ("num_graphs", "chunk_size") if old.get(k, _MISSING) != self.manifest[k]]
        a, b = old["meta"], self.manifest["meta"]
        diffs += [f"{k} {_show(a.get(k, _MISSING))} there, {_show(b.get(k, _MISSING))} now"
                  for k in sorted(set(a) | set(b))
                  if k not in self.informational and a.get(k, _MISSING) != b.get(k, _MISSING)]
        if diffs:
            raise ValueError(f"ExplanationStore: {self.dir} holds a run with other settings: {'; '.join(diffs)}; "
                             f"{hint}")

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "ExplanationStore":
        """Reopen the store at ``directory`` with the settings of its manifest (to read it)."""
        directory = Path(directory)
        path = directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"ExplanationStore.open: no {MANIFEST} in {directory}")
        store = cls.__new__(cls)
        store.dir, store.chunk_dir, store.informational = directory, directory / "chunks", ()
        m = store._read_manifest()
        try:
            store.num_graphs, store.chunk_size = int(m["num_graphs"]), int(m["chunk_size"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"ExplanationStore.open: {path} lacks num_graphs / chunk_size") from None
        store.manifest, store._verified, store._started = m, set(), True
        return store

    @property
    def format(self) -> int:
        return int(self.manifest.get("format", 1))

    def chunks(self) -> list[tuple[int, int]]:
        """All ``(start, stop)`` graph ranges of the run."""
        return [(s, min(s + self.chunk_size, self.num_graphs)) for s in range(0, self.num_graphs, self.chunk_size)]

    def _path(self, start: int, stop: int) -> Path:
        return self.chunk_dir / f"chunk_{start:010d}_{stop:010d}.pt"

    def start(self) -> None:
        """Begin the run (once): clear an overwritten run's files, then write the manifest."""
        if self._started:
            return
        if self.chunk_dir.is_dir():
            for f in self.chunk_dir.iterdir():
                if f.name.startswith(("chunk_", ".chunk_")):
                    f.unlink(missing_ok=True)
        for f in self.dir.glob(f"*{MERGED}*"):
            f.unlink(missing_ok=True)
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(self.manifest, indent=1), self.dir / MANIFEST)
        self._started = True

    def _problem(self, start: int, stop: int) -> Optional[str]:
        """Why the written chunk ``start..stop-1`` is unusable (``None``: it is whole and checked)."""
        if (start, stop) in self._verified:
            return None
        try:
            reason = _checked_part(_load(self._path(start, stop), mmap=True), stop - start, self.format >= FORMAT)
        except ValueError as error:
            reason = str(error)
        if reason is None:
            self._verified.add((start, stop))
        return reason

    def done(self, start: int, stop: int) -> bool:
        """Whether chunk ``start..stop-1`` is written (whole and checked: see :meth:`pending`)."""
        return self._started and self._path(start, stop).exists() and self._problem(start, stop) is None

    def pending(self) -> list[tuple[int, int]]:
        """The chunks still to compute (a resumed run starts here). A chunk file that is empty,
        truncated or fails its checksum is named in a warning, moved aside to ``<name>.corrupt`` and
        counted as pending, so it is recomputed and never merged."""
        todo = []
        for s, e in self.chunks():
            path = self._path(s, e)
            if not self._started or not path.exists():
                todo.append((s, e))
                continue
            reason = self._problem(s, e)
            if reason is not None:
                aside = path.with_name(path.name + ".corrupt")
                try:
                    os.replace(path, aside)
                except FileNotFoundError:  # another rank set it aside first
                    pass
                warnings.warn(f"ExplanationStore: chunk {path} is unusable ({reason}); moved to {aside.name}, "
                              f"it will be recomputed", stacklevel=2)
                todo.append((s, e))
        return todo

    def write(self, start: int, stop: int, importances: Sequence[Tensor], graph_ids: Tensor | None = None) -> None:
        """Write the importances of graphs ``start..stop-1`` (one ``[E_g]`` tensor each), a chunk of
        :meth:`chunks`, with its checksum.

        ``graph_ids`` int64 ``[stop-start]`` names the graphs (e.g. their dataset indices); default
        their positions ``start..stop-1``.
        """
        if (start, stop) not in self.chunks():
            raise ValueError(f"ExplanationStore.write: ({start}, {stop}) is not a chunk of this store "
                             f"(chunks of {self.chunk_size} of {self.num_graphs} graphs: "
                             f"{self.chunks()[:2]}{', ...' if len(self.chunks()) > 2 else ''})")
        if len(importances) != stop - start:
            raise ValueError(f"ExplanationStore.write: expected {stop - start} importances, got {len(importances)}")
        ids = torch.arange(start, stop) if graph_ids is None else torch.as_tensor(graph_ids, dtype=torch.long)
        if ids.shape != (stop - start,):
            raise ValueError(f"ExplanationStore.write: graph_ids must have shape [{stop - start}], got {list(ids.shape)}")
        self.start()
        flat, ptr = concat_importances(importances)
        part = {"graph_ids": ids.cpu(), "ptr": ptr, "importance": flat}
        part["sha256"] = _digest(part)
        atomic_save(part, self._path(start, stop))
        self._verified.add((start, stop))

    def read(self, start: int, stop: int) -> tuple[Tensor, list[Tensor]]:
        """A finished chunk: ``(graph_ids [stop-start], [importance [E_g]] * (stop-start))``; raises
        ``ValueError`` naming the file when it is corrupt."""
        path = self._path(start, stop)
        if not path.exists():
            raise FileNotFoundError(f"ExplanationStore.read: chunk {path} is not written")
        part = _load(path)
        reason = _checked_part(part, stop - start, self.format >= FORMAT)
        if reason is not None:
            raise ValueError(f"ExplanationStore.read: chunk {path} is unusable ({reason})")
        return part["graph_ids"], split_importances(part["importance"], part["ptr"])

    def _check_finished(self, caller: str) -> None:
        """Raise unless every chunk is written, whole and checked (reading never moves files)."""
        missing = [c for c in self.chunks() if not self._started or not self._path(*c).exists()]
        if missing:
            raise RuntimeError(f"{caller}: {len(missing)} chunks of {self.dir} are not finished, first {missing[0]}")
        for s, e in self.chunks():
            reason = self._problem(s, e)
            if reason is not None:
                raise ValueError(f"{caller}: chunk {self._path(s, e)} is unusable ({reason}); run the explain "
                                 f"command again to recompute it")

    def merge(self) -> Path:
        """Concatenate every chunk into ``explanations.pt`` (with its checksum); raises if a chunk is
        missing or corrupt.

        Memory: the merged tensors (4 bytes per edge + 16 bytes per graph) plus one chunk, read
        through ``mmap`` (sizes first, then the copy into the preallocated result)."""
        self._check_finished("ExplanationStore.merge")
        self.start()  # a run of no graphs has no chunk that started it
        counts = [int(_load(self._path(s, e), mmap=True)["ptr"][-1]) for s, e in self.chunks()]
        ids = torch.empty(self.num_graphs, dtype=torch.long)
        ptr = torch.zeros(self.num_graphs + 1, dtype=torch.long)
        flat = torch.empty(sum(counts), dtype=torch.float32)
        edges = 0
        for s, e in self.chunks():
            part = _load(self._path(s, e), mmap=True)
            n = int(part["ptr"][-1])
            ids[s:e] = part["graph_ids"]
            ptr[s + 1:e + 1] = part["ptr"][1:] + edges
            flat[edges:edges + n] = part["importance"]
            edges += n
            del part  # unmaps the chunk file
        out = self.dir / MERGED
        merged = {"graph_ids": ids, "ptr": ptr, "importance": flat, "meta": self.manifest["meta"]}
        merged["sha256"] = _digest(merged, ("meta",))
        atomic_save(merged, out)
        return out


def load_explanations(path: str | os.PathLike) -> tuple[Tensor, list[Tensor], dict]:
    """Read ``explanations.pt`` (or its directory): ``(graph_ids [B], [importance [E_g]] * B, meta)``.

    A directory without ``explanations.pt`` (a run with ``--no-merge``) is read from its chunks,
    which must all be finished. A file that is truncated or fails its checksum raises ``ValueError``
    naming it (files written before checksums existed load unchecked)."""
    path = Path(path)
    if path.is_dir() and not (path / MERGED).exists() and (path / MANIFEST).exists():
        store = ExplanationStore.open(path)
        store._check_finished("load_explanations")
        parts = [store.read(s, e) for s, e in store.chunks()]
        ids = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
        return ids, [t for p in parts for t in p[1]], store.manifest["meta"]
    if path.is_dir():
        path = path / MERGED
    if not path.is_file():
        raise FileNotFoundError(f"load_explanations: no explanations file at {path}")
    data = _load(path)
    reason = _checked_part(data, None, checksum=False, extra_keys=("meta",))
    if reason is not None:
        raise ValueError(f"load_explanations: {path} is unusable ({reason})")
    meta = data.get("meta", {})
    importances = split_importances(data["importance"], data["ptr"])
    return data["graph_ids"], importances, meta if isinstance(meta, dict) else {}
