"""MNIST superpixel graphs (~75 SLIC segments per digit) built from real MNIST images, cached once."""
from __future__ import annotations

import gzip
import os.path as osp
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset
from tqdm.auto import tqdm

from ..fileio import atomic_path, atomic_save
from .cache import default_cache_dir, source_key

__all__ = ["MNISTSuperpixels75", "superpixel_graph", "read_mnist_images"]

IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"
EXTRA = "mnist_5k.csv.gz"
SPLIT_SIZES = (6000, 1000, 1000)  # train / val / test, as the paper


def _read_idx(path: Path, magic: int, shape: Tuple[int, ...]) -> np.ndarray:
    """The uint8 items of a gzipped idx file (``[n, *shape]``); its header is checked against its size."""
    try:
        with gzip.open(path) as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"MNISTSuperpixels75: {path.name} is not a readable gzip file: {error}") from None
    header = 4 * (2 + len(shape))
    fields = np.frombuffer(raw[:header], dtype=">u4").tolist() if len(raw) >= header else []
    expected = [magic, fields[1] if len(fields) > 1 else 0, *shape]
    if fields != expected or len(raw) != header + expected[1] * int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"MNISTSuperpixels75: {path.name}: expected an idx file (magic {magic}) of items of shape "
                         f"{list(shape)}, got header {fields} and {len(raw) - min(header, len(raw))} bytes of items")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(-1, *shape)


