"""Explain a graph source chunk by chunk into an :class:`~refine_fast.store.ExplanationStore`.

Only one chunk of graphs is in memory at a time: each pending chunk's graphs are fetched from the
source, explained, written, and dropped, so a dataset larger than memory (e.g. PyG's
``OnDiskDataset``, see :func:`refine_fast.datasets.open_graphs`) streams through with memory bounded
by the chunk size. The noise of every graph is keyed by its dataset id, so the importances equal
those of in-memory ``ReFine.explain`` calls on the same chunks with the same ids and seed (other
batchings agree up to float rounding, see the README).
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Union

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.data.data import BaseData

from .store import ExplanationStore
from .validation import EXPLAIN_ARGS, check_args, check_graph_ids

__all__ = ["explain_to_store", "fetch", "chunk_edges"]

Ids = Union[Tensor, range, Sequence[int]]


def _slice(ids: Ids, start: int, stop: int) -> Tensor:
    """Dataset ids of store positions ``start..stop-1`` as int64 ``[stop-start]``."""
    part = ids[start:stop]
    return part.long() if isinstance(part, Tensor) else torch.tensor(list(part), dtype=torch.long)


def fetch(source, ids: Union[Tensor, Sequence[int]]) -> List:
    """Graphs ``source[i]`` for ``i`` in ``ids``: one ``multi_get`` call when the source has one
    (``OnDiskDataset``: one database query), else one ``source[i]`` each."""
    ids = ids.tolist() if isinstance(ids, Tensor) else [int(i) for i in ids]
    if hasattr(source, "multi_get") and hasattr(source, "indices"):
        index = source.indices()  # multi_get reads database rows; a sliced dataset maps ids to rows
        return list(source.multi_get([int(index[i]) for i in ids]))
    return [source[i] for i in ids]


def chunk_edges(source, ids: Ids, chunks: Iterable[tuple[int, int]]) -> List[int]:
    """Number of edges of each ``(start, stop)`` chunk of store positions, read one chunk at a time."""
    return [sum(int(g.num_edges) for g in fetch(source, _slice(ids, s, e))) for s, e in chunks]


def explain_to_store(refine, source, store: ExplanationStore, ids: Optional[Ids] = None,
                     chunks: Optional[Iterable[tuple[int, int]]] = None, *, ratio: Optional[float] = None,
                     steps: Optional[int] = None, lr: Optional[float] = None, seed: int = 0,
                     batch_size: Optional[int] = None, select: str = "sample", progress: bool = True,
                     desc: str = "explain") -> int:
    """Explain the graphs of ``store``'s unfinished chunks and write each chunk; returns how many graphs.

    ``source`` is any indexable graph source (``len`` and ``source[i]``; ``multi_get`` is used when
    present). Store position ``p`` is graph ``source[ids[p]]`` (``ids`` int64 ``[store.num_graphs]``,
    a ``range`` or a list; default ``range(len(source))``), explained with ``graph_ids = ids`` so
    the result equals ``refine.explain([source[i] for i in ids], graph_ids=ids, ...)``. ``chunks``
    (default ``store.pending()``) limits the work, e.g. to one rank's share. ``ratio``, ``steps``,
    ``lr``, ``seed``, ``batch_size`` and ``select`` are passed to :meth:`ReFine.explain`.

    ``progress`` shows one bar of the graphs done (and graphs/s) on stderr, advanced batch by batch.

    Memory: one chunk of ``store.chunk_size`` graphs, their fine-tuning working set
    (``batch_size`` graphs at a time) and their importances (4 bytes per edge) at a time.
    """
    from tqdm import tqdm

    check_args("explain_to_store", EXPLAIN_ARGS, ratio=ratio, steps=steps, lr=lr, seed=seed, batch_size=batch_size)
    indexable = hasattr(source, "__len__") and hasattr(source, "__getitem__")
    if (isinstance(source, BaseData) and not isinstance(source, Batch)) or not indexable:
        raise TypeError(f"explain_to_store: source must be an indexable graph source (a list of Data, a "
                        f"dataset), got {type(source).__name__}")
    ids = range(len(source)) if ids is None else ids
    if len(ids) != store.num_graphs:
        raise ValueError(f"explain_to_store: ids has {len(ids)} graphs, the store {store.num_graphs}")
    checked = check_graph_ids(ids, len(ids), "explain_to_store: ids")
    if checked.numel() and int(checked.max()) >= len(source):
        bad = int((checked >= len(source)).nonzero()[0])
        raise ValueError(f"explain_to_store: ids[{bad}] = {int(checked[bad])} is not a graph of the source "
                         f"({len(source)} graphs)")
    todo = list(store.pending() if chunks is None else chunks)
    explained = 0
    with tqdm(total=sum(e - s for s, e in todo), desc=desc, unit="graph", disable=not progress) as bar:
        for s, e in todo:
            chunk_ids = _slice(ids, s, e)
            graphs = fetch(source, chunk_ids)
            imps = refine.explain(graphs, ratio=ratio, steps=steps, lr=lr, seed=seed, batch_size=batch_size,
                                  graph_ids=chunk_ids.tolist(), progress=bar, select=select)
            store.write(s, e, imps, graph_ids=chunk_ids)
            explained += e - s
            del graphs, imps  # before the next chunk is fetched
    return explained
