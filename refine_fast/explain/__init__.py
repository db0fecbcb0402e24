"""ReFine explainer: stacked class-wise attributors, pre-training, batched fine-tuning, PyG algorithm."""
from .algorithm import ReFineAlgorithm
from .attributor import StackedAttributors
from .config import ReFineConfig
from .fine_tune import fine_tune, fine_tune_batch
from .packing import GraphBatch, GraphPack
from .pretrain import pretrain, pretrain_loss
from .refine import ReFine, attributor_dims, attributor_edge_dim
from .target import TargetModel

__all__ = [
    "ReFine",
    "ReFineAlgorithm",
    "ReFineConfig",
    "StackedAttributors",
    "GraphPack",
    "GraphBatch",
    "TargetModel",
    "pretrain",
    "pretrain_loss",
    "fine_tune",
    "fine_tune_batch",
    "attributor_edge_dim",
    "attributor_dims",
]
