"""Mutagenicity (TU format) read offline through PyG's ``TUDataset``, with per-edge ground truth."""
from __future__ import annotations

import os.path as osp
from pathlib import Path
from typing import Callable, Dict, Optional, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.datasets import TUDataset
from torch_geometric.io import fs, read_tu_data

from .cache import default_cache_dir

__all__ = ["Mutagenicity", "find_tu_raw_dir"]

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


class Mutagenicity(TUDataset):
    """4,337 molecules: ``x [N, 14]`` one-hot atoms, ``edge_attr [E, 3]`` one-hot bonds (both
    directions), ``y`` (0 = mutagen), and ``edge_gt`` bool ``[E]`` (bonds of NO2 / NH2 groups) when
    ``Mutagenicity_edge_gt.txt`` is present. Reads the raw files from ``root`` (see
    :func:`find_tu_raw_dir`), never downloads, and writes processed files to ``cache_dir``.
    ``split_idx`` is a seeded 80 / 10 / 10 split."""

    def __init__(self, root: Union[str, Path], cache_dir: Union[str, Path, None] = None, seed: int = 0,
                 transform: Optional[Callable] = None, force_reload: bool = False):
        self._raw = find_tu_raw_dir(root)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        super().__init__(str(cache), NAME, transform, force_reload=force_reload)
        self.split_idx = self._split(seed)

    @property
    def raw_dir(self) -> str:
        return str(self._raw)

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, NAME, "processed")

    def download(self) -> None:
        raise FileNotFoundError(f"{NAME}: raw files missing in {self._raw} (no download)")

    def process(self) -> None:
        data, slices, sizes = read_tu_data(self.raw_dir, NAME)
        gt_file = Path(self.raw_dir) / GROUND_TRUTH
        if gt_file.is_file():
            data.edge_gt = self._edge_gt(gt_file, data.edge_index, slices)
            slices["edge_gt"] = slices["edge_index"]
        fs.torch_save((data.to_dict(), slices, sizes, data.__class__), self.processed_paths[0])

    def _edge_gt(self, gt_file: Path, edge_index: Tensor, slices: Dict[str, Tensor]) -> Tensor:
        """Maps the per-line ground truth onto the coalesced edges (global node ids) of ``read_tu_data``."""
        raw = np.loadtxt(Path(self.raw_dir) / f"{NAME}_A.txt", delimiter=",", dtype=np.int64) - 1
        gt = np.loadtxt(gt_file, dtype=np.int64).reshape(-1)
        if len(gt) != len(raw):
            raise ValueError(f"{NAME}: {gt_file.name} has {len(gt)} lines, expected {len(raw)}")
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
