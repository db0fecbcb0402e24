"""Which of the reference implementation's behaviours matter (issue 13): an ablation on the released models.

Each row pre-trains ReFine on a released target GNN (the ReFine authors' own, on their splits; see
``refine-fast evaluate --table --reference-models``) with one :class:`refine_fast.ReFineConfig` option
switched from the paper's formulation to the reference code's, then all together, then the defaults, and
scores ReFine-FT and ReFine (fine-tuned at each ρ) on the correctly predicted test graphs: ACC-AUC, edge
AUROC (also over the graphs whose prediction needs their ground truth, "needed":
:func:`refine_fast.metrics.needs_ground_truth`) and Recall@N against the ground truth, and the last epoch's
pre-training loss terms.

    python bench/ablation.py --dataset ba3 --seeds 3 --out ablation.jsonl \\
        --data-root ../shared/data --reference-models ../shared/reference_models
    python bench/ablation.py --dataset ba3 --split val --out gamma.jsonl \\
        --rows defaults,defaults_ct,defaults_gamma0.1,defaults_gamma0.3,defaults_gamma1
    python bench/ablation.py --render ablation.jsonl

Rows already in ``--out`` (same dataset, split, row and seed) are skipped, so a killed run resumes. One torch
thread (results are then exactly repeatable). A Mutagenicity row takes ~3 min, a BA-3motif row ~1 min on
one core of the 2-core machine of bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import refine_fast  # noqa: F401  (before torch: passive OpenMP waits)
import torch

from refine_fast import ReFine, ReFineConfig
from refine_fast.evaluation import evaluate_refine
from refine_fast.explain import attributor_edge_dim
from refine_fast.metrics import correct_subset
from refine_fast.explain.config import BA3_REFERENCE
from refine_fast.tables.run import load_bundle

PAPER = {"fidelity": "log", "reduction": "mean", "contrastive": "paper", "representation": "attributor",
         "log2_noise": False, "mask_sigmoid": False, "explain_norm": "running", "train_on": "all",
         "pretrain_norm": "batch", "bias_init": "zeros", "fine_tune_lr": 1e-4}
"""The paper's formulation (Eq. 6–10), each option at its paper value (batch norm over the batch,
refine_fast's zero biases)."""
REFERENCE = {"fidelity": "prob", "reduction": "sum", "contrastive": "reference", "representation": "target",
             "log2_noise": True, "mask_sigmoid": True, "explain_norm": "graph", "train_on": "correct",
             "pretrain_norm": "reference", "bias_init": "uniform"}
"""Every behaviour of the reference code that differs from the paper."""
NO_BA3_PRESET = {k: getattr(ReFineConfig(), k) for k in BA3_REFERENCE}
"""The defaults without what BA-3motif's preset adds (:data:`refine_fast.explain.config.BA3_REFERENCE`)."""
TOP = {"select": "top", "fine_tune_lr": 2e-4}
"""The reference's evaluation fine-tuning: hard top-ρ selection at lr 2e-4 (the paper: sampled, 1e-4)."""

ROWS = {  # name: (config options, fine-tuning options)
    "paper": (PAPER, {}),
    "+prob": ({**PAPER, "fidelity": "prob"}, {}),
    "+sum": ({**PAPER, "reduction": "sum"}, {}),
    "+ref_contrastive": ({**PAPER, "contrastive": "reference", "representation": "target"}, {}),
    "+log2": ({**PAPER, "log2_noise": True}, {}),
    "+sigmoid": ({**PAPER, "mask_sigmoid": True}, {}),
    "+graph_norm": ({**PAPER, "explain_norm": "graph"}, {}),
    "+correct": ({**PAPER, "train_on": "correct"}, {}),
    "+ref_norm": ({**PAPER, "pretrain_norm": "reference", "explain_norm": "graph"}, {}),
    "+uniform_bias": ({**PAPER, "bias_init": "uniform"}, {}),
    "+ref_norm+bias": ({**PAPER, "pretrain_norm": "reference", "explain_norm": "graph", "bias_init": "uniform"}, {}),
    "+top_2e-4": (PAPER, TOP),
    "reference": (REFERENCE, TOP),
    "reference_batch_norm": ({**REFERENCE, "pretrain_norm": "batch", "bias_init": "zeros"}, TOP),
    "defaults": ({}, {}),
    "defaults_ct": ({"gamma": 0.0}, {}),
    "defaults_top": ({}, TOP),
    "defaults-ba3_preset": (NO_BA3_PRESET, {}),
    "defaults_infonce": ({"contrastive": "infonce", "representation": "auto"}, {}),
    "defaults_gamma0.1": ({"gamma": 0.1}, {}),
    "defaults_gamma0.3": ({"gamma": 0.3}, {}),
    "defaults_gamma1": ({"gamma": 1.0}, {}),
}
"""``defaults`` is the dataset's preset (:meth:`refine_fast.ReFineConfig.for_dataset`); on BA-3motif it
includes :data:`~refine_fast.explain.config.BA3_REFERENCE`, which ``defaults-ba3_preset`` leaves out;
``defaults_infonce``: the defaults' contrastive term instead of Eq. 8 (BA-3motif's preset takes Eq. 8);
``defaults_gamma*``: the defaults with a smaller γ (the trade-off between ACC-AUC and ground-truth AUROC; run
them with ``--split val``, so that γ is not picked on the test graphs' ground truth)."""


