"""Tables 2–4 of the paper regenerated offline: every explainer, the same target model, test graphs and metrics.

:func:`run_tables` explains the test graphs the target model predicts correctly with every explainer of
:data:`refine_fast.baselines.EXPLAINERS`, for ``seeds`` seeds, and writes::

    DIR/table2.md    ACC-AUC (and Recall@N, edge AUROC) per explainer and dataset, mean ± std over seeds
    DIR/table3.md    ACC@0.4 / ACC@0.6 of ReFine-FT vs ReFine (and ReFine with top-ρ fine-tuning)
    DIR/table4.md    seconds per explained graph, training seconds, batched throughput; the machine
    DIR/tables.json  every number, the settings and the machine
    DIR/results/<dataset>/<explainer>_seed<k>.json   one finished (dataset, explainer, seed) each
    DIR/refine/<dataset>/...pt                       pre-trained ReFine attributors (reused on resume)
    DIR/models/<dataset>/model.pt                    target GNNs trained here when none is given

A result file whose settings equal the current run's is reused, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from tqdm.auto import tqdm

from . import metrics
from .baselines import EXPLAINERS, TOP_RHO, build_explainers, not_run
from .baselines.base import fingerprint
from .baselines.refine import ReFineExplainer
from .explain import ReFineConfig

__all__ = ["RATIOS", "Bundle", "load_bundle", "evaluate_explainer", "run_tables", "machine_info",
           "render_tables"]

RATIOS = [round(0.1 * k, 1) for k in range(1, 11)]
"""ρ of ACC@ρ; ACC-AUC is their mean."""

QUICK_PRETRAIN_EPOCHS = 25
QUICK_TRAIN_GRAPHS = 1000
"""Quick mode trains (ReFine pre-training, PGExplainer) on at most this many training graphs, spread
evenly over the split (MNIST-sp has 6,000)."""
"""ReFine pre-training epochs in quick mode (BA-3motif's full setting; fewer than Mutagenicity's / MNIST's)."""

SEQUENTIAL_GRAPHS = 20
"""Graphs explained one at a time to time ReFine and PyG's PGExplainer as the paper did (per graph)."""

DATASETS = ["ba3", "mutag", "mnist"]
TITLES = {"ba3": "BA-3motif", "mutag": "Mutagenicity", "mnist": "MNIST-sp"}
RECALL_N = {"ba3": 5, "mutag": 10}
"""Recall@N rows: BA-3motif Recall@5 as the paper; Mutagenicity Recall@10 against the NO2/NH2 bonds
(both directions stored, so one NO2 or NH2 group is 4 directed edges); not in the paper."""


@dataclass
class Bundle:
    """One dataset ready to explain: target ``model`` (eval mode), its splits as lists of ``Data``,
    ReFine's ``config`` and the ``recall_n`` of its Recall@N row (None: no row)."""

    name: str
    model: torch.nn.Module
    train: Sequence
    val: Sequence
    test: Sequence
    config: ReFineConfig
    recall_n: Optional[int] = None
    info: Dict = field(default_factory=dict)


def load_bundle(name: str, data_root: str, model_dir: Optional[str], out_dir: Path,
                cache_dir: Optional[str] = None, progress: bool = True,
                reference_models: Optional[str] = None) -> Bundle:
    """Dataset ``name`` from ``data_root`` and its target GNN from ``model_dir/<name>/model.pt`` (or
    ``model_dir/model.pt``); without one, the GNN is trained once into ``out_dir/models/<name>``.
    With ``reference_models`` (a folder holding the ReFine authors' released ``mutag_net_state.pt`` /
    ``ba3_net_state.pt``): that model, on the reference's own splits (:func:`load_reference_splits`)."""
    from .models import REFERENCE_FILES, load_model, load_reference_model, load_reference_splits, load_splits
    from .models import train_for_dataset

    if reference_models is not None:
        if name not in REFERENCE_FILES:
            raise ValueError(f"--reference-models: the ReFine authors released no {name} model "
                             f"(only {', '.join(sorted(REFERENCE_FILES))})")
        path = Path(reference_models) / REFERENCE_FILES[name]
        train, val, test = load_reference_splits(name, data_root, cache_dir)
        return Bundle(name, load_reference_model(path), train, val, test, ReFineConfig.for_dataset(name),
                      RECALL_N.get(name), {"model": str(path), "reference": True})
    _, (train, val, test) = load_splits(name, data_root, cache_dir)
    candidates = [] if model_dir is None else [Path(model_dir) / name / "model.pt", Path(model_dir) / "model.pt"]
    trained_here = out_dir / "models" / name
    candidates.append(trained_here / "model.pt")
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        train_for_dataset(name, data_root, trained_here, progress=progress, cache_dir=cache_dir)
        path = trained_here / "model.pt"
    model = load_model(path)
    return Bundle(name, model, list(train), list(val), list(test), ReFineConfig.for_dataset(name),
                  RECALL_N.get(name), {"model": str(path)})


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def _mean_std(values: List[float]) -> Dict[str, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std(unbiased=False)) if len(values) > 1 else 0.0,
            "n": len(values)}


