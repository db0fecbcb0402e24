"""Class-wise pre-training of the stacked attributors (paper Eq. 6–8), batch by batch."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..ops import concrete_sample, segment_select
from .attributor import StackedAttributors, encode, score
from .config import ReFineConfig
from .grouped import GroupSlices
from .losses import contrastive, fidelity, mask_entropy
from .packing import GraphPack
from .propagate import gcn_norm
from .subgraph import edge_subgraph
from .target import TargetModel

__all__ = ["pretrain_loss", "pretrain", "validation_loss", "run_epochs", "train_graphs"]


def _bounds(group: Tensor, counts: Tensor, num_groups: int) -> List[int]:
    per_group = counts.new_zeros(num_groups).index_add(0, group, counts)
    return [0] + torch.cumsum(per_group, 0).tolist()


def pretrain_loss(attributors: StackedAttributors, target: TargetModel, pack: GraphPack, index: Tensor,
                  groups: Tensor, classes: Tensor, probs: Tensor, config: ReFineConfig, seed: int, step: int,
                  bn_mode: str = "train") -> Dict[str, Tensor]:
    """Loss of one batch ``index`` (graphs of ``pack``). ``groups [len(pack)]`` picks each graph's
    attributor, ``classes`` its predicted class (contrastive positives), ``probs [len(pack), C]`` the
    full-graph softmax. Returns the total ``'loss'`` and its terms (scalars)."""
    order = torch.argsort(groups[index], stable=True)  # graphs sorted by attributor -> contiguous rows
    index = index[order]
    b = pack.take(index)
    G = attributors.groups
    group_b = groups[index]
    p, stats = attributors.params(), attributors.stats()
    dtype = p["lin_weight"].dtype
    x = b.x.to(dtype)
    nodes = GroupSlices(_bounds(group_b, b.node_ptr.diff(), G))
    edges = GroupSlices(_bounds(group_b, b.edge_ptr.diff(), G))
    edge_group = group_b[b.edge_batch]

    z = encode(p, stats, x, b.edge_index, gcn_norm(b.edge_index, b.num_nodes, dtype=dtype), nodes, bn_mode)
    alpha = score(p, z, b.edge_index, b.edge_attr, nodes, edges, edge_group)
    m = concrete_sample(alpha, b.key, seed, step, config.temperature)

    fid = fidelity(probs[index], target.on(b, edge_mask=m)).mean()
    size = m.mean()
    ent = mask_entropy(m).mean()
    loss = fid + config.size_coef * size + config.entropy_coef * ent
    terms = {"fidelity": fid.detach(), "size": size.detach(), "entropy": ent.detach()}

    if config.gamma > 0:
        # representations of the top-ρ subgraphs, from the attributor's own encoder, mask as edge weight
        selected = segment_select(m.detach(), b.edge_ptr, config.ratio, b.key, seed, step, stochastic=False)
        sub = edge_subgraph(b, selected)
        sub_nodes = GroupSlices(_bounds(group_b[sub.batch], torch.ones_like(sub.batch), G))
        weight = m[selected]
        norm = gcn_norm(sub.edge_index, sub.x.size(0), weight)
        zs = encode(p, stats, sub.x.to(dtype), sub.edge_index, norm, sub_nodes, "batch" if bn_mode == "train" else bn_mode)
        count = torch.bincount(sub.batch, minlength=b.num_graphs).clamp_min(1).to(dtype)
        h = zs.new_zeros(b.num_graphs, zs.size(1)).index_add(0, sub.batch, zs) / count.unsqueeze(1)
        cts = contrastive(h, classes[index], config.tau)
        loss = loss + config.gamma * cts
        terms["contrastive"] = cts.detach()
    terms["loss"] = loss
    return terms


def pretrain(attributors: StackedAttributors, target: TargetModel, pack: GraphPack, groups: Tensor,
             classes: Tensor, probs: Tensor, config: ReFineConfig, *, epochs: int, batch_size: int, seed: int = 0,
             val: Optional[tuple] = None, progress: bool = True) -> Dict[str, list]:
    """Adam on all stacked parameters (lr ``config.lr``) for ``epochs`` epochs of shuffled batches.

    Graphs without edges are skipped. Noise: seed ``seed``, step = global iteration. ``val`` =
    ``(pack, groups, classes, probs)`` adds a validation loss per epoch (eval-mode batch norm) and
    ReduceLROnPlateau (factor 0.2, patience 3, min lr 1e-5) on it. Returns per-epoch means of every
    term (``'loss'``, ``'fidelity'``, ``'size'``, ``'entropy'``, [``'contrastive'``], [``'val_loss'``],
    ``'lr'``)."""
    def batch_loss(index: Tensor, step: int) -> Dict[str, Tensor]:
        return pretrain_loss(attributors, target, pack, index, groups, classes, probs, config, seed, step)

    def validate() -> float:
        return validation_loss(attributors, target, *val, config=config, batch_size=batch_size, seed=seed)

    return run_epochs(attributors, train_graphs(pack, "pretrain"), batch_loss, None if val is None else validate,
                      lr=config.lr, epochs=epochs, batch_size=batch_size, seed=seed, progress=progress)


def train_graphs(pack: GraphPack, name: str) -> Tensor:
    """Ids ``[N]`` of the graphs of ``pack`` with edges; a ValueError naming ``name`` if there are none."""
    index = torch.nonzero(pack.num_edges > 0).view(-1)
    if index.numel() == 0:
        raise ValueError(f"{name}: no training graph has edges")
    return index


def _local_values(terms: Dict[str, Tensor]) -> Dict[str, float]:
    return {k: float(v.detach()) for k, v in terms.items()}


def run_epochs(attributors: StackedAttributors, train_index: Tensor,
               batch_loss: Callable[[Tensor, int], Dict[str, Tensor]], validate: Optional[Callable[[], float]], *,
               lr: float, epochs: int, batch_size: int, seed: int, progress: bool = True, desc: str = "pretrain",
               after_backward: Optional[Callable[[], None]] = None,
               batch_values: Callable[[Dict[str, Tensor]], Dict[str, float]] = _local_values) -> Dict[str, list]:
    """The epoch loop of :func:`pretrain`: Adam (lr ``lr``) on ``attributors`` over batches of
    ``batch_size`` graphs of ``train_index [N]``, reshuffled each epoch (generator seeded ``seed``).
    ``batch_loss(index [B], step)`` gives a batch's terms (``'loss'`` is back-propagated; step = global
    iteration), ``after_backward()`` runs before each Adam step, ``batch_values(terms)`` turns the terms
    into the batch's floats, and ``validate()`` (optional) gives the validation loss after each epoch for
    ReduceLROnPlateau (factor 0.2, patience 3, min lr 1e-5). Returns the per-epoch history."""
    opt = torch.optim.Adam(attributors.parameters(), lr=lr)
    sched = None
    if validate is not None:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.2, patience=3, min_lr=1e-5)
    gen = torch.Generator().manual_seed(seed)
    n_batches = (train_index.numel() + batch_size - 1) // batch_size
    history: Dict[str, list] = {}
    step = 0
    bar = tqdm(total=epochs * n_batches, desc=desc, disable=not progress, leave=False)
    attributors.train()
    try:
        for epoch in range(epochs):
            bar.set_description(f"{desc} epoch {epoch + 1}/{epochs}", refresh=False)
            perm = train_index[torch.randperm(train_index.numel(), generator=gen).to(train_index.device)]
            sums: Dict[str, float] = {}
            for start in range(0, perm.numel(), batch_size):
                index = perm[start:start + batch_size]
                terms = batch_loss(index, step)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if after_backward is not None:
                    after_backward()
                opt.step()
                step += 1
                for k, v in batch_values(terms).items():
                    sums[k] = sums.get(k, 0.0) + v * index.numel()
                bar.set_postfix(loss=f"{sums['loss'] / min(start + batch_size, perm.numel()):.4f}", refresh=False)
                bar.update(1)
            for k, v in sums.items():
                history.setdefault(k, []).append(v / perm.numel())
            if validate is not None:
                vloss = validate()
                history.setdefault("val_loss", []).append(vloss)
                sched.step(vloss)
            history.setdefault("lr", []).append(opt.param_groups[0]["lr"])
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
    finally:
        bar.close()
        attributors.eval()
    return history


@torch.no_grad()
def validation_loss(attributors: StackedAttributors, target: TargetModel, pack: GraphPack, groups: Tensor,
                    classes: Tensor, probs: Tensor, *, config: ReFineConfig, batch_size: int, seed: int) -> float:
    """Mean pre-training loss over ``pack`` with eval-mode batch norm (fixed noise step 0)."""
    index = torch.nonzero(pack.num_edges > 0).view(-1)
    total = 0.0
    for start in range(0, index.numel(), batch_size):
        chunk = index[start:start + batch_size]
        terms = pretrain_loss(attributors, target, pack, chunk, groups, classes, probs, config, seed, 0, "eval")
        total += float(terms["loss"]) * chunk.numel()
    return total / max(index.numel(), 1)
