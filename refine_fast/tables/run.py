"""Running Tables 2–4 of the paper offline: every explainer, the same target model, test graphs and metrics.

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
The Markdown comes from :mod:`refine_fast.tables.render`.
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

from .. import metrics
from ..baselines import build_explainers, not_run
from ..baselines.base import fingerprint
from ..baselines.refine import ReFineExplainer
from ..evaluation import acc_per_ratio
from ..explain import ReFineConfig
from ..fileio import atomic_write_text
from .render import render_tables

__all__ = ["RATIOS", "Bundle", "load_bundle", "evaluate_explainer", "run_tables", "machine_info"]

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
    from ..models import REFERENCE_FILES, load_model, load_reference_model, load_reference_splits, load_splits
    from ..models import train_for_dataset

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
    ``auroc_pooled``, ``auroc_needed`` / ``graphs_needed`` (the same over the graphs whose prediction needs
    their ground truth, :func:`refine_fast.metrics.needs_ground_truth`), and ``recall`` / ``recall_ceiling``
    / ``recall_graphs`` of Recall@``recall_n``.
    """
    model = bundle.model
    batch = metrics.EvalGraphs.of(graphs)
    torch.manual_seed(seed)
    fit_seconds = _fit(bundle, explainer, seed, refine_dir, progress)
    per_ratio = getattr(explainer, "per_ratio", False)
    bar = tqdm(total=len(RATIOS), desc=f"  {explainer.name} per ρ", leave=False, disable=not (progress and per_ratio))

    def explain(ratio: Optional[float]) -> List:
        bar.update(ratio is not None)
        return explainer.explain(model, graphs, seed, **({} if ratio is None else {"ratio": ratio}))

    with bar:
        acc, main, seconds = acc_per_ratio(model, batch, explain, RATIOS, bundle.config.ratio, per_ratio)
    _check(explainer.name, graphs, main)

    out = {"acc": {str(r): float(v) for r, v in acc.items()},
           "acc_auc": float(sum(acc.values()) / len(acc)),
           "num_graphs": len(graphs),
           "seconds_per_graph": seconds / max(len(graphs), 1),
           "graphs_per_second": len(graphs) / seconds if seconds > 0 else float("inf"),
           "fit_seconds": float(fit_seconds)}
    truth = metrics.ground_truth_metrics(batch, main, bundle.recall_n, model=model)
    if truth:
        out.update(auroc=truth["auroc_per_graph"], auroc_pooled=truth["auroc_pooled"],
                   auroc_needed=truth["auroc_needed"], graphs_needed=truth["num_graphs_needed"])
        if bundle.recall_n:
            n = bundle.recall_n
            out.update(recall=truth[f"recall@{n}"], recall_ceiling=truth[f"recall@{n}_ceiling"],
                       recall_graphs=truth["num_graphs_with_gt"])
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
    atomic_write_text(json.dumps({"settings": settings, "result": result}, indent=1), path)


def _summarize(runs: Dict[str, List[Dict]]) -> Dict:
    summary = {}
    for name, results in runs.items():
        s = {key: _mean_std([r.get(key) for r in results])
             for key in ("acc_auc", "recall", "recall_ceiling", "auroc", "auroc_needed", "graphs_needed",
                         "seconds_per_graph", "graphs_per_second", "fit_seconds")}
        s["acc"] = {r: _mean_std([res["acc"][r] for res in results]) for r in results[0]["acc"]}
        summary[name] = s
    return summary