def _timed(fn: Callable):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _fit(bundle: Bundle, explainer, seed: int, refine_dir: Optional[Path], progress: bool = False) -> float:
    """Fit a trainable explainer for ``seed`` (ReFine variants reuse the checkpoints in ``refine_dir``);
    returns its training seconds (0 for explainers without training)."""
    if isinstance(explainer, ReFineExplainer):
        explainer.fit(bundle.model, bundle.train, seed, val_graphs=bundle.val, checkpoint_dir=refine_dir,
                      progress=progress)
        return explainer.fit_seconds
    if hasattr(explainer, "fit"):
        return _timed(lambda: explainer.fit(bundle.model, bundle.train, seed))[1]
    return 0.0


def evaluate_explainer(bundle: Bundle, explainer, graphs: Sequence, seed: int,
                       refine_dir: Optional[Path] = None, progress: bool = False) -> Dict:
    """Fit (if trainable), explain ``graphs`` and score them with :mod:`refine_fast.metrics`.

    ``per_ratio`` explainers are explained once per ρ (ACC@ρ uses the explanation made at ρ); their
    Recall@N and AUROC use the explanation at the config's ρ, and their time is the mean over the ρ.
    Returns plain numbers: ``acc`` {ρ: ACC@ρ}, ``acc_auc``, ``seconds_per_graph``, ``graphs_per_second``,
    ``fit_seconds``, ``num_graphs``; with ground truth ``auroc`` (mean per-graph edge AUROC),
    ``auroc_pooled``, and ``recall`` / ``recall_ceiling`` / ``recall_graphs`` of Recall@``recall_n``.
    """
    model = bundle.model
    batch = metrics.EvalGraphs.of(graphs)
    torch.manual_seed(seed)
    fit_seconds = _fit(bundle, explainer, seed, refine_dir, progress)

    acc: Dict[float, float] = {}
    if getattr(explainer, "per_ratio", False):
        seconds, main = 0.0, None
        for ratio in tqdm(RATIOS, desc=f"  {explainer.name} per ρ", leave=False, disable=not progress):
            imp, t = _timed(lambda: explainer.explain(model, graphs, seed, ratio=ratio))
            seconds += t
            acc[ratio] = metrics.acc_at_ratio(model, batch, imp, ratio)
            if math.isclose(ratio, bundle.config.ratio):
                main = imp
        if main is None:
            main = explainer.explain(model, graphs, seed, ratio=bundle.config.ratio)
        seconds /= len(RATIOS)
    else:
        main, seconds = _timed(lambda: explainer.explain(model, graphs, seed))
        acc = metrics.acc_auc(model, batch, main, RATIOS)["acc"]
    _check(explainer.name, graphs, main)

    out = {"acc": {str(r): float(v) for r, v in acc.items()},
           "acc_auc": float(sum(acc.values()) / len(acc)),
           "num_graphs": len(graphs),
           "seconds_per_graph": seconds / max(len(graphs), 1),
           "graphs_per_second": len(graphs) / seconds if seconds > 0 else float("inf"),
           "fit_seconds": float(fit_seconds)}
    if batch.edge_gt is not None and bool(batch.edge_gt.any()):
        auroc = metrics.edge_auroc(batch, main)
        out.update(auroc=auroc["auroc_per_graph"], auroc_pooled=auroc["auroc_pooled"])
        if bundle.recall_n:
            recall = metrics.recall_at_n(batch, main, bundle.recall_n)
            out.update(recall=recall["recall"], recall_ceiling=recall["ceiling"],
                       recall_graphs=recall["num_graphs"])
    return out


