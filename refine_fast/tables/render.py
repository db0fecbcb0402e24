"""Rendering Tables 2–4 as Markdown from a :func:`refine_fast.tables.run_tables` report (``tables.json``)."""
from __future__ import annotations

import math
from typing import Dict, Optional

from ..baselines import EXPLAINERS, TOP_RHO

__all__ = ["render_tables"]


def _fmt(stat: Optional[Dict], digits: int = 3, seeds: int = 1) -> str:
    """``mean ± std``; a cell with fewer than ``seeds`` results says how many it has."""
    if not stat or stat["n"] == 0:
        return "–"
    text = f"{stat['mean']:.{digits}f}" if stat["n"] == 1 else f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return text + (f" ({stat['n']} of {seeds} seeds)" if stat["n"] < seeds else "")


def _seconds(v: float) -> str:
    return f"{v:.2e}" if v < 1e-3 else f"{v:.4f}" if v < 1 else f"{v:.2f}"


def _checks(entry: Dict) -> str:
    """Plain statement of the paper's claims on one dataset: ReFine beats every baseline, and
    ReFine ≥ ReFine-FT ≥ PGExplainer (both PGExplainers) on ACC-AUC; with the ground truth the model needs,
    ReFine's edge AUROC there ≥ ReFine-CT's."""
    auc = {n: v["acc_auc"]["mean"] for n, v in entry["summary"].items()}
    if "ReFine" not in auc:
        return ""
    baselines = [n for n in ("Random", "SA", "GNNExplainer", "PGExplainer", "PGExplainer (refine_fast)",
                             "PGM-Explainer") if n in auc]
    beaten_by = [n for n in baselines if auc[n] > auc["ReFine"]]
    parts = [f"{entry['title']}: ReFine " + ("has no baseline to beat here" if not baselines
                                             else "beats every baseline" if not beaten_by
                                             else "is beaten by " + ", ".join(beaten_by))]
    pairs = [("ReFine", "ReFine-FT"), ("ReFine-FT", "PGExplainer"), ("ReFine-FT", "PGExplainer (refine_fast)")]
    pairs = [(a, b) for a, b in pairs if a in auc and b in auc]
    if pairs:
        broken = [f"{a} < {b}" for a, b in pairs if auc[a] < auc[b]]
        parts.append("ReFine ≥ ReFine-FT ≥ PGExplainer " + ("holds" if not broken else "fails: " + ", ".join(broken)))
    needed = {n: entry["summary"].get(n, {}).get("auroc_needed", {}).get("mean") for n in ("ReFine", "ReFine-CT")}
    if all(v is not None and not math.isnan(v) for v in needed.values()):
        parts.append("edge AUROC on the graphs that need their ground truth: ReFine ≥ ReFine-CT "
                     + ("holds" if needed["ReFine"] >= needed["ReFine-CT"] else "fails"))
    return "; ".join(parts) + "."


