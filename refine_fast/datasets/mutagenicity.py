"""Mutagenicity (TU format) read offline through PyG's ``TUDataset``, with per-edge ground truth."""
from __future__ import annotations

import os.path as osp
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.datasets import TUDataset
from torch_geometric.io import fs, read_tu_data

from ..fileio import atomic_path
from .cache import default_cache_dir, source_key

__all__ = ["Mutagenicity", "find_tu_raw_dir", "check_tu_files", "read_int_lines"]

NAME = "Mutagenicity"
REQUIRED = ("A", "graph_indicator", "graph_labels", "node_labels", "edge_labels")
GROUND_TRUTH = f"{NAME}_edge_gt.txt"
SPLIT_FRACTIONS = (0.8, 0.1)  # train, val; the rest is test


def find_tu_raw_dir(root: Union[str, Path], name: str = NAME) -> Path:
    """The folder holding ``<name>_A.txt`` etc.: ``root``, ``root/raw`` or ``root/<name>/raw``."""
    root = Path(root)
    candidates = [root, root / "raw", root / name / "raw"]
    for folder in candidates:
        if all((folder / f"{name}_{part}.txt").is_file() for part in REQUIRED):
            return folder
    files = ", ".join(f"{name}_{part}.txt" for part in REQUIRED)
    raise FileNotFoundError(
        f"{name}: the TU raw files ({files}) were not found in any of "
        f"{[str(c) for c in candidates]}")


def read_int_lines(path: Path, columns: int, name: str) -> np.ndarray:
    """The integers of a TU text file, ``columns`` comma-separated per line: int64 ``[L, columns]``.
    A line that is not ``columns`` integers raises ``ValueError`` naming the file and the line."""
    values = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about an empty file: reported below
            values = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError:
        pass
    if values is not None and values.size and values.shape[1] == columns:
        return values
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.strip().split(",")
            if line.strip() and (len(parts) != columns or not all(p.strip().lstrip("-").isdigit() for p in parts)):
                raise ValueError(f"{name}: {path.name} line {number}: expected {columns} comma-separated "
                                 f"integer{'s' if columns > 1 else ''}, got {line.strip()[:80]!r}")
    if values is not None and values.size == 0:
        raise ValueError(f"{name}: {path.name} is empty")
    raise ValueError(f"{name}: {path.name}: expected {columns} comma-separated integers per line")


def _expect_lines(path: Path, found: int, expected: int, what: str, name: str) -> None:
    if found != expected:
        raise ValueError(f"{name}: {path.name} has {found} lines, expected {expected} ({what})")


def check_tu_files(folder: Path, name: str) -> np.ndarray:
    """Check the TU raw files of ``name`` in ``folder`` against each other before PyG reads them:
    one node label per node, one graph label per graph, one edge label per edge, node ids in range and
    both ends of an edge in one graph. Returns ``<name>_A.txt`` (1-based node ids ``[M, 2]``). Errors
    name the file, the line and what was expected."""
    path = {part: folder / f"{name}_{part}.txt" for part in REQUIRED}
    graph = read_int_lines(path["graph_indicator"], 1, name).reshape(-1)
    bad = np.flatnonzero((graph < 1) | (np.diff(graph, prepend=1) < 0))
    if bad.size:
        raise ValueError(f"{name}: {path['graph_indicator'].name} line {bad[0] + 1}: graph id {graph[bad[0]]} is "
                         f"below 1 or below the previous line's (nodes must be listed graph by graph)")
    num_nodes, num_graphs = len(graph), int(graph.max())
    _expect_lines(path["node_labels"], len(read_int_lines(path["node_labels"], 1, name)), num_nodes,
                  f"one per node of {path['graph_indicator'].name}", name)
    _expect_lines(path["graph_labels"], len(read_int_lines(path["graph_labels"], 1, name)), num_graphs,
                  f"one per graph of {path['graph_indicator'].name}, whose largest graph id is {num_graphs}", name)
    edges = read_int_lines(path["A"], 2, name)
    bad = np.flatnonzero(((edges < 1) | (edges > num_nodes)).any(1))
    if bad.size:
        raise ValueError(f"{name}: {path['A'].name} line {bad[0] + 1}: node ids {edges[bad[0]].tolist()} outside "
                         f"1..{num_nodes} (the nodes of {path['graph_indicator'].name})")
    bad = np.flatnonzero(graph[edges[:, 0] - 1] != graph[edges[:, 1] - 1])
    if bad.size:
        raise ValueError(f"{name}: {path['A'].name} line {bad[0] + 1}: edge {edges[bad[0]].tolist()} joins graphs "
                         f"{graph[edges[bad[0]] - 1].tolist()}")
    _expect_lines(path["edge_labels"], len(read_int_lines(path["edge_labels"], 1, name)), len(edges),
                  f"one per edge of {path['A'].name}", name)
    return edges


