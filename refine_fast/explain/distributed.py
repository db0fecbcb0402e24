"""Data-parallel pre-training of the stacked attributors across ``torch.distributed`` ranks (torchrun).

Every rank holds the whole training pack and draws the same shuffled global batches as
:func:`refine_fast.explain.pretrain.pretrain`; rank ``r`` of ``W`` computes its shard ``index[r::W]``
of each global batch. Whatever couples the graphs of a batch is made global, so ``W`` ranks give the
single-process result for the same global batch, up to float reduction order:

* batch norm uses each group's statistics over the rows of all ranks (sums all-reduced, two passes);
* fidelity, mask size and mask entropy are sums over the shard (divided by the global graph / edge count);
* the contrastive term pairs every graph with every other graph of the global batch: the subgraph
  representations ``h`` are all-gathered with gradients (:func:`all_gather_rows`) and each rank adds
  ``1/W`` of the global term, so the ranks' losses sum to the single-process loss;
* the gradients of that sum are all-reduced (one flat buffer, the collective DDP uses; DDP itself
  averages per-rank mean losses, which the global couplings above do not fit) and every rank takes the
  same Adam step. Batch-norm running statistics are updated from the global statistics, so the ranks'
  attributors stay identical; rank 0's initial state is broadcast first.

Noise is keyed by graph id and step, so a graph draws the same sample on whichever rank it lands.
The collectives inside the loss are differentiable (:func:`all_reduce_sum`); every rank runs them in
the same order in the backward pass too, also a rank whose shard of a short last batch is empty.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from .attributor import StackedAttributors
from .config import ReFineConfig
from .grouped import GroupSlices
from .packing import GraphPack
from .pretrain import Shard, pretrain_loss, run_epochs, train_graphs
from .target import TargetModel

__all__ = ["all_reduce_sum", "all_gather_rows", "SyncedGroupSlices", "RankShard", "distributed_pretrain_loss",
           "distributed_pretrain", "distributed_validation_loss", "pretrain_refine"]


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, group) -> Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def all_reduce_sum(tensor: Tensor, group=None) -> Tensor:
    """Sum of ``tensor`` over the ranks (collective), differentiable: the gradient reaching each rank's
    input is the sum of all ranks' output gradients (the ranks' losses are summed)."""
    return _AllReduceSum.apply(tensor, group)


def all_gather_rows(h: Tensor, counts: Sequence[int], group=None) -> Tensor:
    """Rows ``h [counts[rank], F]`` of every rank concatenated in rank order -> ``[sum(counts), F]``,
    differentiable like :func:`all_reduce_sum` (rank slots of a zero-padded ``[W, max(counts), F]``
    buffer summed over the ranks: exact, and gloo needs no all-to-all for the backward pass)."""
    rank, rows = dist.get_rank(group), max(counts)
    slot = F.pad(h, (0, 0, 0, rows - h.size(0)))
    buf = torch.stack([slot if r == rank else torch.zeros_like(slot) for r in range(len(counts))])
    full = all_reduce_sum(buf, group)
    return torch.cat([full[r, :n] for r, n in enumerate(counts)])


class SyncedGroupSlices(GroupSlices):
    """:class:`GroupSlices` whose training-mode batch norm uses each group's statistics over the rows
    of every rank of ``group`` (a cross-rank, per-group SyncBatchNorm; differentiable)."""

    def __init__(self, bounds: Sequence[int], group=None):
        super().__init__(bounds)
        self.group = group

    def linear(self, x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
        """As :meth:`GroupSlices.linear`; without rows, an empty product that keeps this rank's
        autograd graph connected, so its backward pass runs the same collectives as the other ranks."""
        if self.spans:
            return super().linear(x, weight, bias)
        return x @ weight[0] if bias is None else torch.addmm(bias[0], x, weight[0])

    def batch_norm(self, h: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor,
                   mode: str, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
        """As :meth:`GroupSlices.batch_norm` with the rows of all ranks; ``h [R, H]``, parameters and
        running statistics ``[G, H]``. Every rank must call it (collective) unless ``mode='eval'``."""
        if mode == "eval":
            return super().batch_norm(h, weight, bias, mean, var, mode, momentum, eps)
        G = len(self.bounds) - 1
        sizes = torch.tensor([e - s for s, e in zip(self.bounds[:-1], self.bounds[1:])], device=h.device)
        row_group = torch.repeat_interleave(torch.arange(G, device=h.device), sizes, output_size=h.size(0))
        local = torch.cat([h.new_zeros(G, h.size(1)).index_add(0, row_group, h), sizes.unsqueeze(1).to(h.dtype)], 1)
        total = all_reduce_sum(local, self.group)
        n = total[:, -1:]                                               # [G, 1] rows of each group, all ranks
        mu = total[:, :-1] / n.clamp_min(1)
        sq = h.new_zeros(G, h.size(1)).index_add(0, row_group, (h - mu.index_select(0, row_group)).square())
        biased = all_reduce_sum(sq, self.group) / n.clamp_min(1)
        use_batch = n > 1                                               # a single row uses running statistics
        m = torch.where(use_batch, mu, mean)
        v = torch.where(use_batch, biased, var)
        scale = weight * torch.rsqrt(v + eps)
        # index_select, not m[row_group]: see encode_reference_norm
        out = (h - m.index_select(0, row_group)) * scale.index_select(0, row_group) + bias.index_select(0, row_group)
        if mode == "train":
            with torch.no_grad():
                unbiased = biased * n / (n - 1).clamp_min(1)
                mean.copy_(torch.where(use_batch, (1 - momentum) * mean + momentum * mu, mean))
                var.copy_(torch.where(use_batch, (1 - momentum) * var + momentum * unbiased, var))
        return out


class RankShard(Shard):
    """This rank's part of a global batch: rank ``r`` of ``W`` computes ``index[r::W]`` (sorted by
    attributor group); batch norm and the contrastive pairs span all ranks (collective)."""

    def __init__(self, group=None):
        self.group = group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        self.counts: List[int] = []
        self.width: Optional[int] = None

    def split(self, index: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
        shards = []
        for r in range(self.world):
            part = index[r::self.world]
            shards.append(part[torch.argsort(groups[part], stable=True)])
        self.counts = [s.numel() for s in shards]
        return shards[self.rank], torch.cat(shards)

    def slices(self, bounds: Sequence[int]) -> GroupSlices:
        return SyncedGroupSlices(bounds, self.group)

    def gather(self, h: Tensor) -> Tensor:
        if self.width is None:  # a rank without graphs has no width: agree on it once (one host read)
            width = torch.tensor([h.size(1)], device=h.device)
            dist.all_reduce(width, op=dist.ReduceOp.MAX, group=self.group)
            self.width = int(width)
        if h.size(1) != self.width:
            h = h.new_zeros(h.size(0), self.width) + h.sum() * 0.0
        return all_gather_rows(h, self.counts, self.group)


def distributed_pretrain_loss(attributors: StackedAttributors, target: TargetModel, pack: GraphPack,
                              index: Tensor, groups: Tensor, classes: Tensor, probs: Tensor,
                              config: ReFineConfig, seed: int, step: int, bn_mode: str = "train",
                              group=None, shard: Optional[RankShard] = None) -> Dict[str, Tensor]:
    """This rank's part of :func:`~refine_fast.explain.pretrain.pretrain_loss` of the global batch
    ``index`` (int64 ``[B]``, the same on every rank; collective). Summed over the ranks, every term
    equals the single-process term, and so do the gradients of ``'loss'``. Pass the same ``shard`` to
    every call of a run (it remembers what the ranks agreed on)."""
    return pretrain_loss(attributors, target, pack, index, groups, classes, probs, config, seed, step, bn_mode,
                         shard=shard or RankShard(group))


def _all_reduce_grads(params: Sequence[Tensor], group) -> None:
    """Sum every parameter's gradient over the ranks (one flat buffer; a missing gradient counts as 0)."""
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, group=group)
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.view_as(p)


