"""Batched fine-tuning (paper Eq. 9–10): B instances, each with its own copy of its class's attributor.

The per-instance parameters are stacked ``[B, ...]`` leaf tensors (one Adam over them equals B
independent Adams: Adam is element-wise and every loss term is per graph — means within a graph,
summed over graphs). Batch norm uses the pre-trained running statistics (or each graph's own,
``config.explain_norm='graph'``), so instances never mix. Noise keys are (graph id, edge index in
graph), so a graph's result does not depend on the batch it sits in (up to float rounding when the
padded shapes differ). Instances are laid out in a few size buckets (:func:`.grouped.plan_buckets`),
each padded to its largest graph; edges never cross buckets, so each bucket's attributors run
independently and only the edge probabilities are concatenated.
"""
from __future__ import annotations

import copy
import queue
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import List, Optional, Union

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..ops import segment_select
from .attributor import StackedAttributors, encode, score
from .config import ReFineConfig
from .grouped import PaddedGroups, plan_buckets
from .losses import fidelity_loss, mask_entropy
from .packing import GraphBatch, GraphPack
from .propagate import Propagation, gcn_norm
from .subgraph import explanation_subgraph, subgraph_slots
from .target import TargetModel

__all__ = ["SELECT", "check_select", "fine_tune_batch", "fine_tune", "plan_batches"]

MAX_BUCKETS = 32  # at most this many size buckets per batch on the CPU
GPU_MAX_BUCKETS = 4
"""On CUDA every bucket's small ops are kernel launches on one stream: a few wide buckets beat many
tight ones (and batches are size-contiguous, see :func:`plan_batches`, so little padding is lost)."""
BUCKET_COST = 1e6
"""The per-step overhead of one more size bucket (a few dozen more small ops) in padded node rows × H²
(a padded row costs ∝ H² in the attributor's matmuls): :func:`.grouped.plan_buckets` keeps a split
where it saves more padding than this. E.g. 200 Mutagenicity graphs (8–367 nodes, H = 100): 10 buckets,
1.1× padding (at most 4 buckets: 1.4×)."""

SELECT = ("sample", "top")
"""How a fine-tuning step picks its ρ·|E| edges: ``'sample'`` draws them without replacement by their
probabilities (paper Eq. 9, the default); ``'top'`` takes the ρ·|E| most probable edges, as the
reference implementation does."""


def check_select(select: str, caller: str) -> bool:
    """``True`` for ``'sample'`` (stochastic), ``False`` for ``'top'``; anything else raises, naming ``caller``."""
    if select not in SELECT:
        raise ValueError(f"{caller}: select must be one of {SELECT}, got {select!r}")
    return select == "sample"


class _Bucket:
    """Graphs ``g0..g1-1`` of a batch in the padded layout, with their own parameter copies."""

    def __init__(self, attributors: StackedAttributors, b: GraphBatch, groups: Tensor, g0: int, g1: int, M: int,
                 bn_mode: str = "eval"):
        device = b.x.device
        n0, n1 = int(b.host_node_ptr[g0]), int(b.host_node_ptr[g1])
        e0, e1 = int(b.host_edge_ptr[g0]), int(b.host_edge_ptr[g1])
        B = g1 - g0
        self.params, self.stats = attributors.gather(groups[g0:g1])
        dtype = self.params["lin_weight"].dtype
        node_graph = b.batch[n0:n1] - g0
        pos = node_graph * M + (torch.arange(n0, n1, device=device) - b.node_ptr[g0:g1][node_graph])
        self.x = torch.zeros(B * M, b.x.size(1), dtype=dtype, device=device).index_copy(0, pos, b.x[n0:n1].to(dtype))
        self.edge_index = pos[b.edge_index[:, e0:e1] - n0]  # padded node ids within the bucket
        self.norm = Propagation(self.edge_index, gcn_norm(self.edge_index, B * M, dtype=dtype), B * M)
        self.nodes = PaddedGroups(B, M, sizes=b.node_ptr[g0 + 1:g1 + 1] - b.node_ptr[g0:g1])
        self.bn_mode = bn_mode
        self.edge_group = b.edge_batch[e0:e1] - g0
        self.edge_attr, self.edges = None, None
        if attributors.edge_dim > 0:
            Me = int(b.host_edge_ptr[g0 + 1:g1 + 1].sub(b.host_edge_ptr[g0:g1]).max())
            edge_pos = self.edge_group * Me + (torch.arange(e0, e1, device=device) - b.edge_ptr[g0:g1][self.edge_group])
            self.edge_attr = b.edge_attr[e0:e1]
            self.edges = PaddedGroups(B, Me, rows=edge_pos)

    def scores(self) -> Tensor:
        z = encode(self.params, self.stats, self.x, self.edge_index, self.norm, self.nodes, self.bn_mode)
        return score(self.params, z, self.edge_index, self.edge_attr, self.nodes, self.edges, self.edge_group)