def _check(name: str, graphs: Sequence, importances: Sequence) -> None:
    if len(importances) != len(graphs):
        raise RuntimeError(f"{name}: returned {len(importances)} importances for {len(graphs)} graphs")
    for i, (g, imp) in enumerate(zip(graphs, importances)):
        if imp.numel() != g.edge_index.size(1) or not bool(torch.isfinite(imp).all()):
            raise RuntimeError(f"{name}: graph {i}: expected {g.edge_index.size(1)} finite importances, "
                               f"got {tuple(imp.shape)}")


def machine_info() -> Dict:
    """Cores, torch threads, versions and load: the conditions of the timings."""
    import torch_geometric

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
            "python": platform.python_version(), "cuda": torch.cuda.is_available(),
            "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def _settings(bundle: Bundle, explainer, quick: bool, num_graphs: int, gnn_epochs: int, pg_epochs: int) -> Dict:
    name = explainer.name
    s = {"dataset": bundle.name, "explainer": name, "quick": quick, "num_graphs": num_graphs,
         "model": bundle.info.get("model"), "fingerprint": bundle.info.get("fingerprint"),
         "torch_threads": torch.get_num_threads()}
    if name == "GNNExplainer":
        s["epochs"] = gnn_epochs
    elif name == "PGExplainer":
        s["epochs"] = pg_epochs
    elif name == "PGM-Explainer":
        s.update(num_samples=explainer.num_samples, candidates=explainer.candidates)
    elif name not in ("Random", "SA"):
        s["config"] = bundle.config.to_dict()
    return s


