"""PyG's contrib PGMExplainer driven one graph at a time, node p-values turned into edge importances."""
from __future__ import annotations

import warnings
from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor

from ..explain.target import model_kwargs
from .base import check_inputs, fingerprint
from .gnnexplainer import graph_model_config

__all__ = ["PGMExplainer", "has_pgmpy"]

INSTALL_HINT = "pip install pgmpy (refine_fast's `pgm` extra)"


def has_pgmpy() -> bool:
    """Whether pgmpy (the statistics PyG's PGMExplainer runs on) is importable."""
    try:
        import pgmpy  # noqa: F401
    except ImportError:
        return False
    return True


class _Bound(torch.nn.Module):
    """``model(x, edge_index)`` with the graph's ``edge_attr`` and ``batch`` bound: PyG's graph-level
    PGMExplainer passes no keyword arguments to its first round of perturbations."""

    def __init__(self, model: torch.nn.Module, kwargs: dict):
        super().__init__()
        self.model, self.kwargs = model, kwargs

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.model(x, edge_index, **self.kwargs)


class PGMExplainer:
    """PGM-Explainer (Vu & Thai, 2020) through PyG's ``contrib.explain.PGMExplainer``, per graph.

    PyG perturbs the node features ``num_samples`` times, keeps the ``max(1, ⌊candidates·N⌋)`` nodes
    (at most N − 1) whose perturbation depends most (chi-square test) on a change of the prediction,
    re-samples perturbing only those, and returns every node's p-value p ``[N]``. Edge (u, v) gets
    importance ``1 − p_u·p_v`` (the reference ReFine code ranks edges by ``−p_u·p_v``; the shift keeps it
    in [0, 1]).

    Three things of PyG's graph-level path are worked around: its first round calls the model without
    ``edge_attr`` (see :class:`_Bound`); it tests each node against column ``target`` of the samples, so
    ``target`` is set to that of the prediction change (column N); and its candidate count is fixed by
    the first graph it sees, so it is set for every graph.
    NumPy and torch are seeded from ``seed`` and the graph's tensors before each graph, so a graph's
    explanation does not depend on the other graphs of the call.
    """

    name = "PGM-Explainer"

    def __init__(self, num_samples: int = 100, candidates: float = 0.2):
        if not 0.0 < candidates <= 1.0:
            raise ValueError(f"PGMExplainer: candidates must be in (0, 1], got {candidates}")
        self.num_samples, self.candidates = int(num_samples), float(candidates)

    def explain(self, model: torch.nn.Module, graphs: Sequence, seed: int = 0) -> List[Tensor]:
        if not has_pgmpy():
            raise ImportError(f"PGM-Explainer needs pgmpy: {INSTALL_HINT}")
        graphs = check_inputs(model, graphs, seed, f"{self.name}.explain")
        with warnings.catch_warnings():  # "contrib contains experimental code"
            warnings.simplefilter("ignore", UserWarning)
            from torch_geometric.contrib.explain import PGMExplainer as PyGPGMExplainer

        model.eval()
        algo = PyGPGMExplainer(num_samples=self.num_samples)
        algo.connect(dict(explanation_type="phenomenon", node_mask_type="object"), graph_model_config())
        out: List[Tensor] = []
        for g in graphs:
            n, (row, col) = g.num_nodes, g.edge_index
            if row.numel() == 0:
                out.append(torch.zeros(0))
                continue
            graph_seed = int(fingerprint(None, [g], str(seed)), 16)
            np.random.seed(graph_seed % 2**32)
            torch.manual_seed(graph_seed)
            algo.max_subgraph_size = min(max(1, int(self.candidates * n)), n - 1)
            bound = _Bound(model, model_kwargs(model, getattr(g, "edge_attr", None),
                                               torch.zeros(n, dtype=torch.long)))
            with torch.no_grad(), warnings.catch_warnings():  # pgmpy deprecations, numpy copy= notes
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                p = algo(bound, g.x, g.edge_index, target=torch.tensor(n)).pgm_stats
            p = torch.nan_to_num(p.float(), nan=1.0)
            out.append(1.0 - p[row] * p[col])
        return out
