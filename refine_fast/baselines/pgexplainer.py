"""PyG's PGExplainer, trained on the training split (phenomenon, graph level), explained in batches."""
from __future__ import annotations

import warnings
from typing import List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.explain import Explainer
from torch_geometric.explain.algorithm import PGExplainer as PyGPGExplainer

from ..explain.target import model_kwargs
from ..metrics import EvalGraphs
from .base import check_inputs, split_edges
from .gnnexplainer import graph_model_config

__all__ = ["PGExplainer"]


class PGExplainer:
    """PyG's PGExplainer: an MLP over the target model's last-layer node embeddings of each edge's ends.

    ``fit`` trains it for ``epochs`` passes over the training graphs in shuffled batches of
    ``batch_size`` (one PyG ``train(epoch, ...)`` step per batch, Adam lr ``lr``, PyG's temperature
    schedule), explaining the model's predicted class. ``explain`` is one forward per batch.
    """

    name = "PGExplainer"

    def __init__(self, epochs: int = 30, lr: float = 0.003, batch_size: int = 64):
        self.epochs, self.lr, self.batch_size = int(epochs), float(lr), int(batch_size)
        self.explainer: Optional[Explainer] = None

    def fit(self, model: torch.nn.Module, train_graphs: Sequence, seed: int = 0) -> None:
        train_graphs = check_inputs(model, train_graphs, seed, f"{self.name}.fit", "train_graphs")
        model.eval()
        torch.manual_seed(seed)
        self.explainer = Explainer(model, algorithm=PyGPGExplainer(epochs=self.epochs, lr=self.lr),
                                   explanation_type="phenomenon", edge_mask_type="object",
                                   model_config=graph_model_config())
        algo = self.explainer.algorithm
        flags = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            for epoch in range(self.epochs):
                order = torch.randperm(len(train_graphs)).tolist()
                for start in range(0, len(order), self.batch_size):
                    c = EvalGraphs.collate([train_graphs[i] for i in order[start:start + self.batch_size]])
                    kw = model_kwargs(model, c.edge_attr, c.batch)
                    with torch.no_grad():
                        target = model(c.x, c.edge_index, **kw).argmax(-1)
                    with warnings.catch_warnings():  # PyG's train() returns float(loss) of a grad tensor
                        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
                        algo.train(epoch, model, c.x, c.edge_index, target=target, **kw)
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    def explain(self, model: torch.nn.Module, graphs: Sequence, seed: int = 0) -> List[Tensor]:
        if self.explainer is None or self.explainer.model is not model:
            raise RuntimeError("PGExplainer.explain: call fit(model, train_graphs) with this model first")
        graphs = check_inputs(model, graphs, seed, f"{self.name}.explain")
        out: List[Tensor] = []
        for start in range(0, len(graphs), 256):
            c = EvalGraphs.collate(graphs[start:start + 256])
            kw = model_kwargs(model, c.edge_attr, c.batch)
            with torch.no_grad():
                target = model(c.x, c.edge_index, **kw).argmax(-1)
            mask = self.explainer(c.x, c.edge_index, target=target, **kw).edge_mask
            out.extend(split_edges(mask, c.edge_ptr))
        return out