def run_tables(dataset: str, data_root: str, out_dir: str, seeds: int = 3, quick: bool = False,
               model_dir: Optional[str] = None, progress: bool = True, resume: bool = True,
               cache_dir: Optional[str] = None, threads: Optional[int] = None,
               explainers: Optional[List[str]] = None, max_graphs: Optional[int] = None,
               gnnexplainer_epochs: Optional[int] = None, pgexplainer_epochs: Optional[int] = None,
               bundles: Optional[Dict[str, Bundle]] = None, compute: bool = True,
               reference_models: Optional[str] = None) -> Dict:
    """Regenerate Tables 2–4 for ``dataset`` (``ba3``, ``mutag``, ``mnist``, ``all`` or a comma-separated
    list such as ``ba3,mutag``) into ``out_dir``.

    ``quick``: 1 seed, at most 100 test graphs, PGExplainer 10 epochs and ReFine pre-training of at most
    :data:`QUICK_PRETRAIN_EPOCHS` epochs, both on at most :data:`QUICK_TRAIN_GRAPHS` training graphs (for
    smoke tests and CI; GNNExplainer keeps its 100 epochs so the timings stay comparable).
    ``resume``: reuse finished (dataset, explainer, seed) results of the same settings, and a dataset's
    finished timing pass (Table 4's times, measured for all explainers in one go: see :func:`_timing`).
    ``threads``: ``torch.set_num_threads`` for the whole run (recorded with the machine).
    ``explainers``: a subset of :data:`EXPLAINERS`; ``max_graphs`` caps the test graphs; the epochs of
    GNNExplainer (100) and PGExplainer (30, quick 10) can be overridden; ``bundles``
    injects ready datasets/models by name (tests). ``compute=False`` renders the finished results only
    (a long run's progress): missing (dataset, explainer, seed) results are left out and the tables say
    how many seeds each cell has. ``reference_models``: explain the ReFine authors' released target GNNs on
    their own splits instead (a folder with ``mutag_net_state.pt`` / ``ba3_net_state.pt``; ``all`` then
    means BA-3motif and Mutagenicity). Returns the dict written to ``tables.json``.
    """
    if reference_models is not None and dataset == "all":
        dataset = "ba3,mutag"
    names = DATASETS if dataset == "all" else dataset.split(",")
    unknown = [n for n in names if n not in DATASETS and (bundles is None or n not in bundles)]
    if unknown:
        raise ValueError(f"run_tables: dataset must be one of {DATASETS + ['all']}, got {dataset!r}")
    if threads is not None:
        torch.set_num_threads(int(threads))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = 1 if quick else int(seeds)
    max_graphs = (100 if quick else None) if max_graphs is None else int(max_graphs)
    gnn_epochs = 100 if gnnexplainer_epochs is None else int(gnnexplainer_epochs)
    pg_epochs = (10 if quick else 30) if pgexplainer_epochs is None else int(pgexplainer_epochs)
    machine_start = machine_info()

    report: Dict = {"settings": {"datasets": names, "seeds": seeds, "quick": quick, "ratios": RATIOS,
                                 "gnnexplainer_epochs": gnn_epochs, "pgexplainer_epochs": pg_epochs,
                                 "complete": True},
                    "machine": machine_start, "datasets": {}, "not_run": not_run() if explainers is None else {}}
    for ds in names:
        bundle = bundles[ds] if bundles and ds in bundles else load_bundle(ds, data_root, model_dir, out,
                                                                          cache_dir, progress, reference_models)
        if quick:
            bundle.config = bundle.config.replace(epochs=min(bundle.config.epochs, QUICK_PRETRAIN_EPOCHS))
            bundle.train = bundle.train[::-(-len(bundle.train) // QUICK_TRAIN_GRAPHS)]
        index, _ = metrics.correct_subset(bundle.model, bundle.test)
        correct = [bundle.test[i] for i in index.tolist()]
        graphs = correct[:max_graphs] if max_graphs is not None else correct
        bundle.info["fingerprint"] = fingerprint(bundle.model, list(graphs) + list(bundle.train))
        entry = {"title": TITLES.get(ds, ds), "train_graphs": len(bundle.train),
                 "test_graphs": len(bundle.test), "correct": len(correct),
                 "evaluated": len(graphs), "recall_n": bundle.recall_n, "model": bundle.info.get("model"),
                 "refine_config": bundle.config.to_dict(), "runs": {}}
        result_dir = out / "results" / ds
        result_dir.mkdir(parents=True, exist_ok=True)
        refine_dir = out / "refine" / ds
        built = build_explainers(bundle.config, gnn_epochs, pg_epochs, explainers)
        jobs = [(n, s) for s in range(seeds) for n in built]
        bar = tqdm(jobs, desc=f"{TITLES.get(ds, ds)}", disable=not progress)
        for name, seed in bar:
            bar.set_postfix_str(f"{name} seed {seed}")
            path = result_dir / f"{_slug(name)}_seed{seed}.json"
            settings = _settings(bundle, built[name], quick, len(graphs), gnn_epochs, pg_epochs)
            result = _cached(path, settings) if resume else None
            if result is None and not compute:
                report["settings"]["complete"] = False
                continue
            if result is None:
                result = evaluate_explainer(bundle, built[name], graphs, seed, refine_dir, progress)
                _save(path, settings, result)
            entry["runs"].setdefault(name, []).append(result)
        entry["timing"] = _timing(bundle, built, graphs, result_dir, refine_dir,
                                  {n: _settings(bundle, e, quick, len(graphs), gnn_epochs, pg_epochs)
                                   for n, e in built.items()},
                                  resume, compute, progress)
        entry["summary"] = _summarize(entry["runs"])
        report["datasets"][ds] = entry
    tables = render_tables(report)
    for fname, text in tables.items():
        (out / fname).write_text(text)
    (out / "tables.json").write_text(json.dumps(report, indent=1))
    return report


def _timing(bundle: Bundle, built: Dict, graphs: Sequence, result_dir: Path, refine_dir: Path, settings: Dict,
            resume: bool = True, compute: bool = True, progress: bool = False) -> Optional[Dict]:
    """Table 4's times, measured in one pass per dataset so that they compare like with like: each explainer
    (fitted for seed 0; ReFine variants load their pre-training checkpoints) explains all ``graphs`` back
    to back, the per-ρ ones at the config's ρ; then PGExplainer and ReFine explain the first
    :data:`SEQUENTIAL_GRAPHS` graphs one at a time (ReFine with batch size 1), as the paper's Table 4 timed
    them. Cached in ``result_dir/timing.json`` as a whole, keyed by ``settings`` (every explainer's);
    ``None`` when not cached and ``compute`` is false."""
    path = result_dir / "timing.json"
    cached = _cached(path, settings) if resume else None
    if cached is not None or not compute:
        return cached
    model, ratio, few = bundle.model, bundle.config.ratio, graphs[:SEQUENTIAL_GRAPHS]
    result = {"num_graphs": len(graphs), "sequential_graphs": len(few),
              "load_average": [machine_info()["load_average"]], "seconds_per_graph": {}, "one_at_a_time": {}}
    for name, explainer in tqdm(built.items(), desc="  timing pass", leave=False, disable=not progress):
        fitted = getattr(explainer, "explainer", None)  # PyG's PGExplainer: reuse a fit of this run
        if fitted is None or fitted.model is not model:
            _fit(bundle, explainer, 0, refine_dir)
        kw = {"ratio": ratio} if getattr(explainer, "per_ratio", False) else {}
        _, seconds = _timed(lambda: explainer.explain(model, graphs, 0, **kw))
        result["seconds_per_graph"][name] = seconds / max(len(graphs), 1)
        if name == "ReFine":
            _, seconds = _timed(lambda: explainer.explain(model, few, 0, ratio=ratio, batch_size=1))
        elif name == "PGExplainer":
            _, seconds = _timed(lambda: [explainer.explain(model, [g], 0) for g in few])
        else:
            continue
        result["one_at_a_time"][name] = seconds / max(len(few), 1)
    result["load_average"].append(machine_info()["load_average"])
    _save(path, settings, result)
    return result


def _cached(path: Path, settings: Dict) -> Optional[Dict]:
    """The result saved at ``path`` if it was made with the same ``settings``."""
    if not path.is_file():
        return None
    cached = json.loads(path.read_text())
    return cached["result"] if cached.get("settings") == json.loads(json.dumps(settings)) else None


def _save(path: Path, settings: Dict, result: Dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"settings": settings, "result": result}, indent=1))
    os.replace(tmp, path)


