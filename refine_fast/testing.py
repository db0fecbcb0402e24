"""Helpers for tests and benchmarks: count the operations that make a GPU wait for the host.

A host sync (reading a device value on the host: ``.item()``, ``bool(tensor)``, boolean-mask
indexing, ``nonzero``, ``unique``) drains the GPU's queue of work and rules out CUDA graph
capture. :class:`SyncCounter` counts them on any device, so a CPU test can prove a step has none.
It reads the profiler's record of every ATen call, which includes the calls made from inside
other ops' C++ kernels (a ``TorchDispatchMode`` sees only the outermost op).
"""
from __future__ import annotations

import collections
import warnings
from typing import Callable, Counter, List, Tuple

import torch
from torch.profiler import ProfilerActivity, profile

__all__ = ["SYNC_OPS", "SyncCounter", "cuda_sync_debug_count", "assert_cuda_graph_safe"]

# ATen ops that read device memory on the host (item, int(), bool(), is_nonzero, tolist and
# repeat_interleave / bincount without sizes all end in _local_scalar_dense) or need a data-dependent
# output size.
SYNC_OPS = frozenset({
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::unique_dim_consecutive",
})


class SyncCounter:
    """Counts the syncing ops (:data:`SYNC_OPS`) run inside a ``with`` block.

    A syncing op called by another syncing op (``masked_select`` -> ``nonzero`` on CUDA) counts once.
    Ops inside a profiler range whose name starts with one of ``exclude`` are not counted (e.g.
    ``"Optimizer.step"``: torch's Adam reads its step counters, which live on the host unless
    ``capturable``). After the block, ``count`` is the total and ``ops`` a ``Counter`` by op name.
    """

    def __init__(self, exclude: Tuple[str, ...] = ()) -> None:
        self.exclude = tuple(exclude)
        self.count = 0
        self.ops: Counter[str] = collections.Counter()
        self._profile = profile(activities=[ProfilerActivity.CPU], experimental_config=_all_threads())

    def __enter__(self) -> "SyncCounter":
        self._profile.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._profile.__exit__(*exc)
        for event in self._profile.events():
            if event.name in SYNC_OPS and not _inside(event, SYNC_OPS, self.exclude):
                self.ops[event.name] += 1
        self.count = sum(self.ops.values())


def _all_threads():
    """The profiler setting that records every thread (fine-tuning runs batches in worker threads)."""
    from torch._C._profiler import _ExperimentalConfig

    return _ExperimentalConfig(profile_all_threads=True)


def _inside(event, names, prefixes) -> bool:
    """Whether an enclosing event is named one of ``names`` or starts with one of ``prefixes``."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name in names or parent.name.startswith(prefixes):
            return True
        parent = parent.cpu_parent
    return False


def cuda_sync_debug_count(fn: Callable[[], object]) -> int:
    """Runs ``fn()`` under ``torch.cuda.set_sync_debug_mode('warn')`` and returns how many synchronizing
    CUDA calls it made (device-to-host copies and stream waits included, which :class:`SyncCounter`
    does not see)."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchronizing" in str(w.message) for w in caught)


def assert_cuda_graph_safe(run: Callable[[], List[torch.Tensor]]) -> None:
    """``run()`` (CUDA work returning a list of tensors) makes no host synchronization — none under sync
    debug mode ``'error'`` — and can be captured in a CUDA graph whose replay gives the bits of an eager
    call (warm-up on a side stream before the capture)."""
    expected = run()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = run()
    graph.replay()
    torch.cuda.synchronize()
    assert all(torch.equal(a, b) for a, b in zip(captured, expected))
