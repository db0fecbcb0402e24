"""PyG's GNNExplainer driven one graph at a time through ``torch_geometric.explain.Explainer``."""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import GNNExplainer as PyGGNNExplainer

from ..explain.target import model_kwargs, unregister_masks
from .base import check_inputs

__all__ = ["GNNExplainer", "graph_model_config"]


def graph_model_config() -> dict:
    """The target models: graph-level multiclass classifiers returning raw logits."""
    return dict(mode="multiclass_classification", task_level="graph", return_type="raw")


class GNNExplainer:
    """``epochs`` Adam steps (lr ``lr``) of PyG's GNNExplainer per graph, explaining the model's
    prediction (``explanation_type='phenomenon'`` with the predicted class as target), edge masks only.
    ``torch.manual_seed(seed)`` is set once before the graphs, so a run is reproducible. Afterwards the
    mask parameter slots PyG leaves on the model are removed (see :func:`unregister_masks`)."""

    name = "GNNExplainer"

    def __init__(self, epochs: int = 100, lr: float = 0.01):
        self.epochs, self.lr = int(epochs), float(lr)

    def explain(self, model: torch.nn.Module, graphs: Sequence, seed: int = 0) -> List[Tensor]:
        graphs = check_inputs(model, graphs, seed, f"{self.name}.explain")
        model.eval()
        explainer = Explainer(model, algorithm=PyGGNNExplainer(epochs=self.epochs, lr=self.lr),
                              explanation_type="phenomenon", edge_mask_type="object", node_mask_type=None,
                              model_config=graph_model_config())
        torch.manual_seed(seed)
        out: List[Tensor] = []
        for g in graphs:
            batch = torch.zeros(g.num_nodes, dtype=torch.long)
            kw = model_kwargs(model, getattr(g, "edge_attr", None), batch)
            with torch.no_grad():
                target = model(g.x, g.edge_index, **kw).argmax(-1)
            out.append(explainer(g.x, g.edge_index, target=target, **kw).edge_mask.detach())
        unregister_masks(model)
        return out