def read_mnist_images(root: Union[str, Path]) -> Tuple[np.ndarray, np.ndarray]:
    """The 10,000 idx test digits followed by the 5,000 csv digits: uint8 ``[15000, 28, 28]``, labels."""
    root = Path(root)
    missing = [name for name in (IMAGES, LABELS, EXTRA) if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"MNISTSuperpixels75: missing {missing} in {root}")
    images = _read_idx(root / IMAGES, 2051, (28, 28))
    labels = _read_idx(root / LABELS, 2049, ()).astype(np.int64)
    if len(labels) != len(images):
        raise ValueError(f"MNISTSuperpixels75: {LABELS} holds {len(labels)} labels, {IMAGES} {len(images)} images")
    try:
        extra = np.loadtxt(root / EXTRA, delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as error:  # numpy names the row and column
        raise ValueError(f"MNISTSuperpixels75: {EXTRA}: {error}") from None
    if extra.shape[1] != 785:
        raise ValueError(f"MNISTSuperpixels75: {EXTRA}: expected 785 values per line (784 pixels, a label), "
                         f"got {extra.shape[1]}")
    bad = np.flatnonzero(((extra[:, :784] < 0) | (extra[:, :784] > 255)).any(1) | (extra[:, 784] < 0)
                         | (extra[:, 784] > 9))
    if bad.size:
        raise ValueError(f"MNISTSuperpixels75: {EXTRA} line {bad[0] + 1}: expected 784 pixels in 0..255 and a "
                         f"label in 0..9")
    images = np.concatenate([images, extra[:, :784].astype(np.uint8).reshape(-1, 28, 28)])
    labels = np.concatenate([labels, extra[:, 784]])
    return images, labels


def superpixel_graph(image: np.ndarray, n_segments: int = 75, compactness: float = 0.25) -> Data:
    """SLIC superpixels of one ``[28, 28]`` uint8 image as a graph.

    ``x [N, 3]`` = (mean intensity in [0, 1], centroid column / 28, centroid row / 28);
    ``edge_index [2, E]`` joins 4-adjacent segments, both directions; ``edge_attr [E, 2]`` the relative
    centroid position ``(pos_j - pos_i) / (2·max|pos_j - pos_i|) + 0.5`` (in [0, 1]);
    ``edge_gt [E]`` = both ends have intensity > 0.
    """
    from skimage.segmentation import slic

    img = image.astype(np.float64) / 255.0
    seg = slic(img, n_segments=n_segments, compactness=compactness, channel_axis=None, start_label=0)
    _, seg = np.unique(seg, return_inverse=True)
    seg = seg.reshape(img.shape)
    n = int(seg.max()) + 1
    count = np.bincount(seg.ravel(), minlength=n)
    rows, cols = np.indices(img.shape)
    intensity = np.bincount(seg.ravel(), img.ravel(), n) / count
    pos = np.stack([np.bincount(seg.ravel(), cols.ravel(), n), np.bincount(seg.ravel(), rows.ravel(), n)],
                   axis=1) / count[:, None] / img.shape[0]
    a = np.concatenate([seg[:, :-1].ravel(), seg[:-1, :].ravel()])
    b = np.concatenate([seg[:, 1:].ravel(), seg[1:, :].ravel()])
    key = np.unique(np.minimum(a, b)[a != b] * n + np.maximum(a, b)[a != b])
    lo, hi = key // n, key % n
    edge_index = np.stack([np.concatenate([lo, hi]), np.concatenate([hi, lo])])
    rel = pos[edge_index[1]] - pos[edge_index[0]]
    rel = rel / (2 * max(np.abs(rel).max(), 1e-12)) + 0.5
    lit = intensity > 0
    return Data(x=torch.from_numpy(np.concatenate([intensity[:, None], pos], 1)).float(),
                edge_index=torch.from_numpy(edge_index).long(),
                edge_attr=torch.from_numpy(rel).float(),
                edge_gt=torch.from_numpy(lit[edge_index[0]] & lit[edge_index[1]]),
                num_nodes=n)


class MNISTSuperpixels75(InMemoryDataset):
    """8,000 superpixel graphs of real MNIST digits: a seeded draw of ``split_sizes`` = 6,000 / 1,000 /
    1,000 (train / val / test, ``split_idx``) from the 10,000 idx test images and the 5,000 csv digits in
    ``root``. Built once (a few seconds per thousand graphs) and cached under
    ``cache_dir/MNISTSuperpixels75/<key>``, ``key`` from the source files' contents."""

    def __init__(self, root: Union[str, Path], cache_dir: Union[str, Path, None] = None, seed: int = 0,
                 split_sizes: Tuple[int, int, int] = SPLIT_SIZES, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None, force_reload: bool = False, progress: bool = True):
        self.seed = int(seed)
        self.split_sizes = tuple(int(n) for n in split_sizes)
        if len(self.split_sizes) != 3 or sum(self.split_sizes) > 15000 or min(self.split_sizes) < 0:
            raise ValueError(f"MNISTSuperpixels75: split_sizes must be 3 counts summing to <= 15000, "
                             f"got {split_sizes}")
        self.progress = progress
        self.source = Path(root)
        missing = [name for name in (IMAGES, LABELS, EXTRA) if not (self.source / name).is_file()]
        if missing:
            raise FileNotFoundError(f"MNISTSuperpixels75: missing {missing} in {self.source}")
        self._key = source_key(self.source / name for name in (IMAGES, LABELS, EXTRA))
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        super().__init__(str(cache), transform, pre_transform, force_reload=force_reload)
        self.load(self.processed_paths[0])
        self.split_idx: Dict[str, Tensor] = torch.load(self.processed_paths[1], weights_only=True)

    @property
    def raw_file_names(self) -> List[str]:
        return []

    @property
    def processed_dir(self) -> str:
        """``<cache_dir>/MNISTSuperpixels75/<key>/processed``, ``key`` from the source files' contents."""
        return osp.join(self.root, "MNISTSuperpixels75", self._key, "processed")

    @property
    def processed_file_names(self) -> List[str]:
        tag = f"seed{self.seed}" + ("" if self.split_sizes == SPLIT_SIZES else
                                    "_" + "-".join(map(str, self.split_sizes)))
        return [f"mnist75_{tag}.pt", f"split_{tag}.pt"]

    def process(self) -> None:
        images, labels = read_mnist_images(self.source)
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        chosen = perm[:sum(self.split_sizes)].numpy()
        data_list = []
        for i in tqdm(chosen, desc="SLIC superpixels", disable=not self.progress):
            data = superpixel_graph(images[i])
            data.y = torch.tensor([int(labels[i])])
            data.image_index = int(i)
            if self.pre_transform is not None:
                data = self.pre_transform(data)
            data_list.append(data)
        with atomic_path(self.processed_paths[0]) as tmp:  # a killed run leaves no half-written cache
            self.save(data_list, str(tmp))
        n_train, n_val, _ = self.split_sizes
        index = torch.arange(len(data_list))
        atomic_save({"train": index[:n_train], "val": index[n_train:n_train + n_val],
                     "test": index[n_train + n_val:]}, self.processed_paths[1])

    def __repr__(self) -> str:
        return f"MNISTSuperpixels75({len(self)}, seed={self.seed})"