def render_tables(report: Dict) -> Dict[str, str]:
    """The three Markdown tables of a :func:`run_tables` report."""
    dss = list(report["datasets"])
    titles = [report["datasets"][d]["title"] for d in dss]
    s = report["settings"]
    m = report["machine"]
    seeds_txt = f"mean ± std over {s['seeds']} seeds" if s["seeds"] > 1 else "1 seed"
    quick_txt = " **Quick mode** (smoke-test settings, not the paper comparison)." if s["quick"] else ""
    if not s.get("complete", True):
        quick_txt += (" **Partial**: rendered from the results finished so far; '–' = not computed yet, and "
                      "a cell with fewer seeds says so.")
    counts = "; ".join(f"{e['title']}: {e['evaluated']} of {e['correct']} correctly predicted "
                       f"({e['test_graphs']} test graphs)" for e in report["datasets"].values())
    skipped = report.get("not_run", {})
    names = [n for n in EXPLAINERS if n in skipped or any(n in report["datasets"][d]["summary"] for d in dss)]

    # Table 2
    lines = ["# Table 2 — ACC-AUC (and ground-truth recall, edge AUROC)", "",
             f"ACC-AUC = mean ACC@ρ over ρ ∈ {{0.1, …, 1.0}}, {seeds_txt}.{quick_txt} Graphs: {counts}.", ""]
    cols = []
    for d in dss:
        e = report["datasets"][d]
        cols.append((d, "acc_auc", f"{e['title']} ACC-AUC"))
        if e.get("recall_n"):
            cols.append((d, "recall", f"{e['title']} Recall@{e['recall_n']}"))
        if any(not math.isnan(v["auroc"]["mean"]) for v in e["summary"].values()):
            cols.append((d, "auroc", f"{e['title']} edge AUROC (per graph)"))
        if any(v.get("auroc_needed", {}).get("n") for v in e["summary"].values()):
            cols.append((d, "auroc_needed", f"{e['title']} edge AUROC, graphs that need their ground truth²"))
    lines.append("| Explainer | " + " | ".join(c[2] for c in cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for n in names:
        if n in skipped:
            lines.append(f"| {n} | " + " | ".join("not run¹" for _ in cols) + " |")
            continue
        cells = [_fmt(report["datasets"][d]["summary"].get(n, {}).get(k), seeds=s["seeds"]) for d, k, _ in cols]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    ceilings = [f"{report['datasets'][d]['title']} Recall@{report['datasets'][d]['recall_n']} ceiling "
                f"(mean min(N, |gt|)/|gt|) = {_fmt(next(iter(report['datasets'][d]['summary'].values()))['recall_ceiling'])}"
                for d in dss if report["datasets"][d].get("recall_n") and report["datasets"][d]["summary"]]
    lines += [""] + ([f"Recall ceilings: {'; '.join(ceilings)}.", ""] if ceilings else [])
    needed = []
    for d, k, _ in cols:  # the count depends on the model and graphs only: any explainer's will do
        if k == "auroc_needed":
            num_needed = next(v["graphs_needed"]["mean"] for v in report["datasets"][d]["summary"].values()
                              if v.get("graphs_needed", {}).get("n"))
            needed.append(f"{report['datasets'][d]['title']} {num_needed:.0f}")
    if needed:
        lines += [f"² Over the evaluated graphs whose prediction changes when their ground-truth edges are removed "
                  f"(`refine_fast.metrics.needs_ground_truth`): {'; '.join(needed)} graphs. On the others the "
                  "model does not use the ground truth, so a faithful explanation need not find it.", ""]
    lines += [f"¹ {n}: {why}." for n, why in skipped.items()] + ([""] if skipped else [])
    lines += [f"ReFine, {TOP_RHO} and ReFine-CT are fine-tuned separately for each ρ (ACC@ρ of the explanation made "
              "at ρ); their recall and AUROC use the explanation at the dataset's pre-training ρ. ReFine-FT, "
              "PGExplainer and the other explainers give one explanation for all ρ. Random = uniform random "
              "importances (chance level). "
              "PGExplainer (refine_fast) = ReFine with one attributor shared by all classes, no contrastive "
              "term, no fine-tuning. ReFine samples the ρ·|E| edges of each fine-tuning step by their "
              f"probabilities (paper Eq. 9); {TOP_RHO} takes the top-ρ edges at each step instead, as the "
              "reference implementation does (same pre-trained attributors). PGM-Explainer = PyG's contrib "
              "PGMExplainer (100 perturbation samples per round); its node p-values p give edge (u, v) the "
              "importance 1 − p_u·p_v, the reference code's node-to-edge rule."]
    lines += ["", "Checks (means): " + " ".join(_checks(report["datasets"][d]) for d in dss)]
    table2 = "\n".join(lines) + "\n"

    # Table 3
    fine_tuned = [n for n in ("ReFine-FT", "ReFine", TOP_RHO) if n in names]
    lines = ["# Table 3 — ACC@0.4 and ACC@0.6 before (ReFine-FT) and after (ReFine) fine-tuning", "",
             f"{seeds_txt}.{quick_txt}", "",
             "| Dataset | " + " | ".join(f"ACC@{r} {n}" for r in ("0.4", "0.6") for n in fine_tuned) + " |",
             "|---|" + "---|" * (2 * len(fine_tuned))]
    for d in dss:
        summ = report["datasets"][d]["summary"]
        cells = [_fmt(summ.get(n, {}).get("acc", {}).get(r), seeds=s["seeds"]) for r in ("0.4", "0.6") for n in fine_tuned]
        lines.append(f"| {report['datasets'][d]['title']} | " + " | ".join(cells) + " |")
    table3 = "\n".join(lines) + "\n"

    # Table 4
    timing = {d: report["datasets"][d].get("timing") or {} for d in dss}
    singly = "/".join(str(n) for n in sorted({t.get("sequential_graphs") for t in timing.values()} - {None})) or "–"
    loads = "; ".join(f"{report['datasets'][d]['title']} {t['load_average'][0]} → {t['load_average'][1]}"
                      for d, t in timing.items() if t)
    lines = ["# Table 4 — time per explained graph (one timing pass per dataset)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
             f"PyG {m['torch_geometric']}, CUDA {'yes' if m['cuda'] else 'no'}; load average (1, 5, 15 min) at the "
             f"start → end of each timing pass: {loads or '–'}.{quick_txt}", "",
             "Seconds per explained graph (explanation only), measured in one pass per dataset: every explainer "
             "explains all evaluated graphs back to back (seed 0; ReFine-CT, ReFine and top-ρ ReFine at the "
             "dataset's ρ). SA, PGExplainer and ReFine run in batches; GNNExplainer and PGM-Explainer one "
             "graph at a time (PyG's algorithms); the one-at-a-time rows time the first "
             f"{singly} graphs singly. Training (PGExplainer, ReFine pre-training) is a one-time "
             "cost, shown separately (mean over the seeds of Table 2; ReFine-FT reuses ReFine's pre-training).",
             "", "| Explainer | " + " | ".join(f"{t} s/graph | {t} training s" for t in titles) + " |",
             "|---|" + "---|---|" * len(dss)]
    for n in [n for n in names if n != "Random" and n not in skipped]:
        cells = []
        for d in dss:
            sec = timing[d].get("seconds_per_graph", {}).get(n)
            fit = report["datasets"][d]["summary"].get(n, {}).get("fit_seconds", {}).get("mean")
            cells += ["–" if sec is None else _seconds(sec), f"{fit:.1f}" if fit else "–"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    for n in ("PGExplainer", "ReFine"):
        if any(n in t.get("one_at_a_time", {}) for t in timing.values()):
            cells = []
            for d in dss:
                one = timing[d].get("one_at_a_time", {}).get(n)
                cells += ["–" if one is None else _seconds(one), "–"]
            lines.append(f"| {n}, one graph at a time | " + " | ".join(cells) + " |")
    lines += ["", "| refine_fast ReFine (batched) | fine-tuning steps | graphs/s | GNNExplainer time ÷ ReFine time "
              "| ReFine time ÷ PGExplainer time (batched) | ReFine time ÷ PGExplainer time (one at a time) |",
              "|---|---|---|---|---|---|"]
    for d in dss:
        e, sec = report["datasets"][d], timing[d].get("seconds_per_graph", {})
        if "ReFine" not in sec:
            continue
        r, g, p = sec["ReFine"], sec.get("GNNExplainer"), sec.get("PGExplainer")
        p1 = timing[d]["one_at_a_time"].get("PGExplainer")
        ratio = lambda a, b: "–" if a is None or b is None else f"{a / b:.1f}×"  # noqa: E731
        lines.append(f"| {e['title']} | {e['refine_config']['fine_tune_steps']} | {1.0 / r:.1f} | {ratio(g, r)} | "
                     f"{ratio(r, p)} | {ratio(r, p1)} |")
    table4 = "\n".join(lines) + "\n"
    return {"table2.md": table2, "table3.md": table3, "table4.md": table4}
