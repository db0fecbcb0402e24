"""The ``refine-fast`` command: demo, train-gnn, pretrain, explain, evaluate.

Progress bars go to stderr; ``--json`` prints one JSON object with the results to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

DATASETS = ("ba3", "mutag", "mnist")


def _say(args, *parts) -> None:
    """Human-readable output: stdout normally, stderr under --json (stdout is the JSON)."""
    print(*parts, file=sys.stderr if args.json else sys.stdout, flush=True)


def _emit(args, result: Dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result, indent=1, default=float))


def _common(p: argparse.ArgumentParser, dataset: bool = True, dataset_required: bool = True) -> None:
    if dataset:
        p.add_argument("--dataset", choices=DATASETS, required=dataset_required, help="ba3, mutag or mnist")
        p.add_argument("--data-root", default=None,
                       help="folder holding mutagenicity/ and mnist/ raw files (a ../shared/data-style root); "
                            "not needed for ba3, which is generated")
        p.add_argument("--cache-dir", default=None, help="where processed datasets are cached "
                                                         "(default $REFINE_FAST_CACHE or ~/.cache/refine_fast)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    _device_option(p)
    p.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (default: the GPU when torch sees one and refine_fast has CUDA kernels, else the "
                        "CPU), cpu, cuda (under torchrun: cuda:LOCAL_RANK %% GPU count) or cuda:N")


def _select_option(p: argparse.ArgumentParser) -> None:
    from .explain.fine_tune import SELECT

    p.add_argument("--select", choices=SELECT, default="sample",
                   help="how each fine-tuning step picks its ρ·|E| edges: sample (by probability, paper Eq. 9) "
                        "or top (the top-ρ edges, as the reference implementation)")


def _table_datasets(text: str) -> str:
    """``--dataset`` of ``evaluate``: a dataset, ``all``, or a comma-separated list of datasets."""
    names = text.split(",")
    if text != "all" and any(n not in DATASETS for n in names):
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DATASETS)}, all, or a comma-separated "
                                         f"list of datasets, got {text!r}")
    return text


def _load(args):
    from .models import load_splits

    if args.dataset != "ba3" and args.data_root is None:
        raise SystemExit(f"refine-fast: --data-root is required for --dataset {args.dataset}")
    dataset, splits = load_splits(args.dataset, args.data_root or ".", args.cache_dir)
    return dataset, dict(zip(("train", "val", "test"), splits))


def _dims(dataset) -> Dict[str, int]:
    """Node/edge feature sizes the attributors read (edge features of size ≤ 1 are ignored, as in ReFine)."""
    edge_dim = int(dataset.num_edge_features)
    return {"num_classes": int(dataset.num_classes), "node_dim": int(dataset.num_node_features),
            "edge_dim": edge_dim if edge_dim > 1 else 0}


def _variant_overrides(variant: str) -> Dict[str, Any]:
    return {"refine": {}, "ct": {"gamma": 0.0}, "pg": {"gamma": 0.0, "class_wise": False}}[variant]


def _correct(model, graphs) -> List:
    from .metrics import correct_subset

    index, _ = correct_subset(model, graphs)
    return [graphs[int(i)] for i in index]


# --------------------------------------------------------------------------- train-gnn
def cmd_train_gnn(args) -> Dict[str, Any]:
    from .models import train_for_dataset

    if args.dataset != "ba3" and args.data_root is None:
        raise SystemExit(f"refine-fast: --data-root is required for --dataset {args.dataset}")
    metrics = train_for_dataset(args.dataset, args.data_root or ".", args.out, epochs=args.epochs, seed=args.seed,
                                progress=not args.no_progress, cache_dir=args.cache_dir, device=_device())
    _say(args, f"test accuracy {metrics.get('test_acc', float('nan')):.4f}; model written to {metrics['model_path']}")
    return metrics


# --------------------------------------------------------------------------- pretrain
def _pretrain(dataset, splits, model, name: str, args, world: int = 1) -> "Any":
    from .explain import ReFine, ReFineConfig

    overrides = _variant_overrides(args.variant)
    if args.hidden is not None:
        overrides["hidden"] = args.hidden
    config = ReFineConfig.for_dataset(name, **overrides)
    refine = ReFine(model, config=config, seed=args.seed, **_dims(dataset)).to(_device())
    if world > 1:  # data parallel over the torchrun ranks, same global batches as one process
        from .explain.distributed import pretrain_refine

        history = pretrain_refine(refine, splits["train"], epochs=args.epochs, seed=args.seed,
                                  val_dataset=splits["val"], progress=not args.no_progress)
    else:
        history = refine.pretrain(splits["train"], epochs=args.epochs, seed=args.seed, val_dataset=splits["val"],
                                  progress=not args.no_progress)
    return refine, history


def cmd_pretrain(args) -> Dict[str, Any]:
    from .models import load_model

    rank, world = _distributed()
    dataset, splits = _load(args)
    model = load_model(args.model, map_location=_device())
    start = time.perf_counter()
    refine, history = _pretrain(dataset, splits, model, args.dataset, args, world)
    seconds = time.perf_counter() - start
    if rank == 0:  # every rank holds the same attributors
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        refine.save(args.out)
        _say(args, f"pre-trained {args.variant} in {seconds:.1f}s; explainer written to {args.out}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return {"explainer": str(args.out), "seconds": seconds, "variant": args.variant, "rank": rank,
            "world_size": world, "config": refine.config.to_dict(), "history": history}


# --------------------------------------------------------------------------- explain
def _distributed():
    """``(rank, world_size)``; joins the torchrun process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        on_gpu = _device().type == "cuda"
        if on_gpu:
            torch.cuda.set_device(_device())
        dist.init_process_group("nccl" if on_gpu else "gloo")
    return dist.get_rank(), dist.get_world_size()


