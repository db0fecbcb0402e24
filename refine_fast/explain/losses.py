"""Loss terms of ReFine: fidelity (Eq. 7 / 10), mask regularizers, and the contrastive term (Eq. 8)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["fidelity", "mask_entropy", "contrastive"]


def fidelity(target_probs: Tensor, logits: Tensor) -> Tensor:
    """``−Σ_c' f(G)_c' log f(G')_c'`` per graph: ``target_probs [B, C]`` = softmax of the full-graph
    output, ``logits [B, C]`` the output on the masked / selected graph -> ``[B]``."""
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1)


def mask_entropy(m: Tensor, eps: float = 1e-12) -> Tensor:
    """Element-wise binary entropy ``−m log m − (1−m) log(1−m)`` -> same shape as ``m``."""
    return -(m * torch.log(m + eps) + (1 - m) * torch.log(1 - m + eps))


def contrastive(h: Tensor, cls: Tensor, tau: float) -> Tensor:
    """InfoNCE over graph representations ``h [B, H]`` (cosine similarity / τ): for each anchor, graphs
    of the same predicted class ``cls [B]`` are positives, all others negatives; averaged over the
    positives of an anchor, then over anchors that have at least one positive. Gradients flow
    through positives and negatives alike. -> scalar."""
    B = h.size(0)
    z = F.normalize(h, dim=1)
    eye = torch.eye(B, dtype=torch.bool, device=h.device)
    sim = (z @ z.t() / tau).masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (cls.unsqueeze(0) == cls.unsqueeze(1)) & ~eye
    n_pos = pos.sum(1)
    valid = n_pos > 0
    if not bool(valid.any()):
        return h.sum() * 0.0
    per_anchor = log_prob.masked_fill(~pos, 0.0).sum(1)
    return -(per_anchor[valid] / n_pos[valid]).mean()
