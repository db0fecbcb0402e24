"""Hyper-parameters of ReFine in one dataclass, with the paper's per-dataset defaults."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

__all__ = ["ReFineConfig", "CHOICES"]

CHOICES = {
    "fidelity": ("log", "prob"),
    "reduction": ("mean", "sum"),
    "contrastive": ("reference", "infonce", "paper"),
    "representation": ("target", "attributor"),
    "explain_norm": ("running", "graph"),
    "train_on": ("all", "correct"),
}
"""The allowed values of the string options."""


@dataclass
class ReFineConfig:
    """Everything ReFine needs besides the target model.

    Pre-training (Eq. 6–8): ``hidden``, ``num_layers``, ``epochs``, ``lr``, ``ratio`` (ρ of the
    contrastive subgraphs), ``gamma`` (γ), ``tau`` (τ of the InfoNCE term), ``temperature`` (β of
    the concrete sample), ``batch_size``, ``size_coef`` and ``entropy_coef`` (mask regularizers).
    Fine-tuning (Eq. 9–10): ``fine_tune_lr``, ``fine_tune_steps``; the same regularizers.
    ``class_wise=False`` shares one attributor between all classes (the PGExplainer-equivalent).

    Where the paper and the reference code differ (bench/RESULTS.md, "Which differences matter"):
    ``fidelity`` (``'log'``: Eq. 7, ``'prob'``: −f(G')_ŷ), ``reduction`` of the fidelity over a
    pre-training batch (``'mean'`` or ``'sum'``), ``contrastive`` (``'reference'``, ``'infonce'``,
    ``'paper'``: Eq. 8) and its ``representation`` (``'target'``: the target model's ``embed`` of the
    masked top-ρ subgraph; ``'attributor'``: the attributor's encoder), ``log2_noise`` (logistic noise
    in log2 units), ``mask_sigmoid`` (a second sigmoid on the mask inside the target model),
    ``explain_norm`` (batch-norm statistics when explaining: ``'running'`` or each ``'graph'``'s own),
    ``train_on`` (``'all'`` graphs or only the ``'correct'``ly predicted ones).
    """

    hidden: int = 50
    num_layers: int = 2
    epochs: int = 25
    lr: float = 1e-4
    ratio: float = 0.4
    gamma: float = 5.0
    tau: float = 0.1
    temperature: float = 1.0
    batch_size: int = 256
    size_coef: float = 1e-4
    entropy_coef: float = 1e-2
    fine_tune_lr: float = 1e-4
    fine_tune_steps: int = 20
    class_wise: bool = True
    fidelity: str = "log"
    reduction: str = "mean"
    contrastive: str = "infonce"
    representation: str = "attributor"
    log2_noise: bool = False
    mask_sigmoid: bool = False
    explain_norm: str = "running"
    train_on: str = "all"

    def __post_init__(self):
        for name in ("hidden", "num_layers", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ReFineConfig: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "fine_tune_steps"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"ReFineConfig: {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < float(self.ratio) <= 1.0:
            raise ValueError(f"ReFineConfig: ratio must be in (0, 1], got {self.ratio}")
        for name in ("tau", "temperature", "lr", "fine_tune_lr"):
            if float(getattr(self, name)) <= 0.0:
                raise ValueError(f"ReFineConfig: {name} must be > 0, got {getattr(self, name)}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"ReFineConfig: {name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "ReFineConfig":
        """The reference implementation's settings for ``ba3``, ``mnist``, ``mutag`` or ``vg``."""
        presets = {
            "ba3": dict(hidden=50, epochs=25, ratio=0.4, lr=1e-4),
            "mnist": dict(hidden=50, epochs=50, ratio=0.2, lr=1e-3),
            "mutag": dict(hidden=100, epochs=100, ratio=0.4, lr=1e-3),
            "vg": dict(hidden=250, epochs=100, ratio=0.2, lr=1e-3),
        }
        key = name.lower()
        if key not in presets:
            raise ValueError(f"ReFineConfig.for_dataset: unknown dataset {name!r}, expected one of {sorted(presets)}")
        return cls(**{**presets[key], **overrides})

    def replace(self, **overrides) -> "ReFineConfig":
        """A copy with some fields changed (unknown names raise)."""
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"ReFineConfig: unknown option(s) {sorted(unknown)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict:
        """Plain Python types only (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ReFineConfig":
        return cls(**d)
