"""Does the target GNN use the ground truth? Per class, how many correctly predicted graphs change their
prediction once their ground-truth edges are removed (:func:`refine_fast.metrics.needs_ground_truth`).

Edge AUROC and Recall@N against the ground truth only say something about an explanation's faithfulness
on these graphs; on the others the model decides without the motif.

    python bench/ground_truth_use.py --dataset ba3 --reference-models ../shared/reference_models
    python bench/ground_truth_use.py --dataset mutag --split val --reference-models ../shared/reference_models
    python bench/ground_truth_use.py --dataset ba3 --model-dir MODELS     # refine_fast's own target GNN
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import refine_fast  # noqa: F401  (before torch: passive OpenMP waits)
import torch

from refine_fast.metrics import EvalGraphs, correct_subset, needs_ground_truth
from refine_fast.tables.run import load_bundle


def count(model, graphs) -> dict:
    """``{class: {"graphs", "with_ground_truth", "need_it"}}`` over the correctly predicted ``graphs``."""
    index, _ = correct_subset(model, graphs)
    batch = EvalGraphs.of([graphs[i] for i in index.tolist()])
    needed = needs_ground_truth(model, batch).cpu()
    has_gt = torch.zeros(batch.num_graphs, dtype=torch.bool).index_fill_(
        0, batch.edge_batch[batch.edge_gt].cpu(), True)
    y = batch.y.cpu()
    return {int(c): {"graphs": int((y == c).sum()), "with_ground_truth": int((has_gt & (y == c)).sum()),
                     "need_it": int((needed & (y == c)).sum())} for c in torch.unique(y)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["ba3", "mutag", "mnist"], default="ba3")
    parser.add_argument("--split", choices=["train", "val", "test"], default="test")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--reference-models", default=None, help="the ReFine authors' released models")
    parser.add_argument("--model-dir", default=None, help="refine_fast's own target GNN (MODEL_DIR/<dataset>/model.pt)")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    if (args.reference_models is None) == (args.model_dir is None):
        parser.error("give one of --reference-models and --model-dir")
    if args.model_dir is not None and not any((Path(args.model_dir) / sub / "model.pt").is_file()
                                              for sub in (args.dataset, ".")):
        parser.error(f"--model-dir: no {args.dataset}/model.pt or model.pt in {args.model_dir}")
    torch.set_num_threads(1)
    bundle = load_bundle(args.dataset, args.data_root, args.model_dir, Path("."), args.cache_dir, False,
                         args.reference_models)
    result = {"dataset": args.dataset, "split": args.split, "model": bundle.info.get("model"),
              "by_class": count(bundle.model, getattr(bundle, args.split))}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
