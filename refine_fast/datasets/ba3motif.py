"""BA-3motif: a seeded generator of ReFine's synthetic benchmark, and a reader of the official graphs.

Construction (facts read from the official graphs, see ``../shared/data/README.md``): a 6-node
Barabási–Albert base (ids 0–5, role 0), then ``k`` copies of the class motif with consecutive ids,
each joined to a distinct base node by one edge from its first node, then a few random extra edges
with one end in the base. Class 0 = house (5 nodes, 6 edges, 2–4 copies), 1 = 3×3 grid (9 nodes,
12 edges, 1–3 copies), 2 = 5-cycle (5 nodes, 5 edges, 2–4 copies). An edge is a ground-truth motif
edge iff both ends have role > 0.
"""
from __future__ import annotations

import os.path as osp
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset

from ..fileio import atomic_path, atomic_save

__all__ = ["BA3Motif", "load_ba3motif_official", "ba3motif_features", "MOTIFS"]

NUM_BASE = 6
NUM_ROLES = 4
SPLIT_FRACTIONS = (2200 / 3000, 400 / 3000)  # train, val (2,200 / 400 / 400 of 3,000); the rest is test
OFFICIAL_KEYS = ("y", "node_ptr", "edge_ptr", "edge_index", "role_id", "ground_truth", "graph_index")


def _house() -> Tuple[List[Tuple[int, int]], List[int]]:
    # a square 0-1-2-3 and a roof node 4 joined to nodes 0 and 1 (as in the official graphs).
    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (1, 4)]
    return edges, [1, 1, 2, 2, 3]


def _grid() -> Tuple[List[Tuple[int, int]], List[int]]:
    edges = []
    for r in range(3):
        for c in range(3):
            v = 3 * r + c
            if c < 2:
                edges.append((v, v + 1))
            if r < 2:
                edges.append((v, v + 3))
    return edges, [1] * 9


def _cycle() -> Tuple[List[Tuple[int, int]], List[int]]:
    return [(i, (i + 1) % 5) for i in range(5)], [1] * 5


# class -> (motif builder, copies range inclusive, BA attachment m of the base, mean extra edges)
MOTIFS: Dict[int, Tuple[Callable, Tuple[int, int], int, float]] = {
    0: (_house, (2, 4), 5, 1.0),
    1: (_grid, (1, 3), 3, 1.55),
    2: (_cycle, (2, 4), 5, 2.5),
}


def _ba_base(rng: np.random.Generator, m: int) -> List[Tuple[int, int]]:
    """Barabási–Albert graph on ``NUM_BASE`` nodes: node ``m`` links to nodes ``0..m-1``, every later
    node to ``m`` distinct nodes drawn proportionally to degree (m = 5 gives a star centred at 5)."""
    edges = [(i, m) for i in range(m)]
    repeated = list(range(m)) + [m] * m
    for v in range(m + 1, NUM_BASE):
        targets: set = set()
        while len(targets) < m:
            targets.add(int(repeated[rng.integers(len(repeated))]))
        edges += [(t, v) for t in sorted(targets)]
        repeated += sorted(targets) + [v] * m
    return edges


def _generate_graph(rng: np.random.Generator, label: int) -> Tuple[np.ndarray, np.ndarray]:
    """One graph: undirected edges ``[E, 2]`` (low id first, sorted) and node roles ``[N]``."""
    motif, (lo, hi), m, mean_extra = MOTIFS[label]
    motif_edges, motif_roles = motif()
    size = len(motif_roles)
    copies = int(rng.integers(lo, hi + 1))
    edges = set(_ba_base(rng, m))
    roles = [0] * NUM_BASE
    anchors = rng.choice(NUM_BASE, size=copies, replace=False)
    for c in range(copies):
        start = NUM_BASE + c * size
        edges.update((start + u, start + v) if u < v else (start + v, start + u) for u, v in motif_edges)
        edges.add((int(anchors[c]), start))
        roles += motif_roles
    num_nodes = len(roles)
    num_extra = int(rng.poisson(mean_extra))
    for _ in range(num_extra):
        for _attempt in range(20):
            u = int(rng.integers(NUM_BASE))
            v = int(rng.integers(num_nodes))
            e = (min(u, v), max(u, v))
            if u != v and e not in edges:
                edges.add(e)
                break
    edge_array = np.array(sorted(edges), dtype=np.int64)
    return edge_array, np.array(roles, dtype=np.int64)