_DEVICE: Optional[torch.device] = None  # this process's device, resolved from --device by main


def _device() -> torch.device:
    """This process's device (``--device``, see :func:`refine_fast.device.resolve_device`)."""
    if _DEVICE is None:
        from .device import resolve_device

        return resolve_device(None)
    return _DEVICE


def _shard(chunks, loads: List[int], rank: int, world: int):
    """Chunks of this rank: greedy by ``loads`` (edges per chunk), largest first, so ranks get similar work."""
    load = [0] * world
    mine = []
    for k in sorted(range(len(chunks)), key=lambda k: -loads[k]):
        r = min(range(world), key=lambda i: (load[i], i))
        load[r] += loads[k]
        if r == rank:
            mine.append(chunks[k])
    return sorted(mine)


def _chunk_loads(source, ids, chunks, rank: int, world: int) -> List[int]:
    """Edges per chunk, each rank reading every world-th chunk (one chunk in memory at a time)."""
    from .stream import chunk_edges

    loads = torch.zeros(len(chunks), dtype=torch.long, device=_device())
    mine = list(range(rank, len(chunks), world))
    loads[mine] = torch.tensor(chunk_edges(source, ids, [chunks[k] for k in mine]), dtype=torch.long,
                               device=loads.device)
    torch.distributed.all_reduce(loads)
    return loads.tolist()


def _id_range(text: Optional[str], n: int) -> tuple:
    """``START:STOP`` (either may be empty) → a checked ``(start, stop)`` within ``0..n``."""
    if text is None:
        return 0, n
    try:
        if text.count(":") != 1:
            raise ValueError(text)
        start, stop = (int(v) if v else d for v, d in zip(text.split(":"), (0, n)))
    except ValueError:
        raise SystemExit(f"refine-fast explain: --id-range must be START:STOP, got {text!r}") from None
    if not 0 <= start <= stop <= n:
        raise SystemExit(f"refine-fast explain: --id-range {text} is outside the {n} graphs of --graphs")
    return start, stop


def _open_graphs(command: str, root: str):
    """The on-disk graph set of ``--graphs``; a missing or foreign folder exits naming the argument."""
    from .datasets import open_graphs

    try:
        return open_graphs(root)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"refine-fast {command}: --graphs {root}: {error}") from None


def _explain_source(args):
    """``(graphs, ids, meta)``: --dataset's --split held in memory, or --graphs' id range read from disk."""
    if (args.dataset is None) == (args.graphs is None):
        raise SystemExit("refine-fast explain: give exactly one of --dataset NAME or --graphs DIR")
    if args.graphs is None:
        if args.id_range is not None:
            raise SystemExit("refine-fast explain: --id-range applies only to --graphs (use --split with --dataset)")
        split = args.split or "test"
        dataset, _ = _load(args)
        ids = torch.arange(len(dataset)) if split == "all" else dataset.split_idx[split]
        return dataset, ids, {"dataset": args.dataset, "split": split}
    if args.split is not None:
        raise SystemExit("refine-fast explain: --split applies only to --dataset; with --graphs use --id-range")
    graphs = _open_graphs("explain", args.graphs)
    start, stop = _id_range(args.id_range, len(graphs))
    return graphs, range(start, stop), {"graphs": str(Path(args.graphs).resolve()), "id_range": [start, stop]}


