"""The explainers of the paper's comparison behind one interface (see :class:`EdgeExplainer`).

``build_explainers(config, ...)`` returns them in table order; ``NOT_RUN`` names the explainers of the
paper that are not run here, with the reason (shown in the tables instead of numbers).
"""
from __future__ import annotations

from typing import Dict, List, Optional

from ..explain import ReFineConfig
from .base import EdgeExplainer, collate, model_kwargs
from .gnnexplainer import GNNExplainer
from .pgexplainer import PGExplainer
from .random import Random
from .refine import TOP_RHO, ReFineExplainer, refine_variants
from .sa import SA

__all__ = ["EdgeExplainer", "Random", "SA", "GNNExplainer", "PGExplainer", "ReFineExplainer", "refine_variants",
           "TOP_RHO", "EXPLAINERS", "NOT_RUN", "build_explainers", "collate", "model_kwargs"]

EXPLAINERS = ["Random", "SA", "GNNExplainer", "PGExplainer", "PGExplainer (refine_fast)", "ReFine-CT", "ReFine-FT", "ReFine",
              TOP_RHO]
"""Every explainer run by the tables, in table order."""

NOT_RUN = {
    "PGM-Explainer": "not run: PyG's contrib PGMExplainer needs pgmpy, which pulls in about 20 packages "
                     "(pandas, scikit-learn, statsmodels, huggingface_hub, ...) absent from this environment; "
                     "its graph-level path also drops edge_attr (and batch) in its first perturbation round, "
                     "so on Mutagenicity and MNIST it would rank nodes by a model run without edge features",
}


def build_explainers(config: ReFineConfig, gnnexplainer_epochs: int = 100, pgexplainer_epochs: int = 30,
                     names: Optional[List[str]] = None) -> Dict[str, object]:
    """``{name: explainer}`` in table order (all of :data:`EXPLAINERS`, or ``names``); the ReFine variants
    share pre-trained attributors where their pre-training is the same."""
    found = {"Random": Random(), "SA": SA(), "GNNExplainer": GNNExplainer(epochs=gnnexplainer_epochs),
             "PGExplainer": PGExplainer(epochs=pgexplainer_epochs)}
    found.update({e.name: e for e in refine_variants(config)})
    names = EXPLAINERS if names is None else names
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"build_explainers: unknown explainer(s) {unknown}, expected some of {EXPLAINERS}")
    return {n: found[n] for n in names}
