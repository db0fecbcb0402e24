"""Training and evaluation of a target GNN on graph-classification splits."""
from __future__ import annotations

import copy
from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch_geometric.loader import DataLoader
from tqdm.auto import tqdm

from ..validation import POSITIVE, SEED, Spec, check_args, check_graphs, model_checks

__all__ = ["train_gnn", "accuracy"]

TRAIN_ARGS = {"epochs": Spec(int, 1), "lr": POSITIVE, "batch_size": Spec(int, 1), "weight_decay": Spec(float, 0.0),
              "seed": SEED}
"""Type and range of :func:`train_gnn`'s numeric arguments."""


def _logits(model: nn.Module, batch) -> torch.Tensor:
    return model(batch.x, batch.edge_index, batch.edge_attr, batch.batch)


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Sequence, batch_size: int = 256) -> float:
    """Fraction of graphs of ``dataset`` whose argmax logit equals ``y`` (model put in eval mode)."""
    model.eval()
    correct = total = 0
    device = next(model.parameters()).device
    for batch in DataLoader(dataset, batch_size=batch_size):
        batch = batch.to(device)
        correct += int((_logits(model, batch).argmax(-1) == batch.y.view(-1)).sum())
        total += batch.num_graphs
    return correct / max(total, 1)


def train_gnn(model: nn.Module, train_set: Sequence, val_set: Sequence, test_set: Optional[Sequence] = None,
              epochs: int = 100, lr: float = 1e-3, batch_size: int = 128, weight_decay: float = 0.0,
              seed: int = 0, progress: bool = True) -> Dict[str, float]:
    """Adam on cross-entropy; keeps the weights of the epoch with the best validation accuracy
    (later epochs win ties) and loads them into ``model`` at the end.

    Returns ``{"train_acc", "val_acc", "test_acc" (when ``test_set``), "best_epoch", "epochs"}``.
    The splits are checked first (:func:`refine_fast.validation.check_graphs`, one label ``y`` per graph).
    """
    check_args("train_gnn", TRAIN_ARGS, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
               seed=seed)
    for name, split in (("train_set", train_set), ("val_set", val_set), ("test_set", test_set)):
        if split is not None:
            check_graphs(split, name=f"train_gnn: {name}", needs_y=True, **model_checks(model))
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    best_val, best_epoch, best_state = -1.0, 0, copy.deepcopy(model.state_dict())
    bar = tqdm(range(1, epochs + 1), desc=f"train {type(model).__name__}", disable=not progress)
    for epoch in bar:
        model.train()
        total_loss = 0.0
        for batch in loader:
            batch = batch.to(device)
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(_logits(model, batch), batch.y.view(-1))
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * batch.num_graphs
        scheduler.step()
        val_acc = accuracy(model, val_set)
        if val_acc >= best_val:
            best_val, best_epoch, best_state = val_acc, epoch, copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{total_loss / len(train_set):.4f}", val=f"{val_acc:.3f}",
                        best=f"{best_val:.3f}")
    model.load_state_dict(best_state)
    model.eval()
    metrics = {"train_acc": accuracy(model, train_set), "val_acc": best_val,
               "best_epoch": best_epoch, "epochs": epochs}
    if test_set is not None:
        metrics["test_acc"] = accuracy(model, test_set)
    return metrics