def cmd_explain(args) -> Dict[str, Any]:
    from .explain import ReFine
    from .models import load_model
    from .store import ExplanationStore
    from .stream import explain_to_store

    source, ids, meta = _explain_source(args)
    rank, world = _distributed()
    model = load_model(args.model, map_location=_device())
    refine = ReFine.load(args.explainer, model).to(_device())
    meta.update({"ratio": args.ratio, "steps": args.steps, "lr": args.lr, "seed": args.seed, "select": args.select,
                 "explainer": str(Path(args.explainer).resolve()), "model": str(Path(args.model).resolve())})
    # Only rank 0 may clear an old run; the others wait, then open the fresh manifest.
    if rank == 0:
        store = ExplanationStore(args.out, len(ids), args.chunk_size, meta, overwrite=args.overwrite)
    if world > 1:
        torch.distributed.barrier()
    if rank != 0:
        store = ExplanationStore(args.out, len(ids), args.chunk_size, meta)
    todo = list(store.pending())
    if world > 1:
        todo = _shard(todo, _chunk_loads(source, ids, todo, rank, world), rank, world)
    start = time.perf_counter()
    explained = explain_to_store(refine, source, store, ids, todo, ratio=args.ratio, steps=args.steps, lr=args.lr,
                                 seed=args.seed, batch_size=args.batch_size, select=args.select,
                                 progress=not args.no_progress,
                                 desc=f"explain (rank {rank})" if world > 1 else "explain")
    seconds = time.perf_counter() - start
    if world > 1:
        torch.distributed.barrier()
    result = {"rank": rank, "world_size": world, "graphs_explained_now": explained,
              "graphs_total": len(ids), "seconds": seconds,
              "graphs_per_second": explained / seconds if seconds > 0 and explained else None}
    if rank == 0:
        result["explanations"] = str(store.dir if args.no_merge else store.merge())
        _say(args, f"explained {explained} graphs now ({len(ids)} in all) in {seconds:.1f}s; "
                   f"written to {result['explanations']}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result


# --------------------------------------------------------------------------- evaluate
def _explained_graphs(args, meta: Dict[str, Any], ids: torch.Tensor) -> List:
    """The graphs of an explain run, in memory: from --dataset, else from --graphs or the on-disk graph
    set the run's manifest names."""
    if args.dataset is not None and args.graphs is not None:
        raise SystemExit("refine-fast evaluate: give at most one of --dataset NAME or --graphs DIR")
    if args.dataset is not None:
        dataset, _ = _load(args)
        return [dataset[int(i)] for i in ids]
    root = args.graphs or meta.get("graphs")
    if root is None:
        raise SystemExit("refine-fast evaluate: --dataset NAME or --graphs DIR is required (the explanations "
                         "in --explanations were not made from an on-disk graph set)")
    from .stream import fetch

    return fetch(_open_graphs("evaluate", root), ids)


def cmd_evaluate(args) -> Dict[str, Any]:
    if args.table:
        from .tables import run_tables

        if args.out is None:
            raise SystemExit("refine-fast evaluate --table: --out is required")
        if args.device not in ("auto", "cpu"):
            raise SystemExit(f"refine-fast evaluate --table: the tables run on the CPU (Table 4 times CPU runs); "
                             f"--device {args.device} is not supported")
        return run_tables(args.dataset or "all", args.data_root or ".", args.out, seeds=args.seeds, quick=args.quick,
                          model_dir=args.model_dir, progress=not args.no_progress, resume=not args.fresh,
                          cache_dir=args.cache_dir, threads=1 if args.threads is None else args.threads,
                          compute=not args.render_only)
    if args.model is None:
        raise SystemExit("refine-fast evaluate: --model is required (or use --table)")
    if (args.explanations is None) == (args.explainer is None):
        raise SystemExit("refine-fast evaluate: give exactly one of --explanations DIR or --explainer FILE")
    if args.dataset is not None and args.dataset not in DATASETS:
        raise SystemExit(f"refine-fast evaluate: --dataset must be one of {', '.join(DATASETS)} without --table")
    if args.explainer is not None and args.dataset is None:
        raise SystemExit("refine-fast evaluate: --explainer needs --dataset (one of ba3, mutag, mnist)")
    from .evaluation import evaluate_refine, ground_truth_metrics
    from .metrics import EvalGraphs, acc_auc, correct_subset
    from .models import load_model
    from .plot import plot_acc_curves
    from .store import load_explanations

    model = load_model(args.model, map_location=_device())
    if args.explainer is not None:
        from .explain import ReFine

        _, splits = _load(args)
        refine = ReFine.load(args.explainer, model).to(_device())
        graphs = _correct(model, splits[args.split])
        result = {"refine_ft": evaluate_refine(refine, graphs, fine_tune=False, seed=args.seed),
                  "refine": evaluate_refine(refine, graphs, steps=args.steps, seed=args.seed,
                                            progress=not args.no_progress, select=args.select)}
        curves = {"ReFine-FT": result["refine_ft"]["acc"], "ReFine": result["refine"]["acc"]}
    else:
        ids, imps, meta = load_explanations(args.explanations)
        graphs = _explained_graphs(args, meta, ids)
        index, counts = correct_subset(model, graphs)
        graphs = [graphs[int(i)] for i in index]
        imps = [imps[int(i)] for i in index]
        batch = EvalGraphs.of(graphs)
        metrics = acc_auc(model, batch, imps)
        metrics.update(ground_truth_metrics(batch, imps), **counts)
        result = {"explanations": metrics, "meta": meta}
        curves = {meta.get("explainer", "explanations"): metrics["acc"]}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(result, indent=1, default=float))
        result["plot"] = str(plot_acc_curves(curves, out / "acc_curve.png"))
    for name, r in result.items():
        if isinstance(r, dict) and "acc_auc" in r:
            extra = "".join(f", {k} {r[k]:.3f}" for k in ("recall@5", "recall@5_ceiling", "auroc_pooled") if k in r)
            _say(args, f"{name}: ACC-AUC {r['acc_auc']:.3f} on {r['num_graphs']} graphs{extra}")
    return result


