"""Target GNNs of the paper's datasets, their training loop, save/load and a per-dataset registry."""
from .gnns import MODEL_CLASSES, BA3MotifNet, MNISTSuperpixelNet, MutagenicityNet, TargetGNN
from .io import load_model, save_model
from .reference import (REFERENCE_FILES, LegacyLEConv, ReferenceBA3Net, ReferenceMutagNet, load_reference_model,
                        load_reference_splits, reference_split)
from .registry import REGISTRY, DatasetSpec, load_splits, train_for_dataset
from .train import accuracy, train_gnn

__all__ = [
    "TargetGNN", "BA3MotifNet", "MutagenicityNet", "MNISTSuperpixelNet", "MODEL_CLASSES",
    "train_gnn", "accuracy", "save_model", "load_model",
    "REGISTRY", "DatasetSpec", "load_splits", "train_for_dataset",
    "ReferenceMutagNet", "ReferenceBA3Net", "LegacyLEConv", "load_reference_model", "reference_split",
    "load_reference_splits", "REFERENCE_FILES",
]