def ba3motif_features(role: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """ReFine's node features ``0.25·onehot(role, 4) + 0.75·U(0, 1)``: ``[N] -> [N, 4]``."""
    onehot = torch.nn.functional.one_hot(role.clamp(max=NUM_ROLES - 1), NUM_ROLES).float()
    return 0.25 * onehot + 0.75 * torch.rand(role.numel(), NUM_ROLES, generator=generator)


def _to_data(edges: np.ndarray, roles: np.ndarray, label: int, generator: torch.Generator,
             both_directions: bool) -> Data:
    role = torch.from_numpy(roles)
    edge_index = torch.from_numpy(edges).t().contiguous().view(2, -1)
    if both_directions:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    edge_gt = (role[edge_index[0]] > 0) & (role[edge_index[1]] > 0)
    return Data(x=ba3motif_features(role, generator), edge_index=edge_index,
                edge_attr=torch.ones(edge_index.size(1), 1), y=torch.tensor([label]),
                edge_gt=edge_gt, role_id=role, num_nodes=role.numel())


class BA3Motif(InMemoryDataset):
    """3,000 BA-3motif graphs (``graphs_per_class`` = 1,000 per class, class = index // 1,000),
    generated once from ``seed`` and cached in ``<root>/BA3Motif/processed``.

    Each graph: ``x [N, 4]``, ``edge_index [2, E]`` (each undirected edge once, low -> high id; both
    directions when ``both_directions``), ``edge_attr`` ones ``[E, 1]``, ``y [1]``, ``edge_gt`` bool
    ``[E]`` (motif edges), ``role_id [N]``. ``split_idx`` holds the seeded 2,200 / 400 / 400 split.
    """

    def __init__(self, root: str, seed: int = 0, both_directions: bool = False,
                 graphs_per_class: int = 1000, transform: Optional[Callable] = None,
                 pre_transform: Optional[Callable] = None, force_reload: bool = False):
        self.seed = int(seed)
        self.both_directions = bool(both_directions)
        self.graphs_per_class = int(graphs_per_class)
        super().__init__(str(root), transform, pre_transform, force_reload=force_reload)
        self.load(self.processed_paths[0])
        self.split_idx: Dict[str, Tensor] = torch.load(self.processed_paths[1], weights_only=True)

    @property
    def raw_file_names(self) -> List[str]:
        return []

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, "BA3Motif", "processed")

    @property
    def processed_file_names(self) -> List[str]:
        tag = f"seed{self.seed}_{'both' if self.both_directions else 'once'}"
        if self.graphs_per_class != 1000:
            tag += f"_n{self.graphs_per_class}"
        return [f"ba3motif_{tag}.pt", f"split_{tag}.pt"]

    def process(self) -> None:
        rng = np.random.default_rng(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        data_list = []
        for label in range(3):
            for _ in range(self.graphs_per_class):
                edges, roles = _generate_graph(rng, label)
                data = _to_data(edges, roles, label, generator, self.both_directions)
                if self.pre_transform is not None:
                    data = self.pre_transform(data)
                data_list.append(data)
        with atomic_path(self.processed_paths[0]) as tmp:  # a killed run leaves no half-written cache
            self.save(data_list, str(tmp))
        perm = torch.randperm(len(data_list), generator=generator)
        n_train, n_val = (round(f * len(data_list)) for f in SPLIT_FRACTIONS)
        split = {"train": perm[:n_train], "val": perm[n_train:n_train + n_val],
                 "test": perm[n_train + n_val:]}
        atomic_save(split, self.processed_paths[1])

    def splits(self) -> Tuple["BA3Motif", "BA3Motif", "BA3Motif"]:
        """The (train, val, test) subsets."""
        return tuple(self[self.split_idx[k]] for k in ("train", "val", "test"))

    def __repr__(self) -> str:
        return f"BA3Motif({len(self)}, seed={self.seed}, both_directions={self.both_directions})"


def load_ba3motif_official(path: str, seed: int = 0, both_directions: bool = False) -> List[Data]:
    """The official BA-3motif graphs stored in ``path`` (npz with ``y``, ``node_ptr``, ``edge_ptr``,
    ``edge_index``, ``role_id``, ``ground_truth``, ``graph_index``) as ``Data`` objects, with ReFine's
    node features drawn from ``seed`` (the official features are not part of the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"load_ba3motif_official: {path} not found (expected an npz such as "
            "ba3motif_official_subset800.npz, see ../shared/data/README.md)")
    try:
        arrays = dict(np.load(path, allow_pickle=False))
    except (OSError, ValueError, zipfile.BadZipFile) as error:  # not an npz (truncated, or holding pickled objects)
        raise ValueError(f"load_ba3motif_official: {path} is not a readable npz file: {error}") from None
    missing = [k for k in OFFICIAL_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"load_ba3motif_official: {path} lacks the arrays {missing} (expected {list(OFFICIAL_KEYS)})")
    node_ptr, edge_ptr = arrays["node_ptr"], arrays["edge_ptr"]
    if len(node_ptr) != len(arrays["y"]) + 1 or len(edge_ptr) != len(arrays["y"]) + 1 \
            or node_ptr[-1] != len(arrays["role_id"]) or edge_ptr[-1] != arrays["edge_index"].shape[1]:
        raise ValueError(f"load_ba3motif_official: {path}: node_ptr / edge_ptr do not delimit role_id / edge_index "
                         f"for the {len(arrays['y'])} graphs of y")
    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for g in range(len(arrays["y"])):
        edges = arrays["edge_index"][:, edge_ptr[g]:edge_ptr[g + 1]].T
        roles = arrays["role_id"][node_ptr[g]:node_ptr[g + 1]]
        data = _to_data(np.ascontiguousarray(edges), roles, int(arrays["y"][g]), generator,
                        both_directions)
        gt = torch.from_numpy(arrays["ground_truth"][edge_ptr[g]:edge_ptr[g + 1]] > 0)
        data.edge_gt = torch.cat([gt, gt]) if both_directions else gt
        data.graph_index = int(arrays["graph_index"][g])
        graphs.append(data)
    return graphs
