"""The explainers of the paper's comparison behind one interface (see :class:`EdgeExplainer`).

``build_explainers(config, ...)`` returns them in table order; ``not_run()`` names the explainers of the
paper that cannot run in this environment, with the reason (shown in the tables instead of numbers).
"""
from __future__ import annotations

from typing import Dict, List, Optional

from ..explain import ReFineConfig
from .base import EdgeExplainer
from .gnnexplainer import GNNExplainer
from .pgexplainer import PGExplainer
from .pgm import INSTALL_HINT, PGMExplainer, has_pgmpy
from .random import Random
from .refine import TOP_RHO, ReFineExplainer, refine_variants
from .sa import SA

__all__ = ["EdgeExplainer", "Random", "SA", "GNNExplainer", "PGExplainer", "PGMExplainer", "ReFineExplainer",
           "refine_variants", "TOP_RHO", "EXPLAINERS", "not_run", "build_explainers"]

EXPLAINERS = ["Random", "SA", "GNNExplainer", "PGExplainer", "PGExplainer (refine_fast)", "PGM-Explainer",
              "ReFine-CT", "ReFine-FT", "ReFine", TOP_RHO]
"""Every explainer run by the tables, in table order."""


def not_run() -> Dict[str, str]:
    """``{name: reason}`` for the explainers of :data:`EXPLAINERS` this environment cannot run."""
    return {} if has_pgmpy() else {"PGM-Explainer": f"not run: pgmpy is not installed ({INSTALL_HINT})"}


def build_explainers(config: ReFineConfig, gnnexplainer_epochs: int = 100, pgexplainer_epochs: int = 30,
                     names: Optional[List[str]] = None) -> Dict[str, object]:
    """``{name: explainer}`` in table order (``names``, or all of :data:`EXPLAINERS` that
    :func:`not_run` does not exclude); the ReFine variants share pre-trained attributors where their
    pre-training is the same."""
    found = {"Random": Random(), "SA": SA(), "GNNExplainer": GNNExplainer(epochs=gnnexplainer_epochs),
             "PGExplainer": PGExplainer(epochs=pgexplainer_epochs), "PGM-Explainer": PGMExplainer()}
    found.update({e.name: e for e in refine_variants(config)})
    skipped = not_run()
    names = [n for n in EXPLAINERS if n not in skipped] if names is None else names
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"build_explainers: unknown explainer(s) {unknown}, expected some of {EXPLAINERS}")
    missing = {n: why for n, why in skipped.items() if n in names}
    if missing:
        raise ImportError(f"build_explainers: {missing}")
    return {n: found[n] for n in names}
