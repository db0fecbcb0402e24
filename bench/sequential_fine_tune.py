"""Baseline: ReFine fine-tuning one graph at a time in plain PyTorch, as the reference implementation.

For every graph: deep-copy its class's attributor (an ``nn.Module`` built from one group of the
stacked attributors), Adam over all its parameters, ``steps`` steps of score -> sigmoid ->
stochastic top-ρ selection -> target model on the selected subgraph -> loss -> step. Same math and
noise as :func:`refine_fast.explain.fine_tune` for the ``ReFineConfig`` options it takes (``fidelity``,
``explain_norm``: eval-mode batch norm or the graph's own statistics, i.e. training mode, ``mask_sigmoid``),
so the results agree; only the execution differs (a Python loop over graphs, module calls, ``torch.cat``
MLP input).
"""
from __future__ import annotations

import copy
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.explain.algorithm.utils import clear_masks, set_masks

from refine_fast.explain import StackedAttributors
from refine_fast.explain.packing import KEY_STRIDE
from refine_fast.ops import segment_select_reference

__all__ = ["Attributor", "config_options", "sequential_fine_tune"]


class Attributor(nn.Module):
    """One attributor as ordinary modules, initialized from group ``g`` of ``stacked``."""

    def __init__(self, stacked: StackedAttributors, g: int):
        super().__init__()
        D, De, H, L = stacked.node_dim, stacked.edge_dim, stacked.hidden, stacked.num_layers
        p, s = stacked.params(), stacked.stats()
        self.lin = nn.Linear(D, H)
        self.prop = nn.ModuleList(nn.Linear(H, H, bias=False) for _ in range(L))
        self.root = nn.ModuleList(nn.Linear(H, H) for _ in range(L))
        self.bns = nn.ModuleList(nn.BatchNorm1d(H) for _ in range(L))
        self.head = nn.Linear(2 * H + De, H)
        self.out = nn.Linear(H, 1)
        with torch.no_grad():
            self.lin.weight.copy_(p["lin_weight"][g].t())
            self.lin.bias.copy_(p["lin_bias"][g])
            for l in range(L):
                W = p[f"conv{l}_weight"][g]
                self.prop[l].weight.copy_(W[:, :H].t())
                self.root[l].weight.copy_(W[:, H:].t())
                self.root[l].bias.copy_(p[f"conv{l}_bias"][g])
                bn = self.bns[l]
                bn.weight.copy_(p[f"bn{l}_weight"][g])
                bn.bias.copy_(p[f"bn{l}_bias"][g])
                bn.running_mean.copy_(s[f"bn{l}_mean"][g])
                bn.running_var.copy_(s[f"bn{l}_var"][g])
            first = [p["head_weight"][g][:, :H], p["head_weight"][g][:, H:]]
            if De:
                first.append(p["head_edge_weight"][g])
            self.head.weight.copy_(torch.cat(first).t())
            self.head.bias.copy_(p["head_bias"][g])
            self.out.weight.copy_(p["out_weight"][g].view(1, H))
            self.out.bias.copy_(p["out_bias"][g].view(1))
        self.to(p["lin_weight"].dtype)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr=None) -> Tensor:
        src, dst = edge_index
        deg = torch.zeros(x.size(0), dtype=x.dtype).index_add(0, dst, torch.ones(src.numel(), dtype=x.dtype))
        inv = torch.where(deg > 0, deg.clamp_min(1).rsqrt(), torch.zeros_like(deg))
        norm = (inv[src] * inv[dst]).unsqueeze(1)
        h = F.relu(self.lin(x))
        for prop, root, bn in zip(self.prop, self.root, self.bns):
            m = prop(h)
            h = F.relu(torch.zeros_like(m).index_add(0, dst, m[src] * norm) + root(h))
            h = bn(h)
        pair = [h[src], h[dst]] + ([edge_attr.to(h.dtype)] if edge_attr is not None and self.head.in_features > 2 * h.size(1) else [])
        return self.out(torch.tanh(self.head(torch.cat(pair, 1)))).view(-1)