def distributed_pretrain(attributors: StackedAttributors, target: TargetModel, pack: GraphPack, groups: Tensor,
                         classes: Tensor, probs: Tensor, config: ReFineConfig, *, epochs: int, batch_size: int,
                         seed: int = 0, val: Optional[tuple] = None, progress: bool = True,
                         group=None) -> Dict[str, list]:
    """:func:`~refine_fast.explain.pretrain.pretrain` split over the ranks of ``group`` (default: the
    whole process group, which must be initialized). Same arguments, same global batches, same
    history (the global per-epoch means, identical on every rank). Progress is shown on rank 0."""
    train_index = train_graphs(pack, "distributed_pretrain")
    src = dist.get_global_rank(group, 0) if group is not None else 0
    for t in list(attributors.parameters()) + list(attributors.buffers()):
        dist.broadcast(t.data, src, group=group)
    params = list(attributors.parameters())

    shard = RankShard(group)

    def batch_loss(index: Tensor, step: int) -> Dict[str, Tensor]:
        return distributed_pretrain_loss(attributors, target, pack, index, groups, classes, probs, config, seed,
                                         step, group=group, shard=shard)

    def validate() -> float:
        return distributed_validation_loss(attributors, target, *val, config=config, batch_size=batch_size,
                                           seed=seed, group=group)

    def global_values(sums: Dict[str, Tensor]) -> Dict[str, float]:
        names = sorted(sums)
        values = torch.stack([sums[k] for k in names])
        dist.all_reduce(values, group=group)
        return dict(zip(names, values.tolist()))

    return run_epochs(attributors, train_index, batch_loss, None if val is None else validate, lr=config.lr,
                      epochs=epochs, batch_size=batch_size, seed=seed, progress=progress and dist.get_rank(group) == 0,
                      desc=f"pretrain ({dist.get_world_size(group)} ranks)",
                      after_backward=lambda: _all_reduce_grads(params, group), epoch_values=global_values)


