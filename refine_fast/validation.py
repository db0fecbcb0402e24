"""Checks of user input at the API boundary: graph lists, mini-batches, numbers and importances.

Every check raises ``TypeError`` (wrong Python type or tensor dtype) or ``ValueError`` (wrong shape or
value) with a message that names the argument, the graph (its position in the list and, when known,
its dataset id) and what was expected. The graph checks loop over the graphs once for the cheap
per-graph facts (types, shapes, sizes) and check the values (finite features, ``edge_index`` range) on
the concatenated tensors, so they cost a few milliseconds per thousand graphs.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.data.data import BaseData

__all__ = ["Spec", "RATIO", "POSITIVE", "SEED", "EXPLAIN_ARGS", "check_args", "check_int", "check_ratios",
           "check_graph_ids", "check_classes", "as_graph_list", "check_graphs", "stack_graphs", "StackedGraphs",
           "check_batch", "check_features", "check_ptr", "check_importances", "model_dims", "model_checks",
           "check_model_dims"]


# -- numbers -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    """What one setting may be: ``kind`` ``int``, ``float`` (ints accepted, finite), ``bool`` or ``str``
    (one of ``choices``), within ``[low, high]`` (``low_open``: ``low < value``; ``None``: unbounded)."""

    kind: type
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    choices: tuple = ()

    def describe(self) -> str:
        """E.g. ``'an int >= 1'``, ``'a finite float in (0, 1]'``, ``'a bool'``, ``"one of ('a', 'b')"``."""
        if self.kind is bool:
            return "a bool"
        if self.kind is str:
            return f"one of {self.choices}"
        what = "an int" if self.kind is int else "a finite float"
        low, high = (str(int(v)) if self.kind is int else f"{v:g}" for v in (self.low or 0, self.high or 0))
        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.low_open else '['}{low}, {high}]"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{what} <= {high}"
        return what

    def check(self, value: Any, name: str) -> Any:
        """``value`` unchanged if it fits; else ``TypeError`` (wrong type) or ``ValueError`` naming ``name``."""
        is_bool = isinstance(value, (bool, np.bool_))
        if self.kind is bool:
            ok = is_bool
        elif self.kind is str:
            ok = isinstance(value, str)
        elif self.kind is int:
            ok = isinstance(value, numbers.Integral) and not is_bool
        else:
            ok = isinstance(value, numbers.Real) and not is_bool
        if not ok:
            raise TypeError(f"{name} must be {self.describe()}, got {type(value).__name__} {value!r}")
        if self.kind is bool:
            return value
        if self.kind is str:
            if value not in self.choices:
                raise ValueError(f"{name} must be {self.describe()}, got {value!r}")
            return value
        if self.kind is float and not math.isfinite(value):
            raise ValueError(f"{name} must be {self.describe()}, got {value}")
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        if too_low or (self.high is not None and value > self.high):
            raise ValueError(f"{name} must be {self.describe()}, got {value}")
        return value


RATIO = Spec(float, 0.0, 1.0, low_open=True)
POSITIVE = Spec(float, 0.0, low_open=True)
SEED = Spec(int, -2**63, 2**63 - 1)
EXPLAIN_ARGS: Dict[str, Spec] = {"ratio": RATIO, "steps": Spec(int, 0), "lr": POSITIVE, "batch_size": Spec(int, 1),
                                 "seed": SEED, "workers": Spec(int, 1)}
"""The numeric arguments of ``ReFine.explain`` (and of the callers that pass them through)."""


def check_args(caller: str, specs: Dict[str, Spec], **values: Any) -> None:
    """Check each ``name=value`` against ``specs[name]`` (``None`` values are skipped: defaults)."""
    for key, value in values.items():
        if value is not None:
            specs[key].check(value, f"{caller}: {key}")


def check_int(value: Any, name: str, low: Optional[int] = None, high: Optional[int] = None) -> int:
    """``int(value)`` for an integer (not a bool, not a float) in ``[low, high]``."""
    return int(Spec(int, low, high).check(value, name))


def check_ratios(ratios: Any, name: str) -> List[float]:
    """A non-empty sequence of ratios, each a finite float in (0, 1]."""
    if isinstance(ratios, (str, bytes)) or not hasattr(ratios, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ratios in (0, 1], got {type(ratios).__name__}")
    out = [float(RATIO.check(r, f"{name}[{i}]")) for i, r in enumerate(ratios)]
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def check_graph_ids(graph_ids: Any, num_graphs: int, name: str, device=None) -> Tensor:
    """Graph ids as int64 ``[num_graphs]`` in ``[0, 2**31)`` (default ``0..num_graphs-1``)."""
    if graph_ids is None:
        return torch.arange(num_graphs, device=device)
    if isinstance(graph_ids, range):
        ids = torch.arange(graph_ids.start, graph_ids.stop, graph_ids.step)
    else:
        ids = graph_ids if isinstance(graph_ids, Tensor) else torch.as_tensor(list(graph_ids))
    if ids.numel() and (ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool):
        raise TypeError(f"{name} must be integers, got {ids.dtype}")
    ids = ids.reshape(-1).to(device=device, dtype=torch.long)
    if ids.numel() != num_graphs:
        raise ValueError(f"{name} has {ids.numel()} entries for {num_graphs} graphs")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= 2**31):
        bad = int(((ids < 0) | (ids >= 2**31)).nonzero()[0])
        raise ValueError(f"{name}[{bad}] = {int(ids[bad])}; graph ids must be in [0, 2**31)")
    return ids


def check_classes(classes: Any, num_graphs: int, num_classes: int, name: str, device=None) -> Tensor:
    """One class id per graph as int64 ``[num_graphs]``, each in ``[0, num_classes)``."""
    cls = classes if isinstance(classes, Tensor) else torch.as_tensor(classes)
    if cls.numel() and (cls.is_floating_point() or cls.is_complex() or cls.dtype == torch.bool):
        raise TypeError(f"{name} must be integer class ids, got {cls.dtype}")
    cls = cls.reshape(-1).to(device=device, dtype=torch.long)
    if cls.numel() != num_graphs:
        raise ValueError(f"{name} must hold one class id per graph ({num_graphs}), got {cls.numel()}")
    wrong = (cls < 0) | (cls >= num_classes)
    if bool(wrong.any()):
        i = int(wrong.nonzero()[0])
        raise ValueError(f"{name}[{i}] = {int(cls[i])}; class ids must be in [0, {num_classes})")
    return cls


# -- graphs ------------------------------------------------------------------------------------------

def as_graph_list(graphs: Any, name: str) -> list:
    """``list(graphs)`` for a list, tuple or dataset of graphs; a single ``Data`` or ``Batch`` (whose
    iteration yields attribute tuples), a tensor or a non-iterable raises ``TypeError`` naming ``name``."""
    if isinstance(graphs, Batch):
        raise TypeError(f"{name}: got a torch_geometric Batch; pass batch.to_data_list() or a list of Data")
    if isinstance(graphs, BaseData):
        raise TypeError(f"{name}: got a single torch_geometric {type(graphs).__name__}; pass a list of "
                        f"graphs ([data] for one graph)")
    if isinstance(graphs, (Tensor, str, bytes, dict)) or not hasattr(graphs, "__iter__"):
        raise TypeError(f"{name} must be a list (or dataset) of torch_geometric Data, got "
                        f"{type(graphs).__name__}")
    return list(graphs)


class _Labels:
    """``graphs[i] (graph id g)`` for messages."""

    def __init__(self, name: str, graph_ids: Optional[Tensor]):
        self.name, self.ids = name, graph_ids

    def __call__(self, i: int) -> str:
        return f"{self.name}[{i}]" + ("" if self.ids is None else f" (graph id {int(self.ids[i])})")


def _first_bad_row(t: Tensor) -> Optional[int]:
    """Index of the first row of a floating ``[R, ...]`` tensor holding NaN or inf, else None."""
    if not t.is_floating_point() or t.numel() == 0:
        return None
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return None
    return int((~finite.reshape(t.size(0), -1).all(1)).nonzero()[0])


def _locate(row: int, counts: Sequence[int]) -> tuple[int, int]:
    """(graph, local row) of a row of a concatenation of blocks of ``counts`` rows."""
    ptr = torch.tensor([0] + list(counts)).cumsum(0)
    g = int(torch.searchsorted(ptr, torch.tensor(row), right=True)) - 1
    return g, row - int(ptr[g])


def check_features(x: Tensor, edge_attr: Optional[Tensor], name: str, node_dim: Optional[int] = None,
                   edge_dim: Optional[int] = None, needs_edge_attr: Optional[bool] = None,
                   dtype: Optional[torch.dtype] = None, owner: str = "the explainer's") -> None:
    """The features of a set of graphs, ``x [N, F]`` and ``edge_attr [E, D_e]`` (None: absent), against
    ``owner``'s ``node_dim`` and ``edge_dim`` (> 0: edge features of that width are required;
    ``needs_edge_attr`` overrides whether ``edge_attr`` must be present) and floating ``dtype``."""
    node_width, edge_width = x.size(1), None if edge_attr is None else edge_attr.size(1)
    if dtype is not None:
        for key, t in (("x", x), ("edge_attr", edge_attr)):
            if t is not None and t.is_floating_point() and t.dtype != dtype:
                raise TypeError(f"{name}: {key} is {t.dtype}, expected {dtype} ({owner}); cast the graphs, or "
                                f"the explainer and the model (refine.to({t.dtype}), model.to({t.dtype}))")
    if node_dim is not None and node_width != node_dim:
        raise ValueError(f"{name}: the graphs have {node_width} node features (x.size(1)), expected "
                         f"node_dim={node_dim} ({owner})")
    needs = bool(edge_dim) if needs_edge_attr is None else needs_edge_attr
    if needs and edge_width is None:
        raise ValueError(f"{name}: the graphs have no edge_attr, expected edge features"
                         + (f" of width edge_dim={edge_dim}" if edge_dim else "") + f" ({owner})")
    if edge_dim and edge_width is not None and edge_width != edge_dim:
        raise ValueError(f"{name}: the graphs have {edge_width} edge features (edge_attr.size(1)), expected "
                         f"edge_dim={edge_dim} ({owner})")


@dataclass
class StackedGraphs:
    """Checked graphs and their concatenated tensors: ``x [N, F]``, ``edge_index [2, E]`` (graph-local
    node ids, dtype as given), ``edge_attr [E, D_e]`` or None, sizes ``num_nodes`` / ``num_edges`` ``[B]``
    and ``graph_ids`` int64 ``[B]`` (default ``0..B-1``)."""

    graphs: List[Data]
    x: Optional[Tensor]
    edge_index: Optional[Tensor]
    edge_attr: Optional[Tensor]
    num_nodes: List[int]
    num_edges: List[int]
    graph_ids: Tensor


def check_graphs(graphs: Any, *, name: str = "graphs", node_dim: Optional[int] = None,
                 edge_dim: Optional[int] = None, needs_edge_attr: Optional[bool] = None,
                 dtype: Optional[torch.dtype] = None, graph_ids: Any = None, needs_y: bool = False,
                 owner: str = "the explainer's") -> List[Data]:
    """The graphs as a list of PyG ``Data``, after checking every one (see :func:`stack_graphs`)."""
    return stack_graphs(graphs, name=name, node_dim=node_dim, edge_dim=edge_dim, needs_edge_attr=needs_edge_attr,
                        dtype=dtype, graph_ids=graph_ids, needs_y=needs_y, owner=owner).graphs


def stack_graphs(graphs: Any, *, name: str = "graphs", node_dim: Optional[int] = None,
                 edge_dim: Optional[int] = None, needs_edge_attr: Optional[bool] = None,
                 dtype: Optional[torch.dtype] = None, graph_ids: Any = None, needs_y: bool = False,
                 owner: str = "the explainer's") -> StackedGraphs:
    """The graphs checked and concatenated (:class:`StackedGraphs`); raises naming ``name[i]``.

    Checked: a list/dataset (a ``Data`` or ``Batch`` is refused by name, with a hint), each item a
    homogeneous ``Data`` with floating ``x [N, F]``, integer ``edge_index [2, E]`` with ids in
    ``[0, N)``, optional ``edge_attr`` (``[E]`` or ``[E, D_e]``: one row per edge) on every graph or
    none, optional ``edge_gt [E]``; the same widths and device on every graph; finite ``x`` and
    ``edge_attr``; widths and dtype against ``owner``'s ``node_dim``, ``edge_dim``, ``dtype`` (see
    :func:`check_features`);
    with ``needs_y`` one label ``y`` per graph. ``graph_ids`` (dataset ids) are named in messages.
    """
    graphs = as_graph_list(graphs, name)
    if not graphs:
        return StackedGraphs(graphs, None, None, None, [], [], check_graph_ids(graph_ids, 0, f"{name}: graph_ids"))
    ids = check_graph_ids(graph_ids, len(graphs), f"{name}: graph_ids")
    label = _Labels(name, None if graph_ids is None else ids)
    xs, eis, attrs, n_nodes, n_edges = [], [], [], [], []
    has_attr = graphs[0].get("edge_attr") is not None if isinstance(graphs[0], Data) else False
    for i, g in enumerate(graphs):
        if not isinstance(g, Data) or isinstance(g, Batch):
            _refuse_item(g, label(i))
        x, ei, attr = g.get("x"), g.get("edge_index"), g.get("edge_attr")
        if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
            _refuse_x(x, label(i))
        if not isinstance(ei, Tensor) or ei.dim() != 2 or ei.size(0) != 2 or ei.is_floating_point() \
                or ei.dtype == torch.bool or ei.is_complex():
            _refuse_edge_index(ei, label(i))
        n, e = x.size(0), ei.size(1)
        num = g.get("num_nodes")
        if num is not None and num != n:
            raise ValueError(f"{label(i)}: num_nodes is {num} but x has {n} rows")
        if (attr is not None) != has_attr:
            raise ValueError(f"{label(i)}: {'has an' if attr is not None else 'has no'} edge_attr but graph 0 "
                             f"{'has none' if attr is not None else 'has one'}; either every graph or no graph "
                             f"must have edge_attr")
        if attr is not None:
            if not isinstance(attr, Tensor) or attr.dim() not in (1, 2) or attr.size(0) != e:
                _refuse_edge_attr(attr, e, label(i))
            attrs.append(attr)
        gt = g.get("edge_gt")
        if gt is not None and (not isinstance(gt, Tensor) or gt.numel() != e):
            got = gt.numel() if isinstance(gt, Tensor) else type(gt).__name__
            raise ValueError(f"{label(i)}: edge_gt must have one entry per edge ({e}), got {got}")
        if needs_y:
            y = g.get("y")
            if not isinstance(y, Tensor) or y.numel() != 1:
                got = "none" if y is None else (f"{y.numel()} values" if isinstance(y, Tensor) else type(y).__name__)
                raise ValueError(f"{label(i)}: needs one graph label y, got {got}")
        xs.append(x)
        eis.append(ei)
        n_nodes.append(n)
        n_edges.append(e)
    x = _cat(xs, 0, "x", "node feature width (x.size(1))", label)
    edge_index = _cat(eis, 1, "edge_index", "", label)
    edge_attr = _cat([a.view(-1, 1) if a.dim() == 1 else a for a in attrs], 0, "edge_attr",
                     "edge_attr width", label) if attrs else None
    _check_values(label, x, n_nodes, edge_index, n_edges, edge_attr)
    check_features(x, edge_attr, name, node_dim, edge_dim, needs_edge_attr, dtype, owner)
    return StackedGraphs(graphs, x, edge_index, edge_attr, n_nodes, n_edges, ids)


def _refuse_item(g: Any, where: str) -> None:
    if isinstance(g, Batch):
        raise TypeError(f"{where}: is a Batch of {g.num_graphs} graphs, expected one graph; "
                        f"pass batch.to_data_list()")
    raise TypeError(f"{where}: expected a torch_geometric Data, got {type(g).__name__}")


def _refuse_x(x: Any, where: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{where}: has no node features x (expected a float tensor [N, F])")
    if x.dim() != 2:
        raise ValueError(f"{where}: x must be 2-D [N, F], got shape {tuple(x.shape)}"
                         + ("; use x.view(-1, 1) for one feature" if x.dim() == 1 else ""))
    raise TypeError(f"{where}: x must be floating point, got {x.dtype}; cast with x.float()")


def _refuse_edge_index(ei: Any, where: str) -> None:
    if not isinstance(ei, Tensor):
        raise ValueError(f"{where}: has no edge_index (expected an int64 tensor [2, E]; "
                         f"torch.empty(2, 0, dtype=torch.long) for a graph without edges)")
    if ei.dim() != 2 or ei.size(0) != 2:
        raise ValueError(f"{where}: edge_index must have shape [2, E], got {tuple(ei.shape)}")
    raise TypeError(f"{where}: edge_index must be an integer tensor (int64), got {ei.dtype}")


def _refuse_edge_attr(attr: Any, num_edges: int, where: str) -> None:
    if not isinstance(attr, Tensor) or attr.dim() not in (1, 2):
        shape = tuple(attr.shape) if isinstance(attr, Tensor) else type(attr).__name__
        raise ValueError(f"{where}: edge_attr must be a tensor [E] or [E, D_e], got {shape}")
    raise ValueError(f"{where}: edge_attr has {attr.size(0)} rows but the graph has {num_edges} edges "
                     f"(edge_index.size(1)); expected one row per edge")


def _cat(tensors: List[Tensor], dim: int, key: str, width: str, label) -> Tensor:
    """``torch.cat``; when it fails, the first graph whose ``key`` differs from graph 0's in device or
    width is named."""
    try:
        return torch.cat(tensors, dim)
    except RuntimeError:
        first = tensors[0]
        for i, t in enumerate(tensors):
            if t.device != first.device:
                raise ValueError(f"{label(i)}: {key} is on {t.device}, graph 0's on {first.device}; "
                                 f"put every graph on one device") from None
            if t.shape[1:] != first.shape[1:]:
                raise ValueError(f"{label(i)}: {key} has shape {tuple(t.shape)}, graph 0's "
                                 f"{tuple(first.shape)}; every graph needs the same {width}") from None
        raise


def _check_values(label, x: Tensor, n_nodes: List[int], edge_index: Tensor, n_edges: List[int],
                  edge_attr: Optional[Tensor]) -> None:
    """Finite ``x`` / ``edge_attr`` and graph-local ``edge_index`` ids in ``[0, N_g)``, all graphs at once."""
    bad = _first_bad_row(x)
    if bad is not None:
        g, node = _locate(bad, n_nodes)
        raise ValueError(f"{label(g)}: x has NaN or inf at node {node}; expected finite node features")
    if edge_index.numel():
        n_of_edge = torch.repeat_interleave(torch.tensor(n_nodes, device=edge_index.device),
                                            torch.tensor(n_edges, device=edge_index.device))
        wrong = (edge_index.min(0).values < 0) | (edge_index.max(0).values >= n_of_edge)
        if bool(wrong.any()):
            g, e = _locate(int(wrong.nonzero()[0]), n_edges)
            pair = tuple(int(v) for v in edge_index[:, int(wrong.nonzero()[0])])
            raise ValueError(f"{label(g)}: edge_index[:, {e}] = {pair} is out of range for {n_nodes[g]} nodes; "
                             f"expected node ids in [0, {n_nodes[g]})")
    if edge_attr is not None:
        bad = _first_bad_row(edge_attr)
        if bad is not None:
            g, e = _locate(bad, n_edges)
            raise ValueError(f"{label(g)}: edge_attr has NaN or inf at edge {e}; expected finite edge features")


def check_batch(x: Any, edge_index: Any, batch: Any = None, edge_attr: Any = None, *, name: str,
                node_dim: Optional[int] = None, edge_dim: Optional[int] = None,
                needs_edge_attr: Optional[bool] = None, dtype: Optional[torch.dtype] = None,
                owner: str = "the explainer's") -> None:
    """A PyG mini-batch as tensors: floating ``x [N, F]``, integer ``edge_index [2, E]`` with both ends
    of every edge in one graph, ``batch [N]`` sorted (default: one graph), ``edge_attr`` ``[E]`` or
    ``[E, D_e]``; finite values and widths as :func:`check_graphs`. Messages name graph ``b`` of the batch."""
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"{name}: x must be a tensor [N, F], got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: x must be floating point, got {x.dtype}; cast with x.float()")
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"{name}: edge_index must be a tensor [2, E], got "
                         f"{tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index).__name__}")
    if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise TypeError(f"{name}: edge_index must be an integer tensor (int64), got {edge_index.dtype}")
    n = x.size(0)
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=x.device)
    if not isinstance(batch, Tensor) or batch.dim() != 1 or batch.numel() != n:
        raise ValueError(f"{name}: batch must be a tensor [N] with one graph index per node ({n})")
    if batch.is_floating_point() or batch.dtype == torch.bool:
        raise TypeError(f"{name}: batch must be an integer tensor, got {batch.dtype}")
    if n and (int(batch.min()) < 0 or bool((batch[1:] < batch[:-1]).any())):
        raise ValueError(f"{name}: batch must be non-negative and sorted (nodes grouped by graph)")
    label = _Labels(f"{name}: graph", None)
    if edge_index.numel():
        if int(edge_index.min()) < 0 or int(edge_index.max()) >= n:
            e = int(((edge_index < 0) | (edge_index >= n)).any(0).nonzero()[0])
            raise ValueError(f"{name}: edge_index[:, {e}] = {tuple(edge_index[:, e].tolist())} is out of range "
                             f"for {n} nodes; expected node ids in [0, {n})")
        src, dst = batch[edge_index[0]], batch[edge_index[1]]
        if bool((src != dst).any()):
            e = int((src != dst).nonzero()[0])
            raise ValueError(f"{name}: edge_index[:, {e}] joins graph {int(src[e])} and graph {int(dst[e])}; "
                             f"an edge must stay inside its graph")
    if edge_attr is not None:
        if not isinstance(edge_attr, Tensor) or edge_attr.dim() not in (1, 2):
            raise ValueError(f"{name}: edge_attr must be a tensor [E] or [E, D_e]")
        if edge_attr.size(0) != edge_index.size(1):
            raise ValueError(f"{name}: edge_attr has {edge_attr.size(0)} rows but there are "
                             f"{edge_index.size(1)} edges (edge_index.size(1)); expected one row per edge")
    bad = _first_bad_row(x)
    if bad is not None:
        raise ValueError(f"{label(int(batch[bad]))}: x has NaN or inf at node {bad} of the batch; "
                         f"expected finite node features")
    if edge_attr is not None:
        bad = _first_bad_row(edge_attr)
        if bad is not None:
            raise ValueError(f"{label(int(batch[edge_index[0, bad]]))}: edge_attr has NaN or inf at edge {bad} "
                             f"of the batch; expected finite edge features")
    check_features(x, None if edge_attr is None else edge_attr.view(edge_attr.size(0), -1), name, node_dim,
                   edge_dim, needs_edge_attr, dtype, owner)


# -- importances -------------------------------------------------------------------------------------

def check_ptr(ptr: Any, total: int, name: str = "ptr") -> Tensor:
    """CSR offsets ``[B + 1]``: a 1-D integer tensor from 0 to ``total``, never decreasing."""
    if not isinstance(ptr, Tensor) or ptr.dim() != 1 or ptr.numel() < 1:
        raise ValueError(f"{name} must be a 1-D tensor [B + 1] of offsets, got "
                         f"{tuple(ptr.shape) if isinstance(ptr, Tensor) else type(ptr).__name__}")
    if ptr.is_floating_point() or ptr.is_complex() or ptr.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (int64), got {ptr.dtype}")
    if int(ptr[0]) != 0 or int(ptr[-1]) != total:
        raise ValueError(f"{name} must run from 0 to the number of values ({total}), got {int(ptr[0])} .. "
                         f"{int(ptr[-1])}")
    if bool((ptr.diff() < 0).any()):
        g = int((ptr.diff() < 0).nonzero()[0])
        raise ValueError(f"{name} must not decrease: {name}[{g + 1}] = {int(ptr[g + 1])} < {name}[{g}] = {int(ptr[g])}")
    return ptr


def check_importances(flat: Tensor, edge_ptr: Tensor, name: str = "importances") -> Tensor:
    """``flat [E]`` unchanged when every value is finite; else ``ValueError`` naming the graph and edge."""
    bad = _first_bad_row(flat.reshape(-1, 1))
    if bad is not None:
        g = int(torch.searchsorted(edge_ptr, torch.tensor(bad, device=edge_ptr.device), right=True)) - 1
        raise ValueError(f"{name}: graph {g} has a NaN or inf importance (edge {bad - int(edge_ptr[g])}); "
                         f"expected finite scores")
    return flat


# -- models and files --------------------------------------------------------------------------------

def model_dims(model: torch.nn.Module) -> Dict[str, Any]:
    """``{"node_dim", "edge_dim", "dtype"}`` of the input a model expects: the widths it declares in a
    ``config`` dict (``in_channels``, ``edge_dim``, as refine_fast's target GNNs do) and the dtype of its
    floating parameters; None for what it does not declare."""
    config = getattr(model, "config", None)
    config = config if isinstance(config, dict) else {}
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    return {"node_dim": config.get("in_channels"), "edge_dim": config.get("edge_dim"), "dtype": dtype}


def model_checks(model: torch.nn.Module) -> Dict[str, Any]:
    """Keyword arguments of :func:`check_graphs` / :func:`check_batch` for graphs fed to ``model``."""
    return dict(model_dims(model), owner="the model's")


def check_model_dims(model: torch.nn.Module, name: str, node_dim: Optional[int] = None,
                     edge_dim: Optional[int] = None) -> None:
    """The feature widths the model declares (:func:`model_dims`) against ``node_dim`` / ``edge_dim``
    (e.g. an explainer's; ``edge_dim=0`` ignores edge features): a model trained for another dataset
    is refused here instead of failing inside a matrix product."""
    dims = model_dims(model)
    if node_dim is not None and dims["node_dim"] is not None and dims["node_dim"] != node_dim:
        raise ValueError(f"{name}: the model takes {dims['node_dim']} node features (in_channels) but "
                         f"node_dim is {node_dim}; is the model trained for another dataset?")
    if edge_dim and dims["edge_dim"] is not None and dims["edge_dim"] != edge_dim:
        raise ValueError(f"{name}: the model takes {dims['edge_dim']} edge features (edge_dim) but "
                         f"edge_dim is {edge_dim}; is the model trained for another dataset?")
