"""Class-wise pre-training of the stacked attributors (paper Eq. 6–8), batch by batch."""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..ops import concrete_sample, segment_select
from .attributor import StackedAttributors, encode, encode_reference_norm, score
from .config import ReFineConfig
from .grouped import GroupSlices
from .losses import contrastive_loss, fidelity_loss, mask_entropy
from .packing import GraphPack, _ranges
from .propagate import gcn_norm
from .subgraph import explanation_subgraph, subgraph_slots
from .target import TargetModel

__all__ = ["Shard", "pretrain_loss", "pretrain", "validation_loss", "run_epochs", "train_graphs"]


LN2 = math.log(2.0)


def _bounds(group: Tensor, counts: Tensor, num_groups: int) -> List[int]:
    """Row offsets ``[G+1]`` of the groups, from each graph's group and row count (host tensors)."""
    per_group = counts.new_zeros(num_groups).index_add(0, group, counts)
    return [0] + torch.cumsum(per_group, 0).tolist()


class Shard:
    """Which graphs of a global batch this process computes, and how per-batch quantities are combined.

    This base class is the single-process case: the process holds the whole batch. The torchrun twin
    (:class:`refine_fast.explain.distributed.RankShard`) splits the batch over ranks and makes every
    coupling global (batch norm, contrastive pairs), so both give the same loss."""

    world = 1

    def split(self, index: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
        """``(mine, order)``: this process's graphs of ``index [B]`` sorted by attributor group, and all
        graphs of the batch in the order :meth:`gather` returns their rows."""
        mine = index[torch.argsort(groups[index], stable=True)]
        return mine, mine

    def slices(self, bounds: Sequence[int]) -> GroupSlices:
        """The row grouping whose training-mode batch norm sees the whole batch."""
        return GroupSlices(bounds)

    def gather(self, h: Tensor) -> Tensor:
        """Rows ``h [B_mine, H]`` of every process, concatenated -> ``[B, H]`` (differentiable)."""
        return h


def _reference_norm_encode(p, stats, pack: GraphPack, index: Tensor, groups: Tensor, mine: Tensor, b,
                           G: int, dtype: torch.dtype, whole: bool) -> Tensor:
    """Node embeddings of the graphs ``mine`` (batch ``b``) with ``pretrain_norm='reference'``, whose
    statistics span every node of the batch ``index``. ``whole``: this process holds the whole batch
    (``mine`` is ``index`` sorted by group); otherwise each process encodes the whole batch (the same
    values on every rank) and keeps the rows of its graphs."""
    ordered = mine if whole else index[torch.argsort(groups[index], stable=True)]
    full = b if whole else pack.take(ordered)
    group = groups[ordered]
    nodes = GroupSlices(_bounds(group, full.host_node_ptr.diff(), G))
    norm = gcn_norm(full.edge_index, full.num_nodes, dtype=dtype)
    z = encode_reference_norm(p, stats, full.x.to(dtype), full.edge_index, norm, nodes,
                              _bounds(group, torch.ones_like(group), G), full.batch)
    if full is b:
        return z
    where = torch.full((len(pack),), -1, dtype=torch.long)
    where[ordered] = torch.arange(ordered.numel())
    position = where[mine]
    count = full.host_node_ptr.diff()[position]
    rows, _ = _ranges(full.host_node_ptr[position], count, int(count.sum()))
    return z.index_select(0, rows.to(z.device))


def pretrain_loss(attributors: StackedAttributors, target: TargetModel, pack: GraphPack, index: Tensor,
                  groups: Tensor, classes: Tensor, probs: Tensor, config: ReFineConfig, seed: int, step: int,
                  bn_mode: str = "train", shard: Optional[Shard] = None) -> Dict[str, Tensor]:
    """Loss of one batch ``index`` (graphs of ``pack``, all with edges), paper Eq. 6–8 with the forms
    ``config`` picks. ``groups [len(pack)]`` picks each graph's attributor, ``classes`` its predicted
    class (contrastive positives), ``probs [len(pack), C]`` the full-graph softmax. ``shard`` (default:
    this process holds the whole batch) says which graphs this process computes; summed over the
    processes, every term equals the single-process term. Returns ``'loss'`` and its terms (scalars):
    ``'fidelity'`` (mean or sum over graphs, ``config.reduction``), ``'size'`` and ``'entropy'`` (means
    over edges), [``'contrastive'``]."""
    shard = shard or Shard()
    index, groups = index.cpu(), groups.cpu()  # batches are picked on the host: no device read below
    mine, order = shard.split(index, groups)
    b = pack.take(mine)
    G, B = attributors.groups, b.num_graphs
    device = b.x.device
    group_b = groups[mine].to(device)
    p, stats = attributors.params(), attributors.stats()
    dtype = p["lin_weight"].dtype
    num_edges = float(pack.host_num_edges[index].sum())

    nodes = shard.slices(_bounds(groups[mine], b.host_node_ptr.diff(), G))
    edges = GroupSlices(_bounds(groups[mine], b.host_edge_ptr.diff(), G))
    if bn_mode == "train" and config.pretrain_norm == "reference":
        z = _reference_norm_encode(p, stats, pack, index, groups, mine, b, G, dtype, whole=shard.world == 1)
    else:
        z = encode(p, stats, b.x.to(dtype), b.edge_index, gcn_norm(b.edge_index, b.num_nodes, dtype=dtype),
                   nodes, bn_mode)
    alpha = score(p, z, b.edge_index, b.edge_attr, nodes, edges, group_b[b.edge_batch])
    scale = LN2 if config.log2_noise else 1.0  # σ((L/ln2 + α)/β) = σ((L + α·ln2)/(β·ln2))
    m = concrete_sample(alpha * scale, b.key, seed, step, config.temperature * scale)

    if B:
        fid = fidelity_loss(probs[mine.to(device)], target.on(b, edge_mask=m, mask_sigmoid=config.mask_sigmoid),
                            config.fidelity).sum()
    else:  # fewer graphs than processes in this batch: this one only takes part in the collectives
        fid = m.sum() * 0.0
    if config.reduction == "mean":
        fid = fid / index.numel()
    size = m.sum() / num_edges
    ent = mask_entropy(m).sum() / num_edges
    loss = fid + config.size_coef * size + config.entropy_coef * ent
    terms = {"fidelity": fid.detach(), "size": size.detach(), "entropy": ent.detach()}

    if config.gamma > 0:
        # representations of the top-ρ subgraphs, the sampled mask as edge weight
        selected = segment_select(m.detach(), b.edge_ptr, config.ratio, b.key, seed, step, stochastic=False)
        if target.representation(config.representation) == "target":
            slots = subgraph_slots(b.host_node_ptr, b.host_edge_ptr, config.ratio)
            sub = explanation_subgraph(b, selected, slots)  # fixed shapes, no sync
            weight = m.index_select(0, sub.edges)
            h = target(sub.x, sub.edge_index, sub.batch, sub.num_graphs, sub.edge_attr, weight,
                       config.mask_sigmoid, embed=True)[:B].to(dtype) if B else m.new_zeros(0, 1) + m.sum() * 0.0
        else:  # the attributor's batch norm needs the kept node count (one host sync)
            sub = explanation_subgraph(b, selected)
            weight = m.index_select(0, sub.edges)
            sub_group = group_b[sub.batch]
            sub_nodes = shard.slices(_bounds(sub_group.cpu(), torch.ones(sub.batch.numel(), dtype=torch.long), G))
            norm = gcn_norm(sub.edge_index, sub.x.size(0), weight)
            zs = encode(p, stats, sub.x.to(dtype), sub.edge_index, norm, sub_nodes,
                        "batch" if bn_mode == "train" else bn_mode)
            count = zs.new_zeros(B).index_add_(0, sub.batch, zs.new_ones(sub.batch.numel())).clamp_min(1)
            h = zs.new_zeros(B, zs.size(1)).index_add(0, sub.batch, zs) / count.unsqueeze(1)
        cts = contrastive_loss(shard.gather(h), classes[order.to(classes.device)], config.tau,
                               config.contrastive) / shard.world
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
    """Ids ``[N]`` (on the CPU) of the graphs of ``pack`` with edges; a ValueError naming ``name`` if there
    are none."""
    index = torch.nonzero(pack.host_num_edges > 0).view(-1)
    if index.numel() == 0:
        raise ValueError(f"{name}: no training graph has edges")
    return index


def _local_values(sums: Dict[str, Tensor]) -> Dict[str, float]:
    return {k: float(v) for k, v in sums.items()}


def run_epochs(attributors: StackedAttributors, train_index: Tensor,
               batch_loss: Callable[[Tensor, int], Dict[str, Tensor]], validate: Optional[Callable[[], float]], *,
               lr: float, epochs: int, batch_size: int, seed: int, progress: bool = True, desc: str = "pretrain",
               after_backward: Optional[Callable[[], None]] = None,
               epoch_values: Callable[[Dict[str, Tensor]], Dict[str, float]] = _local_values) -> Dict[str, list]:
    """The epoch loop of :func:`pretrain`: Adam (lr ``lr``) on ``attributors`` over batches of
    ``batch_size`` graphs of ``train_index [N]`` (CPU), reshuffled each epoch (generator seeded ``seed``).
    ``batch_loss(index [B], step)`` gives a batch's terms (``'loss'`` is back-propagated; step = global
    iteration), ``after_backward()`` runs before each Adam step, and ``validate()`` (optional) gives the
    validation loss after each epoch for ReduceLROnPlateau (factor 0.2, patience 3, min lr 1e-5). The terms
    are summed on the device and read once per epoch (``epoch_values`` turns the sums into floats), so a
    step never waits for the device. Returns the per-epoch history."""
    # fused on CUDA: one kernel, step counters on the device (no host read); the CPU keeps torch's default
    opt = torch.optim.Adam(attributors.parameters(), lr=lr, fused=attributors.lin_weight.is_cuda or None)
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
            perm = train_index[torch.randperm(train_index.numel(), generator=gen)]
            sums: Dict[str, Tensor] = {}
            for start in range(0, perm.numel(), batch_size):
                index = perm[start:start + batch_size]
                terms = batch_loss(index, step)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                if after_backward is not None:
                    after_backward()
                opt.step()
                step += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().double() * index.numel()
                bar.update(1)
            for k, v in epoch_values(sums).items():
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
    index = torch.nonzero(pack.host_num_edges > 0).view(-1)
    total = 0.0
    for start in range(0, index.numel(), batch_size):
        chunk = index[start:start + batch_size]
        terms = pretrain_loss(attributors, target, pack, chunk, groups, classes, probs, config, seed, 0, "eval")
        total += float(terms["loss"]) * chunk.numel()
    return total / max(index.numel(), 1)
