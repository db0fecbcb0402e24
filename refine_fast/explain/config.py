"""Hyper-parameters of ReFine in one dataclass, with the paper's per-dataset defaults."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Dict

from ..validation import POSITIVE, RATIO, Spec
from .attributor import BIAS_INIT

__all__ = ["ReFineConfig", "FIELDS"]

CHOICES = {
    "fidelity": ("log", "prob"),
    "reduction": ("mean", "sum"),
    "contrastive": ("reference", "infonce", "paper"),
    "representation": ("auto", "target", "attributor"),
    "explain_norm": ("running", "graph"),
    "pretrain_norm": ("batch", "reference"),
    "bias_init": BIAS_INIT,
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

LEGACY = {"fidelity": "log", "reduction": "mean", "contrastive": "infonce", "representation": "attributor",
          "log2_noise": False, "mask_sigmoid": False, "explain_norm": "running", "train_on": "all",
          "pretrain_norm": "batch", "bias_init": "zeros"}
"""What refine_fast did before these options existed: the values an older explainer file is read with."""


BA3_REFERENCE = {"pretrain_norm": "reference", "explain_norm": "graph", "bias_init": "uniform",
                 "mask_sigmoid": True, "log2_noise": True, "fine_tune_lr": 2e-4,
                 "contrastive": "paper", "representation": "attributor"}
"""What BA-3motif's preset changes in the defaults: the reference code's batch norm (pre-training and
explaining), bias draw, mask hook and noise, its evaluation's fine-tuning lr, and the paper's contrastive
term (Eq. 8, on the attributor's encoder). Measured on the released BA-3motif GNN (bench/RESULTS.md,
"BA-3motif: the reference's batch norm"): without them ReFine scores 0.589, below the reference's 0.637."""


MNIST_FIDELITY = {"fidelity": "log"}
"""What MNIST-sp's preset changes in the defaults: the paper's log-probability fidelity (Eq. 7). Measured on
refine_fast's MNIST-sp GNN (bench/RESULTS.md, "MNIST-sp with its preset"): ReFine scores 0.782 on seed 0 with
it, 0.712 with the probability; 0.777 over 3 seeds."""


@dataclass
class ReFineConfig:
    """Everything ReFine needs besides the target model.

    Pre-training (Eq. 6–8): ``hidden``, ``num_layers``, ``epochs``, ``lr``, ``ratio`` (ρ of the
    contrastive subgraphs), ``gamma`` (γ), ``tau`` (τ of the contrastive term), ``temperature`` (β of
    the concrete sample), ``batch_size``, ``size_coef`` and ``entropy_coef`` (mask regularizers).
    Fine-tuning (Eq. 9–10): ``fine_tune_lr``, ``fine_tune_steps``; the same regularizers.
    ``class_wise=False`` shares one attributor between all classes (the PGExplainer-equivalent).

    Where the paper and the reference code differ (measured effects: bench/RESULTS.md, "Which
    differences matter"; docs/reproducing.md):

    - ``fidelity``: ``'prob'`` (default, the reference code: −f(G⊙M)_ŷ, the probability of the predicted
      class) or ``'log'`` (the paper's Eq. 7, −Σ f(G) log f(G⊙M));
    - ``reduction``: the fidelity over a pre-training batch is summed (``'sum'``, default, the reference) or
      averaged (``'mean'``, the paper's expectation) — it sets the weight of γ and the regularizers;
    - ``contrastive``: ``'infonce'`` (default: InfoNCE, same predicted class = positive),
      ``'reference'`` (the reference code's form, which only pushes representations apart) or
      ``'paper'`` (Eq. 8, softplus of ±hᵢᵀhⱼ); ``representation``: ``'target'`` (the target model's
      ``embed`` of the masked top-ρ subgraph, as the reference), ``'attributor'`` (the attributor's own
      encoder, as Eq. 8) or ``'auto'`` (default: ``'target'`` when the model has ``embed``);
    - ``log2_noise``: logistic noise in log2 units (the reference); ``mask_sigmoid``: a second sigmoid on
      the mask inside the target model (the reference's old PyG hook); ``explain_norm``: batch-norm
      statistics when explaining, the pre-trained ``'running'`` ones (default) or each ``'graph'``'s own
      (the reference, whose attributors stay in training mode); ``pretrain_norm``: batch-norm statistics
      in pre-training, those of the graphs each attributor scores (``'batch'``, default) or the reference
      code's (``'reference'``: every node of the batch, each graph with only its own edges — it amplifies
      the features that edges switch on); ``bias_init``: the attributors' linear biases start at
      ``'zeros'`` (default) or ``'uniform'`` (``torch.nn.Linear``'s draw, the reference's); ``train_on``:
      pre-train on ``'all'`` graphs (default) or only the correctly predicted ones (``'correct'``, the
      reference; needs ``y``).
    The measured effect of each option: docs/reproducing.md ("Faithfulness to the reference
    implementation"), ``bench/ablation.py``.
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
    fidelity: str = "prob"
    reduction: str = "sum"
    contrastive: str = "infonce"
    representation: str = "auto"
    log2_noise: bool = False
    mask_sigmoid: bool = False
    explain_norm: str = "running"
    train_on: str = "all"
    pretrain_norm: str = "batch"
    bias_init: str = "zeros"

    def __post_init__(self):
        for f in fields(self):
            if f.name not in FIELDS:
                raise TypeError(f"ReFineConfig: field {f.name} has no entry in config.FIELDS (its type and range)")
            FIELDS[f.name].check(getattr(self, f.name), f"ReFineConfig: {f.name}")

    @classmethod
    def for_dataset(cls, name: str, **overrides) -> "ReFineConfig":
        """The reference implementation's settings for ``ba3``, ``mnist``, ``mutag`` or ``vg`` (its
        ``run.sh``; Mutagenicity's hidden size is 50, what its training script actually used); BA-3motif's
        also takes :data:`BA3_REFERENCE`, MNIST-sp's :data:`MNIST_FIDELITY`."""
        presets = {
            "ba3": dict(hidden=50, epochs=25, ratio=0.4, lr=1e-4, **BA3_REFERENCE),
            "mnist": dict(hidden=50, epochs=50, ratio=0.2, lr=1e-3, **MNIST_FIDELITY),
            "mutag": dict(hidden=50, epochs=100, ratio=0.4, lr=1e-3),
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
        """Inverse of :meth:`to_dict`; fields missing from ``d`` (files of older versions) get the value
        that reproduces what those versions did (:data:`LEGACY`, else the default); unknown ones raise."""
        if not isinstance(d, dict):
            raise TypeError(f"ReFineConfig.from_dict: expected a dict, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"ReFineConfig.from_dict: unknown field(s) {sorted(unknown)} (written by a newer "
                             f"refine_fast?); known: {[f.name for f in fields(cls)]}")
        return cls(**{**{k: v for k, v in LEGACY.items() if k not in d}, **d})