def fine_tune_batch(attributors: StackedAttributors, target: TargetModel, pack: GraphPack, index: Tensor,
                    groups: Tensor, probs: Tensor, config: ReFineConfig, *, ratio: float,
                    steps: int, lr: float, seed: int, select: str = "sample") -> Tensor:
    """Fine-tune graphs ``index`` of ``pack`` (every one with >= 1 edge) together.

    ``groups [len(pack)]`` picks each graph's attributor, ``probs [len(pack), C]`` its full-graph softmax.
    Each step: scores α -> p = σ(α) -> ``segment_select`` of ρ·|E_g| edges (``select``: ``'sample'``
    stochastic by p with noise step t, ``'top'`` the most probable; see :data:`SELECT`) -> target model on
    the selected edges (edge mask = their p; nodes left without edges dropped, as in ACC@ρ) ->
    Eq. 10 + size / entropy regularizers per graph -> one Adam step on all instances.
    Returns the final edge probabilities ``[E_batch]`` (after the last step), graphs in ``index`` order.
    """
    b = pack.take(index)
    B = b.num_graphs
    empty = torch.nonzero(b.host_edge_ptr.diff() == 0).view(-1)  # host offsets: no device read
    if empty.numel():
        raise ValueError(f"fine_tune_batch: graph {int(index.cpu()[empty[0]])} of the pack has no edges; "
                         f"fine_tune skips such graphs, fine_tune_batch expects each to have >= 1 edge")
    group_b = groups[index]
    sizes = b.host_node_ptr.diff().tolist()
    max_buckets = GPU_MAX_BUCKETS if b.x.device.type == "cuda" else MAX_BUCKETS
    plan = plan_buckets(sizes, max_buckets, BUCKET_COST / attributors.hidden ** 2)
    bn_mode = "eval" if config.explain_norm == "running" else "graph"
    buckets = [_Bucket(attributors, b, group_b, g0, g1, M, bn_mode) for g0, g1, M in plan]
    target_probs = probs[index]
    dtype = target_probs.dtype
    inv_count = 1.0 / b.edge_ptr.diff().to(dtype)
    stochastic = check_select(select, "fine_tune_batch")
    # sizes of every step's subgraph, known on the host (no sync in the step)
    slots = subgraph_slots(b.host_node_ptr, b.host_edge_ptr, float(ratio))

    def edge_probs() -> Tensor:
        alpha = [bucket.scores() for bucket in buckets]
        return torch.sigmoid(alpha[0] if len(alpha) == 1 else torch.cat(alpha))

    if steps > 0:
        opt = torch.optim.Adam([p for bucket in buckets for p in bucket.params.values()], lr=lr, fused=True)
        for t in range(steps):
            p = edge_probs()
            selected = segment_select(p.detach(), b.edge_ptr, ratio, b.key, seed, t, stochastic=stochastic)
            sub = explanation_subgraph(b, selected, slots)  # fixed shapes: no host sync in the step
            logits = target(sub.x, sub.edge_index, sub.batch, sub.num_graphs, sub.edge_attr,
                            edge_mask=p.index_select(0, sub.edges), mask_sigmoid=config.mask_sigmoid)[:B]
            reg = config.size_coef * p + config.entropy_coef * mask_entropy(p)
            reg_graph = p.new_zeros(B).index_add(0, b.edge_batch, reg) * inv_count
            loss = (fidelity_loss(target_probs, logits, config.fidelity) + reg_graph).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return edge_probs()


