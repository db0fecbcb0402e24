"""Loss terms of ReFine: fidelity (Eq. 7 / 10), mask regularizers, and the contrastive term (Eq. 8)
in the three forms :class:`~refine_fast.ReFineConfig` offers."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FIDELITY_FORMS", "CONTRASTIVE_FORMS", "fidelity_loss", "mask_entropy", "contrastive_loss"]

FIDELITY_FORMS = ("log", "prob")
CONTRASTIVE_FORMS = ("reference", "infonce", "paper")


def fidelity_loss(target_probs: Tensor, logits: Tensor, form: str = "log") -> Tensor:
    """Per-graph fidelity loss ``[B]``: ``target_probs [B, C]`` = softmax of the full-graph output,
    ``logits [B, C]`` the output on the masked / selected graph.

    ``'log'``: ``−Σ_c' f(G)_c' log f(G')_c'`` (the paper's Eq. 7 / 10, cross-entropy with soft targets);
    ``'prob'``: ``−f(G')_ŷ``, the probability of the full graph's predicted class ŷ (the reference code)."""
    if form == "log":
        return F.cross_entropy(logits, target_probs, reduction="none")
    if form == "prob":
        pred = target_probs.argmax(-1, keepdim=True)
        return -torch.softmax(logits, dim=-1).gather(1, pred).squeeze(1)
    raise ValueError(f"fidelity_loss: form must be one of {FIDELITY_FORMS}, got {form!r}")


def mask_entropy(m: Tensor, eps: float = 1e-12) -> Tensor:
    """Element-wise binary entropy ``−m log m − (1−m) log(1−m)`` -> same shape as ``m``."""
    return -(m * torch.log(m + eps) + (1 - m) * torch.log(1 - m + eps))


def _reference(h: Tensor, same: Tensor, tau: float) -> Tensor:
    # cosine similarities clipped at 0; each graph's share of similarity to its own class, the share
    # itself held constant (only the total similarity carries gradient, as in the reference code)
    z = F.normalize(h, dim=1)
    sim = F.relu(z @ z.t())
    total = sim.sum(1)
    share = (sim * same).sum(1).detach()
    return -torch.logsumexp(share / (tau * total), dim=0)


def _infonce(h: Tensor, same: Tensor, tau: float) -> Tensor:
    B = h.size(0)
    eye = torch.eye(B, dtype=torch.bool, device=h.device)
    z = F.normalize(h, dim=1)
    sim = (z @ z.t() / tau).masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = same & ~eye
    n_pos = pos.sum(1)
    valid = n_pos > 0
    per_anchor = log_prob.masked_fill(~pos, 0.0).sum(1)
    # anchors without a positive contribute nothing (a 0 * h term keeps the graph connected)
    return -torch.where(valid, per_anchor / n_pos.clamp_min(1), h.new_zeros(())).sum() / valid.sum().clamp_min(1)


def _paper(h: Tensor, same: Tensor) -> Tensor:
    B = h.size(0)
    off = ~torch.eye(B, dtype=torch.bool, device=h.device)
    sim = h @ h.t()
    pair = torch.where(same, F.softplus(-sim), F.softplus(sim))
    return pair[off].mean() if B > 1 else h.sum() * 0.0


def contrastive_loss(h: Tensor, cls: Tensor, tau: float, form: str = "reference") -> Tensor:
    """Contrastive term over graph representations ``h [B, H]`` of the top-ρ subgraphs, ``cls [B]``
    their predicted classes (same class = positive pair) -> scalar.

    ``'reference'``: ``−logsumexp_i(s_i⁺ / (τ·s_i))`` with ``s_i`` the sum of ReLU'd cosine similarities of
    graph i to all graphs and ``s_i⁺`` (held constant) the part to graphs of its class — what the reference
    code optimizes; its gradient lowers the similarity of each graph to all others.
    ``'infonce'``: InfoNCE (cosine / τ), averaged over the positives of each anchor, then over anchors that
    have one. ``'paper'``: the paper's Eq. 8, mean over ordered pairs of ``softplus(−h_iᵀh_j)`` (same
    class) or ``softplus(h_iᵀh_j)`` (different classes); τ unused."""
    same = cls.unsqueeze(0) == cls.unsqueeze(1)
    if form == "reference":
        return _reference(h, same, tau)
    if form == "infonce":
        return _infonce(h, same, tau)
    if form == "paper":
        return _paper(h, same)
    raise ValueError(f"contrastive_loss: form must be one of {CONTRASTIVE_FORMS}, got {form!r}")
