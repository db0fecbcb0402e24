"""Explain a graph source chunk by chunk into an :class:`~refine_fast.store.ExplanationStore`.

Only one chunk of graphs is in memory at a time: each pending chunk's graphs are fetched from the
source, explained, written, and dropped, so a dataset larger than memory (e.g. PyG's
``OnDiskDataset``, see :func:`refine_fast.datasets.open_graphs`) streams through with memory bounded
by the chunk size. The noise of every graph is keyed by its dataset id, so the importances equal
those of in-memory ``ReFine.explain`` calls on the same chunks with the same ids and seed (other
batchings agree up to float rounding, see docs/performance.md). Under torchrun the pending chunks are
shared out across ranks by edge count (:func:`rank_chunks`).
"""
from __future__ import annotations

from typing import Iterable, List, Optional, Sequence, Union

import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.data.data import BaseData

from .store import ExplanationStore
from .validation import EXPLAIN_ARGS, check_args, check_graph_ids

__all__ = ["explain_to_store", "fetch", "chunk_edges", "balance_chunks", "rank_chunks"]

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


def balance_chunks(chunks: Sequence[tuple[int, int]], loads: Sequence[int], rank: int, world: int
                   ) -> List[tuple[int, int]]:
    """The chunks of rank ``rank`` of ``world``: dealt greedily by ``loads`` (e.g. edges per chunk), largest
    first, each to the least loaded rank (ties: the lower rank), so the ranks get similar work; in order."""
    load = [0] * world
    mine = []
    for k in sorted(range(len(chunks)), key=lambda k: -loads[k]):
        r = min(range(world), key=lambda i: (load[i], i))
        load[r] += loads[k]
        if r == rank:
            mine.append(chunks[k])
    return sorted(mine)


def rank_chunks(source, ids: Ids, chunks: Sequence[tuple[int, int]], device: Union[str, torch.device] = "cpu",
                group=None) -> List[tuple[int, int]]:
    """This rank's share of ``chunks`` (store positions) under ``torch.distributed`` (collective: every rank
    of ``group`` calls it with the same chunks): :func:`balance_chunks` by edge count, the counts read
    by each rank for every world-th chunk (one chunk in memory at a time) and all-reduced on ``device``
    (the device of the group's backend: a GPU for nccl)."""
    import torch.distributed as dist

    rank, world = dist.get_rank(group), dist.get_world_size(group)
    loads = torch.zeros(len(chunks), dtype=torch.long, device=device)
    mine = list(range(rank, len(chunks), world))
    loads[mine] = torch.tensor(chunk_edges(source, ids, [chunks[k] for k in mine]), dtype=torch.long, device=device)
    dist.all_reduce(loads, group=group)
    return balance_chunks(chunks, loads.tolist(), rank, world)


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
