"""SA (sensitivity analysis): |∂ logit_pred / ∂ m_e| at the all-ones edge mask m."""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks

from ..explain.target import model_kwargs, unregister_masks
from ..metrics import EvalGraphs
from .base import check_inputs, split_edges

__all__ = ["SA"]


class SA:
    """Gradient saliency of the predicted-class logit w.r.t. each edge's message weight.

    One forward and one backward per batch of ``batch_size`` graphs: the graphs are disjoint, so the
    gradient of the summed logits equals each graph's own gradient. Deterministic (``seed`` unused).
    """

    name = "SA"

    def __init__(self, batch_size: int = 256):
        self.batch_size = int(batch_size)

    def explain(self, model: torch.nn.Module, graphs: Sequence, seed: int = 0) -> List[Tensor]:
        graphs = check_inputs(model, graphs, seed, f"{self.name}.explain")
        model.eval()
        unregister_masks(model)
        out: List[Tensor] = []
        for start in range(0, len(graphs), self.batch_size):
            c = EvalGraphs.collate(graphs[start:start + self.batch_size])
            mask = torch.ones(c.edge_index.size(1), dtype=c.x.dtype, requires_grad=True)
            set_masks(model, mask, c.edge_index, apply_sigmoid=False)
            try:
                logits = model(c.x, c.edge_index, **model_kwargs(model, c.edge_attr, c.batch))
            finally:
                clear_masks(model)
            pred = logits.detach().argmax(-1)
            (grad,) = torch.autograd.grad(logits.gather(1, pred.view(-1, 1)).sum(), mask, allow_unused=True)
            grad = torch.zeros_like(mask) if grad is None else grad
            out.extend(split_edges(grad.abs(), c.edge_ptr))
        return out