def config_options(config) -> dict:
    """Keyword arguments of :func:`sequential_fine_tune`: the fine-tuning options of a ``ReFineConfig`` it
    follows (all but the lr)."""
    return dict(ratio=config.ratio, size_coef=config.size_coef, entropy_coef=config.entropy_coef,
                fidelity=config.fidelity, explain_norm=config.explain_norm, mask_sigmoid=config.mask_sigmoid)


def sequential_fine_tune(stacked: StackedAttributors, model: nn.Module, graphs: Sequence, classes: Sequence[int],
                         ratio: float = 0.4, steps: int = 20, lr: float = 1e-4, seed: int = 0,
                         size_coef: float = 1e-4, entropy_coef: float = 1e-2, use_edge_attr: bool = False,
                         fidelity: str = "log", explain_norm: str = "running",
                         mask_sigmoid: bool = False) -> List[Tensor]:
    """Final edge probabilities ``[E_g]`` for each graph (``classes[i]`` selects the attributor group).
    ``fidelity``, ``explain_norm``, ``mask_sigmoid``: as the ``ReFineConfig`` fields."""
    if fidelity not in ("log", "prob") or explain_norm not in ("running", "graph"):
        raise ValueError(f"sequential_fine_tune: fidelity {fidelity!r} / explain_norm {explain_norm!r} not supported")
    model.eval()
    flags = [(q, q.requires_grad) for q in model.parameters()]
    for q, _ in flags:  # the model is a frozen black box, as in the batched engine
        q.requires_grad_(False)
    try:
        return _run(stacked, model, graphs, classes, ratio, steps, lr, seed, size_coef, entropy_coef, use_edge_attr,
                    fidelity, explain_norm, mask_sigmoid)
    finally:
        for q, flag in flags:
            q.requires_grad_(flag)


def _run(stacked, model, graphs, classes, ratio, steps, lr, seed, size_coef, entropy_coef, use_edge_attr,
         fidelity, explain_norm, mask_sigmoid):
    bases = {}
    out = []
    for gid, (g, c) in enumerate(zip(graphs, classes)):
        c = int(c) if stacked.groups > 1 else 0
        if c not in bases:
            bases[c] = Attributor(stacked, c).eval()
        att = copy.deepcopy(bases[c])
        # the graph's own statistics = training-mode batch norm; one node has no spread: running statistics
        att.train(explain_norm == "graph" and g.num_nodes > 1)
        x = g.x.to(att.lin.weight.dtype)
        ea = getattr(g, "edge_attr", None)
        kw = {"edge_attr": ea} if use_edge_attr else {}
        E = g.edge_index.size(1)
        batch = torch.zeros(g.num_nodes, dtype=torch.long)
        with torch.no_grad():
            target = torch.softmax(model(g.x, g.edge_index, batch=batch, **kw), -1)
        key = gid * KEY_STRIDE + torch.arange(E)
        ptr = torch.tensor([0, E])
        opt = torch.optim.Adam(att.parameters(), lr=lr)
        for t in range(steps):
            p = torch.sigmoid(att(x, g.edge_index, ea))
            sel = segment_select_reference(p.detach(), ptr, ratio, key, seed, t, stochastic=True)
            ei = g.edge_index[:, sel]
            keep = torch.zeros(g.num_nodes, dtype=torch.bool)
            keep[ei.reshape(-1)] = True
            new_id = torch.cumsum(keep, 0) - 1
            sub_ei = new_id[ei]
            sub_kw = {"edge_attr": ea[sel]} if use_edge_attr else {}
            set_masks(model, p[sel], sub_ei, apply_sigmoid=mask_sigmoid)
            logits = model(g.x[keep], sub_ei, batch=torch.zeros(int(keep.sum()), dtype=torch.long), **sub_kw)
            clear_masks(model)
            if fidelity == "log":
                fid = -(target * F.log_softmax(logits, -1)).sum()
            else:  # the probability of the full graph's predicted class
                fid = -torch.softmax(logits, -1)[0, target.argmax()]
            ent = -(p * torch.log(p + 1e-12) + (1 - p) * torch.log(1 - p + 1e-12))
            loss = fid + (size_coef * p + entropy_coef * ent).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out.append(torch.sigmoid(att(x, g.edge_index, ea)))
    return out
