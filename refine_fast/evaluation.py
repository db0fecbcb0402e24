"""The paper's per-ρ evaluation: an explainer that fine-tunes at ρ (ReFine) is explained once per ρ and
scored by ACC@ρ of the explanation made for that ρ; any other (ReFine-FT, the baselines) is explained
once for every ρ. :func:`acc_per_ratio` is that protocol for any explainer (the tables use it);
:func:`evaluate_refine` applies it to a :class:`~refine_fast.ReFine`."""
from __future__ import annotations

import math
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .metrics import DEFAULT_RATIOS, EvalGraphs, acc_at_ratio, acc_auc, ground_truth_metrics
from .validation import EXPLAIN_ARGS, as_graph_list, check_args, check_int, check_ratios

__all__ = ["acc_per_ratio", "evaluate_refine"]

Explain = Callable[[Optional[float]], List[Tensor]]


def acc_per_ratio(model: torch.nn.Module, graphs: EvalGraphs, explain: Explain, ratios: Sequence[float],
                  main_ratio: float, per_ratio: bool) -> Tuple[Dict[float, float], List[Tensor], float]:
    """``(acc, main, seconds)``: ACC@ρ ``{ρ: float}`` for every ρ of ``ratios``, the importances for the
    ground-truth metrics (one ``[E_g]`` per graph) and the mean seconds of one timed explanation.

    ``explain(ratio)`` explains ``graphs``. ``per_ratio``: once per ρ (``explain(ρ)``), ACC@ρ of each;
    ``main`` is the explanation made at ``main_ratio`` (made once more, untimed, when ``main_ratio`` is
    not among ``ratios``). Otherwise one explanation (``explain(None)``) serves every ρ and is ``main``."""
    if not per_ratio:
        start = time.perf_counter()
        main = explain(None)
        seconds = time.perf_counter() - start
        return acc_auc(model, graphs, main, ratios)["acc"], main, seconds
    acc: Dict[float, float] = {}
    main, seconds = None, 0.0
    for r in ratios:
        start = time.perf_counter()
        imps = explain(float(r))
        seconds += time.perf_counter() - start
        acc[float(r)] = acc_at_ratio(model, graphs, imps, float(r))
        if math.isclose(float(r), main_ratio):
            main = imps
    if main is None:
        main = explain(main_ratio)
    return acc, main, seconds / len(ratios)


def evaluate_refine(refine, graphs: Sequence, ratios: Sequence[float] = DEFAULT_RATIOS, steps: Optional[int] = None,
                    seed: int = 0, n: int = 5, batch_size: Optional[int] = None, fine_tune: bool = True,
                    progress: bool = False, select: str = "sample") -> Dict[str, object]:
    """ACC@ρ curve, ACC-AUC and ground-truth metrics of ``refine`` on ``graphs`` (already filtered
    to the graphs the model predicts correctly), by :func:`acc_per_ratio`.

    ``fine_tune=False`` scores ReFine-FT (the pre-trained attributors, one explanation for all ρ).
    Otherwise each ρ gets its own fine-tuned explanation (``steps`` steps at ratio ρ, edges picked by
    ``select`` as in :meth:`refine_fast.ReFine.explain`); the ground-truth metrics use the explanation
    fine-tuned at the config's ratio. ``progress`` shows one bar of graphs per explanation, labelled with
    its ρ.
    """
    ratios, n = check_ratios(ratios, "evaluate_refine: ratios"), check_int(n, "evaluate_refine: n", 1)
    check_args("evaluate_refine", EXPLAIN_ARGS, steps=steps, seed=seed, batch_size=batch_size)
    graphs = as_graph_list(graphs, "evaluate_refine: graphs")
    batch = EvalGraphs.of(graphs, **refine.input_checks("evaluate_refine: graphs"))

    def explain(ratio: Optional[float]) -> List[Tensor]:
        label = f"ReFine ρ={ratio:g}" if fine_tune else "ReFine-FT"
        with tqdm(total=len(graphs), desc=label, unit="graph", disable=not progress, leave=False) as bar:
            return refine.explain(graphs, ratio=ratio, steps=steps if fine_tune else 0, seed=seed,
                                  batch_size=batch_size, progress=bar, select=select)

    acc, main, _ = acc_per_ratio(refine.model, batch, explain, ratios, refine.config.ratio, per_ratio=fine_tune)
    result: Dict[str, object] = {"acc_auc": sum(acc.values()) / len(acc), "acc": acc, "num_graphs": len(graphs)}
    result.update(ground_truth_metrics(batch, main, n, model=refine.model))
    return result