def plan_batches(work: Tensor, batch_size: int, workers: int, contiguous: bool) -> List[Tensor]:
    """Split ``work [N]`` (graph positions sorted by size) into at least ``workers`` batches of at most
    ``batch_size``. ``contiguous=False`` (the CPU default) deals them round-robin, so concurrent
    batches carry equal loads; ``contiguous=True`` (CUDA: one worker) keeps each batch a run of similar
    sizes, which needs the fewest padded rows and buckets."""
    n = max(-(-work.numel() // batch_size), workers) if work.numel() else 0
    if contiguous:
        return list(torch.tensor_split(work, n)) if n else []
    return [work[k::n] for k in range(n)]


def fine_tune(attributors: StackedAttributors, target: TargetModel, pack: GraphPack, groups: Tensor,
              probs: Tensor, config: ReFineConfig, *, ratio: float, steps: int, lr: float, seed: int,
              batch_size: int, progress: Union[bool, tqdm] = True, index: Optional[Tensor] = None, workers: int = 1,
              select: str = "sample") -> List[Tensor]:
    """Explain graphs ``index`` of ``pack`` (default: all) in batches of at most ``batch_size``.

    Graphs are sorted by size and split into batches by :func:`plan_batches` (round-robin on the CPU,
    size-contiguous on CUDA), each then bucketed by size inside :func:`fine_tune_batch`. With
    ``workers > 1`` that many batches run concurrently in threads, each with one intra-op thread and
    its own copy of the target model (PyG's edge masks live on the model's layers); results do not
    depend on ``batch_size`` or ``workers`` beyond float rounding.
    Returns one ``[E_g]`` tensor of edge probabilities per graph in ``index`` order; graphs without
    edges get an empty tensor. ``steps = 0`` returns the pre-trained attributor's probabilities (ReFine-FT).
    ``select`` as in :func:`fine_tune_batch`. ``progress``: a bar of graphs done, or a ``tqdm`` bar to
    advance by the graphs done (e.g. one bar over many calls).
    """
    check_select(select, "fine_tune")
    if index is None:
        index = torch.arange(len(pack), device=pack.x.device)
    out: List[Optional[Tensor]] = [None] * index.numel()
    has_edges = pack.num_edges[index] > 0
    dtype = attributors.lin_weight.dtype
    for i in torch.nonzero(~has_edges).view(-1).tolist():
        out[i] = torch.zeros(0, dtype=dtype, device=pack.x.device)
    work = torch.nonzero(has_edges).view(-1).cpu()
    work = work[torch.argsort(pack.host_num_nodes[index[work].cpu()], stable=True)]
    workers = max(1, min(int(workers), work.numel()))
    chunks = plan_batches(work, batch_size, workers, contiguous=pack.x.device.type == "cuda")
    chunks = [c.to(index.device) for c in chunks]
    attributors.eval()

    def run(chunk: Tensor, model_target: TargetModel) -> None:
        with torch.enable_grad():
            p = fine_tune_batch(attributors, model_target, pack, index[chunk], groups, probs, config,
                                ratio=ratio, steps=steps, lr=lr, seed=seed, select=select)
        for i, part in zip(chunk.tolist(), torch.split(p, pack.num_edges[index[chunk]].tolist())):
            out[i] = part

    bar = tqdm(total=index.numel(), desc="explain", unit="graph", disable=not progress, leave=False) \
        if isinstance(progress, bool) else progress
    bar.update(index.numel() - work.numel())  # graphs without edges are done
    try:
        if workers == 1:
            for chunk in chunks:
                run(chunk, target)
                bar.update(chunk.numel())
        else:
            threads = torch.get_num_threads()
            targets = [TargetModel(copy.deepcopy(target.model), target.use_edge_attr) for _ in range(workers)]
            slots: "queue.Queue[TargetModel]" = queue.Queue()
            for t in targets:
                slots.put(t)

            def job(chunk: Tensor) -> None:
                torch.set_num_threads(1)
                t = slots.get()
                try:
                    run(chunk, t)
                finally:
                    slots.put(t)

            try:
                torch.set_num_threads(1)
                with ThreadPoolExecutor(workers) as pool:
                    futures = {pool.submit(job, c): c.numel() for c in chunks}
                    for f in as_completed(futures):
                        f.result()
                        bar.update(futures[f])
            finally:
                torch.set_num_threads(threads)
    finally:
        if bar is not progress:
            bar.close()
    return out  # type: ignore[return-value]