# --------------------------------------------------------------------------- demo
def cmd_demo(args) -> Dict[str, Any]:
    from .evaluation import evaluate_refine
    from .models import load_model, load_splits, train_for_dataset
    from .plot import plot_acc_curves, plot_explained_graphs
    from .store import ExplanationStore

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: Dict[str, float] = {}
    t = time.perf_counter()
    dataset, (train, val, test) = load_splits("ba3", ".", out / "data", data_seed=args.seed)
    timings["generate_ba3motif"] = time.perf_counter() - t
    _say(args, f"[1/4] BA-3motif: {len(dataset)} graphs ({len(train)} train / {len(val)} val / {len(test)} test)")

    t = time.perf_counter()
    gnn = train_for_dataset("ba3", ".", out / "model", epochs=args.gnn_epochs, seed=args.seed,
                            progress=not args.no_progress, cache_dir=out / "data", data_seed=args.seed,
                            device=_device())
    model = load_model(out / "model" / "model.pt", map_location=_device())
    timings["train_gnn"] = time.perf_counter() - t
    _say(args, f"[2/4] target GNN (LEConv): test accuracy {gnn.get('test_acc', float('nan')):.3f}")

    t = time.perf_counter()
    args.variant, args.hidden = "refine", None
    refine, _ = _pretrain(dataset, {"train": train, "val": val}, model, "ba3", args)
    refine.save(out / "explainer.pt")
    timings["pretrain"] = time.perf_counter() - t
    _say(args, f"[3/4] ReFine pre-trained ({refine.config.epochs if args.epochs is None else args.epochs} epochs) "
               f"in {timings['pretrain']:.0f}s")

    t = time.perf_counter()
    graphs = _correct(model, list(test))
    ft = evaluate_refine(refine, graphs, fine_tune=False, seed=args.seed)
    full = evaluate_refine(refine, graphs, seed=args.seed, progress=not args.no_progress)
    timings["explain_and_evaluate"] = time.perf_counter() - t
    imps = refine.explain(graphs, seed=args.seed, progress=False)
    store = ExplanationStore(out / "explanations", len(graphs), 4096,
                             {"dataset": "ba3", "split": "test-correct", "ratio": refine.config.ratio,
                              "steps": refine.config.fine_tune_steps, "seed": args.seed}, overwrite=True)
    store.write(0, len(graphs), imps)
    store.merge()
    picks = [next(i for i, g in enumerate(graphs) if int(g.y) == c) for c in range(3) if any(int(g.y) == c for g in graphs)]
    names = ("house", "grid", "cycle")
    png = plot_explained_graphs([graphs[i] for i in picks], [imps[i] for i in picks], refine.config.ratio,
                                out / "explained_graphs.png", titles=[names[int(graphs[i].y)] for i in picks])
    plot_acc_curves({"ReFine-FT": ft["acc"], "ReFine": full["acc"]}, out / "acc_curve.png")
    _say(args, f"[4/4] explained {len(graphs)} correctly predicted test graphs")
    _say(args, f"          ACC-AUC   Recall@5 (ceiling {full.get('recall@5_ceiling', float('nan')):.3f})   edge AUROC")
    for name, r in (("ReFine-FT", ft), ("ReFine", full)):
        _say(args, f"{name:10s} {r['acc_auc']:.3f}     {r.get('recall@5', float('nan')):.3f}"
                   f"                       {r.get('auroc_pooled', float('nan')):.3f}")
    _say(args, f"written: {out / 'explanations' / 'explanations.pt'}, {png}, {out / 'acc_curve.png'}")
    result = {"refine_ft": ft, "refine": full, "gnn": gnn, "seconds": timings, "out": str(out)}
    (out / "demo.json").write_text(json.dumps(result, indent=1, default=float))
    return result


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refine-fast", description="ReFine explanations for PyG graph classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="BA-3motif end to end: train the GNN, pre-train, explain, evaluate, plot")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--gnn-epochs", type=int, default=None, help="target GNN epochs (default: the dataset's)")
    p.add_argument("--epochs", type=int, default=None, help="pre-training epochs (default: the paper's 25)")
    _common(p, dataset=False)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train-gnn", help="train a dataset's target GNN")
    _common(p)
    p.add_argument("--out", required=True, help="folder for model.pt and metrics.json")
    p.add_argument("--epochs", type=int, default=None)
    p.set_defaults(func=cmd_train_gnn)

    p = sub.add_parser("pretrain", help="pre-train ReFine's class-wise attributors")
    _common(p)
    p.add_argument("--model", required=True, help="target GNN file written by train-gnn")
    p.add_argument("--out", required=True, help="explainer file to write")
    p.add_argument("--epochs", type=int, default=None, help="default: the paper's setting for the dataset")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--variant", choices=("refine", "ct", "pg"), default="refine",
                   help="refine; ct = no contrastive term (ReFine-CT); pg = one shared attributor, "
                        "no contrastive term (PGExplainer-equivalent)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("explain", help="explain a split or an on-disk graph set in resumable chunks "
                                       "(runs under torchrun too)")
    _common(p, dataset_required=False)
    p.add_argument("--graphs", default=None,
                   help="instead of --dataset: an OnDiskDataset folder (refine_fast.datasets.write_graphs), "
                        "streamed one chunk at a time")
    p.add_argument("--model", required=True)
    p.add_argument("--explainer", required=True, help="file written by pretrain")
    p.add_argument("--out", required=True, help="output folder: explanations.pt + resumable chunks")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default=None,
                   help="with --dataset (default test)")
    p.add_argument("--id-range", default=None, metavar="START:STOP",
                   help="with --graphs: explain graph ids START..STOP-1 (default all)")
    p.add_argument("--ratio", type=float, default=None, help="default: the explainer's config")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps (0 = ReFine-FT)")
    p.add_argument("--lr", type=float, default=None)
    _select_option(p)
    p.add_argument("--batch-size", type=int, default=None, help="graphs fine-tuned at once")
    p.add_argument("--chunk-size", type=int, default=4096, help="graphs per resumable chunk")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier run in --out")
    p.add_argument("--no-merge", action="store_true",
                   help="leave the results in chunks (load_explanations reads them) instead of merging "
                        "them into explanations.pt, which takes 4 bytes per edge + 16 per graph of memory")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("evaluate", help="ACC@ρ curve, ACC-AUC, Recall@N (or the paper's tables with --table)")
    p.add_argument("--dataset", type=_table_datasets, default=None,
                   help="ba3, mutag or mnist; with --table also all or a comma-separated list (ba3,mutag)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--explanations", default=None, help="folder or file written by explain")
    p.add_argument("--graphs", default=None, help="with --explanations: the OnDiskDataset folder they explain "
                                                  "(default: the one named in their manifest)")
    p.add_argument("--explainer", default=None, help="evaluate ReFine-FT and ReFine (fine-tuned at each ρ)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--steps", type=int, default=None)
    _select_option(p)
    p.add_argument("--out", default=None, help="folder for evaluation.json and acc_curve.png")
    p.add_argument("--table", action="store_true", help="regenerate the paper's Tables 2-4")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--model-dir", default=None, help="with --table: folder of trained target GNNs "
                                                      "(default: trained into OUT/models)")
    p.add_argument("--fresh", action="store_true", help="with --table: recompute finished results")
    p.add_argument("--render-only", action="store_true",
                   help="with --table: render the tables from the results finished so far, compute nothing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; with --table 1, so that Table 4 times "
                        "every explainer at the same setting)")
    _device_option(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    global _DEVICE
    from .device import resolve_device

    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        _DEVICE = resolve_device(args.device)
    except ValueError as error:
        raise SystemExit(f"refine-fast {args.command}: --device: {error}") from None
    result = args.func(args)
    _emit(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
