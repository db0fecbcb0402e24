"""Hyper-parameters of ReFine in one dataclass, with the paper's per-dataset defaults."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Dict

from ..validation import POSITIVE, RATIO, Spec

__all__ = ["ReFineConfig", "FIELDS"]

CHOICES = {
    "fidelity": ("log", "prob"),
    "reduction": ("mean", "sum"),
    "contrastive": ("reference", "infonce", "paper"),
    "representation": ("target", "attributor"),
    "explain_norm": ("running", "graph"),
    "train_on": ("all", "correct"),
}

FIELDS: Dict[str, Spec] = {
    "hidden": Spec(int, 1),
    "num_layers": Spec(int, 1),
    "epochs": Spec(int, 0),
    "lr": POSITIVE,
    "ratio": RATIO,
    "gamma": Spec(float, 0.0),
    "tau": POSITIVE,
    "temperature": POSITIVE,
    "batch_size": Spec(int, 1),
    "size_coef": Spec(float, 0.0),
    "entropy_coef": Spec(float, 0.0),
    "fine_tune_lr": POSITIVE,
    "fine_tune_steps": Spec(int, 0),
    "class_wise": Spec(bool),
    "log2_noise": Spec(bool),
    "mask_sigmoid": Spec(bool),
    **{name: Spec(str, choices=allowed) for name, allowed in CHOICES.items()},
}
"""Type and range of every :class:`ReFineConfig` field (``Spec(str, choices=...)`` for string options);
a field without an entry is refused."""


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
        for f in fields(self):
            if f.name not in FIELDS:
                raise TypeError(f"ReFineConfig: field {f.name} has no entry in config.FIELDS (its type and range)")
            FIELDS[f.name].check(getattr(self, f.name), f"ReFineConfig: {f.name}")

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
        """Inverse of :meth:`to_dict`; fields missing from ``d`` (files of older versions) get their
        defaults, unknown ones raise."""
        if not isinstance(d, dict):
            raise TypeError(f"ReFineConfig.from_dict: expected a dict, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"ReFineConfig.from_dict: unknown field(s) {sorted(unknown)} (written by a newer "
                             f"refine_fast?); known: {[f.name for f in fields(cls)]}")
        return cls(**d)
