"""ReFine and its variants (ReFine-FT, ReFine-CT, the PGExplainer-equivalent) behind the common interface."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..explain import ReFine, ReFineConfig, attributor_edge_dim
from ..explain.target import model_kwargs
from ..metrics import EvalGraphs
from .base import check_inputs, fingerprint

__all__ = ["ReFineExplainer", "refine_variants", "TOP_RHO", "VARIANTS"]

TOP_RHO = "ReFine (top-ρ fine-tuning)"

VARIANTS = {"refine": {}, "ct": {"gamma": 0.0}, "pg": {"gamma": 0.0, "class_wise": False}}
"""Pre-training overrides of the config for ReFine, ReFine-CT and the PGExplainer-equivalent (also
``refine-fast pretrain --variant``)."""


class ReFineExplainer:
    """One ReFine variant: pre-training overrides of the config (``pretrain``, e.g. ``gamma=0``) and
    ``steps`` fine-tuning steps at explanation time (``None``: the config's; 0: none), each picking
    its edges by ``select`` (see :meth:`refine_fast.ReFine.explain`).

    ``per_ratio``: the evaluation fine-tunes a separate explanation for each ρ of ACC@ρ (``explain(...,
    ratio=ρ)``), as the paper does for ReFine. Variants built with the same ``shared`` dict reuse one
    pre-trained attributor per (pre-training settings, seed), e.g. ReFine and ReFine-FT.
    """

    def __init__(self, name: str, config: ReFineConfig, steps: Optional[int] = None,
                 per_ratio: bool = False, shared: Optional[Dict] = None, select: str = "sample", **pretrain):
        self.name = name
        self.config = config.replace(**pretrain) if pretrain else config
        self.steps = steps
        self.per_ratio = per_ratio
        self.select = select
        self.shared = {} if shared is None else shared
        self.refine: Optional[ReFine] = None
        self.fit_seconds = 0.0

    def fit(self, model: torch.nn.Module, train_graphs: Sequence, seed: int = 0,
            val_graphs: Optional[Sequence] = None, checkpoint_dir: Optional[Path] = None,
            progress: bool = False) -> None:
        """Pre-train (or reuse: from ``shared``, or from ``checkpoint_dir`` where the attributors and the
        pre-training seconds are saved, keyed by the config, the target model's weights, the training
        graphs and the seed)."""
        train_graphs = check_inputs(model, train_graphs, seed, f"{self.name}.fit", "train_graphs")
        settings = json.dumps(self.config.to_dict(), sort_keys=True)
        key = (id(model), settings, int(seed))
        if key not in self.shared:
            path = None
            if checkpoint_dir is not None:
                digest = fingerprint(model, train_graphs, settings)
                path = Path(checkpoint_dir) / f"refine_{digest}_seed{seed}.pt"
            if path is not None and path.is_file() and path.with_suffix(".json").is_file():
                refine = ReFine.load(path, model)
                seconds = json.loads(path.with_suffix(".json").read_text())["pretrain_seconds"]
            else:
                refine, seconds = self._pretrain(model, train_graphs, seed, val_graphs, progress)
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    refine.save(path)
                    path.with_suffix(".json").write_text(json.dumps({"pretrain_seconds": seconds,
                                                                     "config": self.config.to_dict()}))
            self.shared[key] = (refine, seconds)
        self.refine, self.fit_seconds = self.shared[key]

    def _pretrain(self, model, train_graphs, seed, val_graphs, progress):
        model.eval()
        g = train_graphs[0]
        c = EvalGraphs.collate([g])
        with torch.no_grad():
            num_classes = model(c.x, c.edge_index, **model_kwargs(model, c.edge_attr, c.batch)).size(-1)
        start = time.perf_counter()
        refine = ReFine(model, num_classes, g.x.size(-1), attributor_edge_dim(g.num_edge_features), config=self.config,
                        seed=seed)
        refine.pretrain(list(train_graphs), seed=seed,
                        val_dataset=val_graphs, progress=progress)
        return refine, time.perf_counter() - start

    def explain(self, model: torch.nn.Module, graphs: Sequence, seed: int = 0,
                ratio: Optional[float] = None, batch_size: Optional[int] = None) -> List[Tensor]:
        if self.refine is None or self.refine.model is not model:
            raise RuntimeError(f"{self.name}.explain: call fit(model, train_graphs) with this model first")
        return self.refine.explain(graphs, ratio=ratio, steps=self.steps, seed=seed,
                                   batch_size=batch_size, progress=False, select=self.select)


def refine_variants(config: ReFineConfig, shared: Optional[Dict] = None) -> List[ReFineExplainer]:
    """ReFine-CT, ReFine-FT, ReFine and the PGExplainer-equivalent, sharing pre-trained attributors.

    - ReFine: class-wise attributors, contrastive pre-training, fine-tuned per instance at each ρ.
    - ReFine (top-ρ fine-tuning): the same, but each fine-tuning step takes the top-ρ edges instead of
      sampling them (the reference implementation's fine-tuning).
    - ReFine-FT: the same pre-trained attributors, no fine-tuning (one explanation for all ρ).
    - ReFine-CT: pre-trained without the contrastive term (γ = 0), fine-tuned at each ρ.
    - PGExplainer (refine_fast): one attributor shared by all classes, γ = 0, no fine-tuning.
    """
    shared = {} if shared is None else shared
    return [
        ReFineExplainer("PGExplainer (refine_fast)", config, steps=0, shared=shared, **VARIANTS["pg"]),
        ReFineExplainer("ReFine-CT", config, per_ratio=True, shared=shared, **VARIANTS["ct"]),
        ReFineExplainer("ReFine-FT", config, steps=0, shared=shared),
        ReFineExplainer("ReFine", config, per_ratio=True, shared=shared),
        ReFineExplainer(TOP_RHO, config, per_ratio=True, shared=shared, select="top"),
    ]
