"""Random: i.i.d. uniform edge importances — the chance level every explainer should beat."""
from __future__ import annotations

from typing import List, Sequence

import torch
from torch import Tensor

from .base import check_inputs

__all__ = ["Random"]


class Random:
    """Importance ``U(0, 1)`` per edge, drawn graph after graph from a generator seeded by ``seed``
    (the model is not used). ACC@ρ of these rankings is what a random top-ρ subgraph keeps."""

    name = "Random"

    def explain(self, model: torch.nn.Module, graphs: Sequence, seed: int = 0) -> List[Tensor]:
        graphs = check_inputs(model, graphs, seed, f"{self.name}.explain")
        gen = torch.Generator().manual_seed(int(seed))
        return [torch.rand(int(g.num_edges), generator=gen) for g in graphs]
