"""ReFine as a PyG ``ExplainerAlgorithm``, so ``torch_geometric.explain.Explainer`` can drive it."""
from __future__ import annotations

import logging
from typing import Optional, Union

import torch
from torch import Tensor
from torch_geometric.explain import Explanation
from torch_geometric.explain.algorithm import ExplainerAlgorithm
from torch_geometric.explain.config import MaskType, ModelMode, ModelReturnType, ModelTaskLevel

from ..validation import EXPLAIN_ARGS, check_args
from .fine_tune import check_select
from .packing import GraphPack
from .refine import ReFine
from .target import TargetModel

__all__ = ["ReFineAlgorithm"]


class ReFineAlgorithm(ExplainerAlgorithm):
    """Edge-level ReFine explanations of graph classifiers through PyG's ``Explainer``.

    ``refine`` is a (pre-trained) :class:`ReFine`; ``ratio``, ``steps``, ``lr``, ``seed`` and
    ``batch_size`` are passed to :meth:`ReFine.explain` (``None``: the refine config's defaults).
    The input may be one graph or a mini-batch (``batch=`` keyword); the attributor used for each
    graph is the one of its ``target`` class (the prediction for ``explanation_type='model'``).
    ``index`` (optional) restricts the explanation to those graphs; other edges get 0.
    Supports ``edge_mask_type='object'``, no node mask, graph-level multiclass classification with
    ``return_type`` ``'raw'`` or ``'log_probs'``.
    """

    def __init__(self, refine: ReFine, ratio: Optional[float] = None, steps: Optional[int] = None,
                 lr: Optional[float] = None, seed: int = 0, batch_size: Optional[int] = None, select: str = "sample"):
        super().__init__()
        if not isinstance(refine, ReFine):
            raise TypeError(f"ReFineAlgorithm: refine must be a ReFine, got {type(refine).__name__}")
        check_args("ReFineAlgorithm", EXPLAIN_ARGS, ratio=ratio, steps=steps, lr=lr, seed=seed, batch_size=batch_size)
        check_select(select, "ReFineAlgorithm")
        self.refine = refine
        self.ratio, self.steps, self.lr, self.seed, self.batch_size = ratio, steps, lr, seed, batch_size
        self.select = select

    def forward(self, model: torch.nn.Module, x: Tensor, edge_index: Tensor, *, target: Tensor,
                index: Optional[Union[int, Tensor]] = None, **kwargs) -> Explanation:
        batch, edge_attr = kwargs.get("batch"), kwargs.get("edge_attr")
        checks = self.refine.input_checks("ReFineAlgorithm")
        pack = GraphPack.from_batch(x, edge_index, batch, edge_attr, **checks)
        classes = target.view(-1).long()
        if classes.numel() != len(pack):
            raise ValueError(f"ReFineAlgorithm: target must hold one class per graph ({len(pack)}), "
                             f"got shape {tuple(target.shape)}")
        graphs = torch.arange(len(pack), device=x.device)
        if index is not None:
            graphs = graphs[torch.as_tensor(index, device=x.device).view(-1)]
        refine = self.refine
        saved = refine.target
        if model is not saved.model:
            refine.target = TargetModel(model, saved.use_edge_attr)
        try:
            masks = refine.explain(pack, ratio=self.ratio, steps=self.steps, lr=self.lr, seed=self.seed,
                                   batch_size=self.batch_size, progress=False, classes=classes, select=self.select)
        finally:
            refine.target = saved
        edge_mask = torch.zeros(edge_index.size(1), dtype=torch.float, device=x.device)
        if graphs.numel():
            chosen = torch.zeros(len(pack), dtype=torch.bool, device=x.device)
            chosen[graphs] = True
            ordered = torch.cat(masks).to(edge_mask.dtype) if masks else edge_mask.new_zeros(0)
            keep = chosen[torch.repeat_interleave(torch.arange(len(pack), device=x.device), pack.num_edges)]
            edge_mask[pack.edge_order[keep]] = ordered[keep]
        return Explanation(edge_mask=edge_mask)

    def supports(self) -> bool:
        ec, mc = self.explainer_config, self.model_config
        if ec.edge_mask_type != MaskType.object:
            logging.error(f"'{self.__class__.__name__}' needs edge_mask_type='object', got {ec.edge_mask_type}")
            return False
        if ec.node_mask_type is not None:
            logging.error(f"'{self.__class__.__name__}' does not explain node features (node_mask_type must be None)")
            return False
        if mc.task_level != ModelTaskLevel.graph or mc.mode != ModelMode.multiclass_classification:
            logging.error(f"'{self.__class__.__name__}' explains graph-level multiclass classification only")
            return False
        if mc.return_type not in (ModelReturnType.raw, ModelReturnType.log_probs):
            logging.error(f"'{self.__class__.__name__}' needs return_type 'raw' or 'log_probs'")
            return False
        return True
