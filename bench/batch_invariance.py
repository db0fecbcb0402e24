"""How far apart are ReFine's explanations of the same graphs under different batchings and workers?

Trains the target GNN briefly (``--gnn-epochs``), pre-trains ReFine briefly (``--epochs``), then
explains the first ``--graphs`` test graphs (seed 0, ``--steps`` fine-tuning steps, ``--dtype``) once for
every ``--batch-sizes`` × ``--workers`` setting, and compares every run with the first (batch size 1,
one worker): the largest absolute importance difference, for each ρ in 0.1..1.0 how many graphs'
top-ρ edge sets (:func:`refine_fast.metrics.topk_edge_mask`) differ, and how close the swapped edges
were in the reference run (``swap_gap``: the largest reference importance of an edge that left a top-ρ
set minus the smallest of one that entered it). A script (not a pytest benchmark): it measures a
numerical bound, not a speed; ``tests/test_explain.py`` asserts the bound it found.

    python bench/batch_invariance.py --dataset ba3 --work /tmp/invariance_ba3
    python bench/batch_invariance.py --dataset mutag --data-root ../shared/data --work /tmp/invariance_mutag
    python bench/batch_invariance.py --dataset mutag --data-root ../shared/data --work /tmp/invariance_mutag --dtype float64
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from refine_fast import ReFine, ReFineConfig  # noqa: E402
from refine_fast.metrics import DEFAULT_RATIOS, EvalGraphs, topk_edge_mask  # noqa: E402
from refine_fast.models import load_model  # noqa: E402
from refine_fast.models.registry import load_splits, train_for_dataset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=("ba3", "mutag", "mnist"), default="ba3")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--work", required=True, help="folder for the trained model, explainer and results")
    p.add_argument("--gnn-epochs", type=int, default=10)
    p.add_argument("--epochs", type=int, default=3, help="pre-training epochs")
    p.add_argument("--graphs", type=int, default=200, help="test graphs explained")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-sizes", default="1,7,64,256")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="of model, explainer and graphs")
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    if not (work / "model.pt").is_file():
        train_for_dataset(args.dataset, args.data_root, work, epochs=args.gnn_epochs, progress=False)
    model = load_model(work / "model.pt")
    dataset, (train_set, _, test_set) = load_splits(args.dataset, args.data_root)
    explainer = work / "refine.pt"
    if explainer.is_file():
        refine = ReFine.load(explainer, model)
    else:
        g = train_set[0]
        edge_dim = int(model.config.get("edge_dim", 0))
        refine = ReFine(model, int(model.config["num_classes"]), g.x.size(1), edge_dim,
                        config=ReFineConfig.for_dataset(args.dataset, epochs=args.epochs))
        refine.pretrain(list(train_set), progress=False)
        refine.save(explainer)

    model.to(dtype)
    refine.to(dtype)
    graphs = [g.clone() for g in list(test_set)[:args.graphs]]
    for g in graphs:
        g.x = g.x.to(dtype)
        if g.get("edge_attr") is not None:
            g.edge_attr = g.edge_attr.to(dtype)
    edge_ptr = EvalGraphs.of(graphs).edge_ptr
    runs = []
    for workers in (int(w) for w in args.workers.split(",")):
        torch.set_num_threads(workers)
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            start = time.perf_counter()
            imps = refine.explain(graphs, steps=args.steps, seed=0, batch_size=batch_size, workers=workers,
                                  progress=False)
            runs.append(dict(batch_size=batch_size, workers=workers, seconds=time.perf_counter() - start,
                             flat=torch.cat(imps)))
    ref = runs[0]["flat"]
    ref_sets = {r: topk_edge_mask(ref, edge_ptr, r) for r in DEFAULT_RATIOS}
    edge_batch = torch.repeat_interleave(torch.arange(len(graphs)), edge_ptr.diff())
    rows = []
    for run in runs:
        changed, gap = {}, 0.0
        for r, ref_set in ref_sets.items():
            new_set = topk_edge_mask(run["flat"], edge_ptr, r)
            changed[r] = int(torch.unique(edge_batch[new_set != ref_set]).numel())
            for g in torch.unique(edge_batch[new_set != ref_set]).tolist():
                e0, e1 = int(edge_ptr[g]), int(edge_ptr[g + 1])
                left = ref[e0:e1][ref_set[e0:e1] & ~new_set[e0:e1]]
                entered = ref[e0:e1][new_set[e0:e1] & ~ref_set[e0:e1]]
                gap = max(gap, float(left.max() - entered.min()))
        rows.append(dict(batch_size=run["batch_size"], workers=run["workers"], seconds=round(run["seconds"], 1),
                         max_abs_diff=float((run["flat"] - ref).abs().max()), graphs_with_changed_top_set=changed,
                         swap_gap=gap))
    result = dict(dataset=args.dataset, graphs=len(graphs), edges=int(edge_ptr[-1]), steps=args.steps,
                  gnn_epochs=args.gnn_epochs, pretrain_epochs=args.epochs, dtype=str(ref.dtype),
                  reference="batch_size=1, workers=1", load=os.getloadavg()[0],
                  max_abs_diff=max(r["max_abs_diff"] for r in rows), swap_gap=max(r["swap_gap"] for r in rows),
                  runs=rows)
    (work / f"invariance_{args.dtype}_{len(graphs)}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