@torch.no_grad()
def distributed_validation_loss(attributors: StackedAttributors, target: TargetModel, pack: GraphPack,
                                groups: Tensor, classes: Tensor, probs: Tensor, *, config: ReFineConfig,
                                batch_size: int, seed: int, group=None) -> float:
    """:func:`~refine_fast.explain.pretrain.validation_loss` split over the ranks (collective)."""
    index = torch.nonzero(pack.host_num_edges > 0).view(-1)
    total = torch.zeros((), dtype=torch.float64, device=pack.x.device)  # nccl reduces device tensors
    for start in range(0, index.numel(), batch_size):
        chunk = index[start:start + batch_size]
        terms = distributed_pretrain_loss(attributors, target, pack, chunk, groups, classes, probs, config,
                                          seed, 0, "eval", group=group)
        total += terms["loss"].double() * chunk.numel()
    dist.all_reduce(total, group=group)
    return float(total) / max(index.numel(), 1)


def pretrain_refine(refine, dataset: Sequence, epochs: Optional[int] = None, batch_size: Optional[int] = None,
                    seed: int = 0, val_dataset: Optional[Sequence] = None, progress: bool = True,
                    group=None) -> Dict[str, list]:
    """:meth:`ReFine.pretrain <refine_fast.explain.ReFine.pretrain>` of a :class:`~refine_fast.explain.ReFine`
    over the ranks of ``group``: call it on every rank with the same ``dataset`` and arguments."""
    data, options = refine.pretrain_inputs(dataset, epochs, batch_size, val_dataset)
    with refine.target.frozen():
        return distributed_pretrain(refine.attributors, refine.target, *data, refine.config, seed=seed,
                                    progress=progress, group=group, **options)