class Mutagenicity(TUDataset):
    """4,337 molecules: ``x [N, 14]`` one-hot atoms, ``edge_attr [E, 3]`` one-hot bonds (both
    directions), ``y`` (0 = mutagen), and ``edge_gt`` bool ``[E]`` (bonds of NO2 / NH2 groups) when
    ``Mutagenicity_edge_gt.txt`` is present. Reads the raw files from ``root`` (see
    :func:`find_tu_raw_dir`), checks them (:func:`check_tu_files`), never downloads, and writes processed
    files to ``cache_dir/Mutagenicity/<key>``, ``key`` from the raw files' contents.
    ``split_idx`` is a seeded 80 / 10 / 10 split."""

    def __init__(self, root: Union[str, Path], cache_dir: Union[str, Path, None] = None, seed: int = 0,
                 transform: Optional[Callable] = None, force_reload: bool = False):
        self._raw = find_tu_raw_dir(root)
        self._key = source_key(self._sources())
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        super().__init__(str(cache), NAME, transform, force_reload=force_reload)
        self.split_idx = self._split(seed)

    @property
    def raw_dir(self) -> str:
        return str(self._raw)

    @property
    def processed_dir(self) -> str:
        """``<cache_dir>/Mutagenicity/<key>/processed``, ``key`` from the raw files' contents."""
        return osp.join(self.root, NAME, self._key, "processed")

    def _sources(self) -> List[Path]:
        gt = self._raw / GROUND_TRUTH
        return [self._raw / f"{NAME}_{part}.txt" for part in REQUIRED] + ([gt] if gt.is_file() else [])

    def download(self) -> None:
        raise FileNotFoundError(f"{NAME}: raw files missing in {self._raw} (no download)")

    def process(self) -> None:
        raw = check_tu_files(self._raw, NAME)
        data, slices, sizes = read_tu_data(self.raw_dir, NAME)
        gt_file = Path(self.raw_dir) / GROUND_TRUTH
        if gt_file.is_file():
            data.edge_gt = self._edge_gt(raw, gt_file, data.edge_index, slices)
            slices["edge_gt"] = slices["edge_index"]
        with atomic_path(self.processed_paths[0]) as tmp:  # a killed run leaves no half-written cache
            fs.torch_save((data.to_dict(), slices, sizes, data.__class__), str(tmp))

    def _edge_gt(self, raw: np.ndarray, gt_file: Path, edge_index: Tensor, slices: Dict[str, Tensor]) -> Tensor:
        """Maps the per-line ground truth onto the coalesced edges (global node ids) of ``read_tu_data``;
        ``raw`` is ``Mutagenicity_A.txt`` (1-based node ids ``[M, 2]``)."""
        raw = raw - 1
        gt = read_int_lines(gt_file, 1, NAME).reshape(-1)
        _expect_lines(gt_file, len(gt), len(raw), f"one per edge of {NAME}_A.txt", NAME)
        batch = np.repeat(np.arange(len(slices["x"]) - 1), np.diff(slices["x"].numpy()))
        num_nodes = len(batch)
        raw_key = raw[:, 0] * num_nodes + raw[:, 1]
        order = np.argsort(raw_key, kind="stable")
        # local -> global ids of the coalesced edges
        edge_graph = np.repeat(np.arange(len(slices["edge_index"]) - 1), np.diff(slices["edge_index"].numpy()))
        offset = slices["x"].numpy()[edge_graph]
        key = (edge_index[0].numpy() + offset) * num_nodes + edge_index[1].numpy() + offset
        pos = np.searchsorted(raw_key[order], key)
        return torch.from_numpy(gt[order][pos] > 0)

    def _split(self, seed: int) -> Dict[str, Tensor]:
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        n_train = int(round(SPLIT_FRACTIONS[0] * len(self)))
        n_val = int(round(SPLIT_FRACTIONS[1] * len(self)))
        return {"train": perm[:n_train], "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}

    def __repr__(self) -> str:
        return f"Mutagenicity({len(self)})"
