"""The demo: BA-3motif end to end — generate the data, train the target GNN, pre-train ReFine, explain and
evaluate the correctly predicted test graphs, write the explanations and two plots (``refine-fast demo``)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import torch

__all__ = ["run_demo"]


def run_demo(out: Union[str, Path], seed: int = 0, gnn_epochs: Optional[int] = None, epochs: Optional[int] = None,
             device: Union[str, torch.device] = "cpu", progress: bool = True,
             say: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the demo into ``out``; returns (and writes to ``out/demo.json``) the ReFine-FT and ReFine
    evaluations, the target GNN's metrics and the seconds of each stage.

    ``gnn_epochs`` / ``epochs``: target-GNN training and pre-training epochs (default: the dataset's and
    the paper's settings). ``say`` receives the human-readable lines."""
    from .evaluation import evaluate_refine
    from .explain import ReFine, ReFineConfig, attributor_dims
    from .fileio import atomic_write_text
    from .metrics import correct_subset
    from .models import load_model, load_splits, train_for_dataset
    from .plot import plot_acc_curves, plot_explained_graphs
    from .store import ExplanationStore

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: Dict[str, float] = {}
    t = time.perf_counter()
    dataset, (train, val, test) = load_splits("ba3", ".", out / "data", data_seed=seed)
    timings["generate_ba3motif"] = time.perf_counter() - t
    say(f"[1/4] BA-3motif: {len(dataset)} graphs ({len(train)} train / {len(val)} val / {len(test)} test)")

    t = time.perf_counter()
    gnn = train_for_dataset("ba3", ".", out / "model", epochs=gnn_epochs, seed=seed, progress=progress,
                            cache_dir=out / "data", data_seed=seed, device=device)
    model = load_model(out / "model" / "model.pt", map_location=device)
    timings["train_gnn"] = time.perf_counter() - t
    say(f"[2/4] target GNN (LEConv): test accuracy {gnn.get('test_acc', float('nan')):.3f}")

    t = time.perf_counter()
    refine = ReFine(model, config=ReFineConfig.for_dataset("ba3"), seed=seed, **attributor_dims(dataset)).to(device)
    refine.pretrain(train, epochs=epochs, seed=seed, val_dataset=val, progress=progress)
    refine.save(out / "explainer.pt")
    timings["pretrain"] = time.perf_counter() - t
    say(f"[3/4] ReFine pre-trained ({refine.config.epochs if epochs is None else epochs} epochs) "
        f"in {timings['pretrain']:.0f}s")

    t = time.perf_counter()
    index, _ = correct_subset(model, list(test))
    graphs = [test[int(i)] for i in index]
    ft = evaluate_refine(refine, graphs, fine_tune=False, seed=seed)
    full = evaluate_refine(refine, graphs, seed=seed, progress=progress)
    timings["explain_and_evaluate"] = time.perf_counter() - t
    imps = refine.explain(graphs, seed=seed, progress=False)
    store = ExplanationStore(out / "explanations", len(graphs), 4096,
                             {"dataset": "ba3", "split": "test-correct", "ratio": refine.config.ratio,
                              "steps": refine.config.fine_tune_steps, "seed": seed}, overwrite=True)
    store.write(0, len(graphs), imps)
    store.merge()
    picks = [next(i for i, g in enumerate(graphs) if int(g.y) == c) for c in range(3)
             if any(int(g.y) == c for g in graphs)]
    names = ("house", "grid", "cycle")
    png = plot_explained_graphs([graphs[i] for i in picks], [imps[i] for i in picks], refine.config.ratio,
                                out / "explained_graphs.png", titles=[names[int(graphs[i].y)] for i in picks])
    plot_acc_curves({"ReFine-FT": ft["acc"], "ReFine": full["acc"]}, out / "acc_curve.png")
    say(f"[4/4] explained {len(graphs)} correctly predicted test graphs")
    say(f"          ACC-AUC   Recall@5 (ceiling {full.get('recall@5_ceiling', float('nan')):.3f})   edge AUROC")
    for name, r in (("ReFine-FT", ft), ("ReFine", full)):
        say(f"{name:10s} {r['acc_auc']:.3f}     {r.get('recall@5', float('nan')):.3f}"
            f"                       {r.get('auroc_pooled', float('nan')):.3f}")
    say(f"written: {out / 'explanations' / 'explanations.pt'}, {png}, {out / 'acc_curve.png'}")
    result = {"refine_ft": ft, "refine": full, "gnn": gnn, "seconds": timings, "out": str(out)}
    atomic_write_text(json.dumps(result, indent=1, default=float), out / "demo.json")
    return result
