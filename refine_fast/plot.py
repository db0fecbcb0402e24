"""Pictures of explanations: explained graphs (ground-truth vs selected edges) and ACC@ρ curves."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Sequence

import torch
from torch import Tensor

from .metrics import topk_edge_mask

__all__ = ["plot_explained_graphs", "plot_acc_curves"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_explained_graphs(graphs: Sequence, importances: Sequence[Tensor], ratio: float, path,
                          titles: Sequence[str] | None = None, seed: int = 0) -> Path:
    """Draw each graph with its top-``ratio`` edges (by importance) in red, the others in grey, and
    its ground-truth edges (``data.edge_gt``, when present) thick. Writes a PNG to ``path``."""
    import networkx as nx

    plt = _pyplot()
    cols = min(4, max(len(graphs), 1))
    rows = max(math.ceil(len(graphs) / cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (data, imp) in enumerate(zip(graphs, importances)):
        ax = axes.flat[i]
        ei = data.edge_index.cpu()
        top = topk_edge_mask(imp.detach().cpu(), torch.tensor([0, ei.size(1)]), ratio)
        gt = getattr(data, "edge_gt", None)
        gt = gt.cpu().bool() if gt is not None else torch.zeros_like(top)
        g = nx.Graph()
        g.add_nodes_from(range(data.num_nodes))
        g.add_edges_from(ei.t().tolist())
        pos = nx.spring_layout(g, seed=seed)
        edges = [tuple(e) for e in ei.t().tolist()]
        nx.draw_networkx_nodes(g, pos, ax=ax, node_size=30, node_color="#4c72b0")
        nx.draw_networkx_edges(g, pos, ax=ax, edgelist=edges, edge_color=["#d62728" if t else "#bbbbbb" for t in top],
                               width=[3.0 if t else 1.0 for t in gt.tolist()])
        ax.set_title(titles[i] if titles else f"graph {i}", fontsize=9)
    fig.suptitle(f"red: top-{ratio:g} edges by importance; thick: ground-truth edges", fontsize=10)
    return _save(plt, fig, path)


def plot_acc_curves(curves: Dict[str, Dict[float, float]], path) -> Path:
    """ACC@ρ against ρ for each explainer name → {ρ: ACC@ρ}; writes a PNG to ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for name, acc in curves.items():
        xs = sorted(acc)
        ax.plot(xs, [acc[x] for x in xs], marker="o", label=name)
    ax.set_xlabel("ratio ρ of edges kept")
    ax.set_ylabel("ACC@ρ")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(plt, fig, path)
