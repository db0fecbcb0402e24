"""The paper's evaluation of ReFine: ReFine-FT uses one explanation for every ρ; ReFine is
fine-tuned separately at each ρ and scored by ACC@ρ of the explanation made for that ρ."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from torch import Tensor
from tqdm.auto import tqdm

from .metrics import DEFAULT_RATIOS, EvalGraphs, acc_at_ratio, edge_auroc, recall_at_n
from .validation import EXPLAIN_ARGS, as_graph_list, check_args, check_int, check_ratios

__all__ = ["evaluate_refine", "ground_truth_metrics"]


def ground_truth_metrics(graphs: EvalGraphs, importances: Sequence[Tensor], n: int = 5) -> Dict[str, float]:
    """Recall@N with its ceiling and the edge AUROCs, or ``{}`` when the graphs have no ``edge_gt``."""
    if graphs.edge_gt is None or not bool(graphs.edge_gt.any()):
        return {}
    recall = recall_at_n(graphs, importances, n)
    auroc = edge_auroc(graphs, importances)
    return {f"recall@{n}": recall["recall"], f"recall@{n}_ceiling": recall["ceiling"],
            "auroc_per_graph": auroc["auroc_per_graph"], "auroc_pooled": auroc["auroc_pooled"]}


def evaluate_refine(refine, graphs: Sequence, ratios: Sequence[float] = DEFAULT_RATIOS, steps: Optional[int] = None,
                    seed: int = 0, n: int = 5, batch_size: Optional[int] = None, fine_tune: bool = True,
                    progress: bool = False, select: str = "sample") -> Dict[str, object]:
    """ACC@ρ curve, ACC-AUC and ground-truth metrics of ``refine`` on ``graphs`` (already filtered
    to the graphs the model predicts correctly).

    ``fine_tune=False`` scores ReFine-FT (the pre-trained attributors, one explanation for all ρ).
    Otherwise each ρ gets its own fine-tuned explanation (``steps`` steps at ratio ρ, edges picked by
    ``select`` as in :meth:`refine_fast.ReFine.explain`); the
    ground-truth metrics use the explanation fine-tuned at the config's ratio. ``progress`` shows one bar
    of graphs per explanation, labelled with its ρ.
    """
    ratios, n = check_ratios(ratios, "evaluate_refine: ratios"), check_int(n, "evaluate_refine: n", 1)
    check_args("evaluate_refine", EXPLAIN_ARGS, steps=steps, seed=seed, batch_size=batch_size)
    graphs = as_graph_list(graphs, "evaluate_refine: graphs")
    batch = EvalGraphs.of(graphs, **refine.input_checks("evaluate_refine: graphs"))
    model = refine.model
    acc: Dict[float, float] = {}

    def bar(label: str) -> tqdm:
        return tqdm(total=len(graphs), desc=label, unit="graph", disable=not progress, leave=False)

    if not fine_tune:
        with bar("ReFine-FT") as b:
            imps = refine.explain(graphs, steps=0, seed=seed, batch_size=batch_size, progress=b)
        for r in ratios:
            acc[float(r)] = acc_at_ratio(model, batch, imps, float(r))
        gt_imps: List[Tensor] = imps
    else:
        gt_imps = []
        for r in ratios:
            with bar(f"ReFine ρ={float(r):g}") as b:
                imps = refine.explain(graphs, ratio=float(r), steps=steps, seed=seed, batch_size=batch_size,
                                      progress=b, select=select)
            acc[float(r)] = acc_at_ratio(model, batch, imps, float(r))
            if abs(float(r) - refine.config.ratio) < 1e-9:
                gt_imps = imps
        if not gt_imps:
            with bar(f"ReFine ρ={refine.config.ratio:g}") as b:
                gt_imps = refine.explain(graphs, steps=steps, seed=seed, batch_size=batch_size, progress=b,
                                         select=select)
    result: Dict[str, object] = {"acc_auc": sum(acc.values()) / len(acc), "acc": acc, "num_graphs": len(graphs)}
    result.update(ground_truth_metrics(batch, gt_imps, n))
    return result