def _summarize(runs: Dict[str, List[Dict]]) -> Dict:
    summary = {}
    for name, results in runs.items():
        s = {key: _mean_std([r.get(key) for r in results])
             for key in ("acc_auc", "recall", "recall_ceiling", "auroc", "seconds_per_graph",
                         "graphs_per_second", "fit_seconds")}
        s["acc"] = {r: _mean_std([res["acc"][r] for res in results]) for r in results[0]["acc"]}
        summary[name] = s
    return summary


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
    ReFine ≥ ReFine-FT ≥ PGExplainer (both PGExplainers) on ACC-AUC."""
    auc = {n: v["acc_auc"]["mean"] for n, v in entry["summary"].items()}
    if "ReFine" not in auc:
        return ""
    beaten_by = [n for n in ("Random", "SA", "GNNExplainer", "PGExplainer", "PGExplainer (refine_fast)",
                             "PGM-Explainer") if n in auc and auc[n] > auc["ReFine"]]
    parts = [f"{entry['title']}: ReFine " + ("beats every baseline" if not beaten_by
                                             else "is beaten by " + ", ".join(beaten_by))]
    pairs = [("ReFine", "ReFine-FT"), ("ReFine-FT", "PGExplainer"), ("ReFine-FT", "PGExplainer (refine_fast)")]
    pairs = [(a, b) for a, b in pairs if a in auc and b in auc]
    if pairs:
        broken = [f"{a} < {b}" for a, b in pairs if auc[a] < auc[b]]
        parts.append("ReFine ≥ ReFine-FT ≥ PGExplainer " + ("holds" if not broken else "fails: " + ", ".join(broken)))
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
             f"{SEQUENTIAL_GRAPHS} graphs singly. Training (PGExplainer, ReFine pre-training) is a one-time "
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