def run_row(bundle, graphs, row: str, seed: int, split: str = "test") -> dict:
    options, fine = ROWS[row]
    config = bundle.config.replace(**{**options, **({"fine_tune_lr": fine["fine_tune_lr"]} if fine else {})})
    sample = graphs[0]
    edge_dim = attributor_edge_dim(0 if sample.edge_attr is None else sample.edge_attr.size(-1))  # as Table 2
    refine = ReFine(bundle.model, bundle.info["num_classes"], sample.x.size(1), edge_dim, config=config, seed=seed)
    start = time.perf_counter()
    history = refine.pretrain(bundle.train, seed=seed, val_dataset=bundle.val, progress=False)
    result = {"dataset": bundle.name, "split": split, "row": row, "seed": seed, "config": config.to_dict(),
              "select": fine.get("select", "sample"), "last": {k: v[-1] for k, v in history.items()},
              "pretrain_s": round(time.perf_counter() - start, 1), "graphs": len(graphs)}
    n = bundle.recall_n or 5
    for name, kwargs in (("FT", {"fine_tune": False}), ("ReFine", {"select": fine.get("select", "sample")})):
        scores = evaluate_refine(refine, graphs, seed=seed, n=n, **kwargs)
        keep = ("acc_auc", "acc", "auroc_per_graph", "auroc_needed", "num_graphs_needed", f"recall@{n}")
        result[name] = {k: v for k, v in scores.items() if k in keep}
    result["total_s"] = round(time.perf_counter() - start, 1)
    return result


def render(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def cell(values):
        values = [v for v in values if v is not None]
        if not values:
            return "–"
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    out = []
    for dataset, split in dict.fromkeys((r["dataset"], r.get("split", "test")) for r in rows):
        out += [f"\n{dataset} ({split} graphs)\n", "| row | seeds | ReFine-FT ACC-AUC | ReFine ACC-AUC | edge AUROC FT | edge AUROC "
                "ReFine | edge AUROC FT, needed | edge AUROC ReFine, needed | Recall@N ReFine | fidelity | size | "
                "entropy | contrastive |", "|" + " --- |" * 13]
        for row in ROWS:
            rs = sorted((r for r in rows if r["dataset"] == dataset and r.get("split", "test") == split
                         and r["row"] == row), key=lambda r: r["seed"])
            if not rs:
                continue
            recall = [next((v for k, v in r["ReFine"].items() if k.startswith("recall@")), None) for r in rs]
            terms = [cell([r["last"].get(t) for r in rs]) for t in ("fidelity", "size", "entropy", "contrastive")]
            out.append(f"| {row} | {','.join(str(r['seed']) for r in rs)} | {cell([r['FT']['acc_auc'] for r in rs])} | "
                       f"{cell([r['ReFine']['acc_auc'] for r in rs])} | "
                       f"{cell([r['FT'].get('auroc_per_graph') for r in rs])} | "
                       f"{cell([r['ReFine'].get('auroc_per_graph') for r in rs])} | "
                       f"{cell([r['FT'].get('auroc_needed') for r in rs])} | "
                       f"{cell([r['ReFine'].get('auroc_needed') for r in rs])} | {cell(recall)} | "
                       + " | ".join(terms) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["ba3", "mutag"], default="ba3")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default: all)")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--reference-models", default="../shared/reference_models")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--split", choices=["test", "val"], default="test",
                        help="explain the correctly predicted graphs of this split (default: test)")
    parser.add_argument("--out", default="ablation.jsonl", help="JSON lines, appended")
    parser.add_argument("--render", metavar="JSONL", help="print the Markdown table of a finished run and exit")
    args = parser.parse_args(argv)
    if args.render:
        print(render(Path(args.render)))
        return 0
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"--rows: unknown {unknown}, expected some of {list(ROWS)}")
    torch.set_num_threads(1)
    bundle = load_bundle(args.dataset, args.data_root, None, Path("."), args.cache_dir, False, args.reference_models)
    bundle.info["num_classes"] = {"ba3": 3, "mutag": 2}[args.dataset]
    split = bundle.test if args.split == "test" else bundle.val
    index, _ = correct_subset(bundle.model, split)
    graphs = [split[i] for i in index.tolist()]
    out = Path(args.out)
    done = set()
    if out.is_file():
        done = {(r["dataset"], r.get("split", "test"), r["row"], r["seed"])
                for r in map(json.loads, out.read_text().splitlines()) if r}
    for seed in range(args.seeds):
        for row in rows:
            if (args.dataset, args.split, row, seed) in done:
                continue
            result = run_row(bundle, graphs, row, seed, args.split)
            with out.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(f"{args.dataset} {row} seed {seed}: ReFine-FT {result['FT']['acc_auc']:.3f} "
                  f"ReFine {result['ReFine']['acc_auc']:.3f} ({result['total_s']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
