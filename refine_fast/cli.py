"""The ``refine-fast`` command: demo, train-gnn, pretrain, explain, evaluate.

Progress bars go to stderr; ``--json`` prints one JSON object with the results to stdout. Every
number is checked when the options are parsed; a user error (a bad option, a missing or unreadable
file, data that does not fit the model) prints one line ``refine-fast <command>: error: ...`` on
stderr and exits with code 2 (``--debug`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from .device import join_torchrun, resolve_device

DATASETS = ("ba3", "mutag", "mnist")
# Errors of the user's making: one line on stderr, exit code 2. ValueError covers the library's
# checks of arguments and files; OSError covers missing, unreadable and unwritable files (a full disk).
USER_ERRORS = (ValueError, OSError)


class UsageError(ValueError):
    """A user error found by the command line itself (its message names the option)."""


class _Parser(argparse.ArgumentParser):
    """Option errors as one line, ``PROG: error: MESSAGE`` (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: Callable[[str], Any], what: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that must satisfy ``ok``, else an error saying ``what`` was expected."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or (isinstance(value, float) and not math.isfinite(value)) or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what  # argparse names the type in some messages
    return parse


def _at_least(low: int) -> Callable[[str], int]:
    return _number(int, f"an integer >= {low}", lambda v: v >= low)


POSITIVE_INT = _at_least(1)
SEED = _number(int, "an integer in [0, 2**63)", lambda v: 0 <= v < 2 ** 63)
RATIO = _number(float, "a number in (0, 1]", lambda v: 0.0 < v <= 1.0)
POSITIVE_FLOAT = _number(float, "a finite number > 0", lambda v: v > 0.0)


def _id_range_text(text: str) -> tuple:
    """``START:STOP`` (either may be empty) → ``(start | None, stop | None)``, non-negative, start <= stop."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(v) if v.strip() else None for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP (graph ids, either may be empty), "
                                         f"got {text!r}") from None
    if (start is not None and start < 0) or (stop is not None and stop < 0) or (
            start is not None and stop is not None and start > stop):
        raise argparse.ArgumentTypeError(f"expected 0 <= START <= STOP, got {text!r}")
    return start, stop


def _existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no file at {text}" + (" (a directory)" if Path(text).is_dir() else ""))
    return text


def _existing_dir(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no directory at {text}")
    return text


def _one_line(error: Any) -> str:
    return " ".join(str(error).split())


@contextmanager
def _warnings_as_lines(prog: str):
    """Show each warning as one line ``PROG: warning: ...`` on stderr."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {_one_line(message)}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _say(args, *parts) -> None:
    """Human-readable output: stdout normally, stderr under --json (stdout is the JSON)."""
    print(*parts, file=sys.stderr if args.json else sys.stdout, flush=True)


def _emit(args, result: Dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result, indent=1, default=float))


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (stderr)")
    p.add_argument("--debug", action="store_true", help="on an error, show the Python traceback")


def _common(p: argparse.ArgumentParser, dataset: bool = True, dataset_required: bool = True) -> None:
    if dataset:
        p.add_argument("--dataset", choices=DATASETS, required=dataset_required, help="ba3, mutag or mnist")
        p.add_argument("--data-root", default=None,
                       help="folder holding mutagenicity/ and mnist/ raw files (a ../shared/data-style root); "
                            "not needed for ba3, which is generated")
        p.add_argument("--cache-dir", default=None, help="where processed datasets are cached "
                                                         "(default $REFINE_FAST_CACHE or ~/.cache/refine_fast)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--threads", type=POSITIVE_INT, default=None, help="torch CPU threads (default: torch's choice)")
    _device_option(p)
    _output_options(p)


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (default: the GPU when torch sees one and refine_fast has CUDA kernels, else the "
                        "CPU), cpu, cuda (under torchrun: cuda:LOCAL_RANK %% GPU count) or cuda:N")


def _select_option(p: argparse.ArgumentParser) -> None:
    from .explain.fine_tune import SELECT

    p.add_argument("--select", choices=SELECT, default="sample",
                   help="how each fine-tuning step picks its ρ·|E| edges: sample (by probability, paper Eq. 9) "
                        "or top (the top-ρ edges, as the reference implementation)")


def _allow_other_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-other-model", action="store_true",
                   help="use an explainer file pre-trained for another target model than --model (refused "
                        "otherwise: the file records the fingerprint of its model)")


def _table_datasets(text: str) -> str:
    """``--dataset`` of ``evaluate``: a dataset, ``all``, or a comma-separated list of datasets."""
    names = text.split(",")
    if text != "all" and any(n not in DATASETS for n in names):
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(DATASETS)}, all, or a comma-separated "
                                         f"list of datasets, got {text!r}")
    return text


def _need_data_root(args) -> None:
    if args.dataset != "ba3" and args.data_root is None:
        raise UsageError(f"--data-root is required for --dataset {args.dataset}")
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise UsageError(f"--data-root {args.data_root}: no such directory")


def _load(args):
    from .models import load_splits

    _need_data_root(args)
    try:
        dataset, splits = load_splits(args.dataset, args.data_root or ".", args.cache_dir)
    except FileNotFoundError as error:
        raise UsageError(f"--data-root {args.data_root}: {error}") from None
    return dataset, dict(zip(("train", "val", "test"), splits))


def _load_model(args, map_location="cpu"):
    """The target GNN of ``--model``; an unreadable file is an error naming the option."""
    from .models import load_model

    try:
        return load_model(args.model, map_location=map_location)
    except ValueError as error:
        raise UsageError(f"--model: {error}") from None


def _load_explainer(args, model):
    """ReFine from ``--explainer`` for ``model``; another model's explainer is refused unless
    ``--allow-other-model`` (then a warning)."""
    from .explain import ReFine

    try:
        return ReFine.load(args.explainer, model, strict_model=not args.allow_other_model)
    except ValueError as error:
        hint = " (pass --allow-other-model to use it anyway)" if "another model" in str(error) else ""
        raise UsageError(f"--explainer: {error}{hint}") from None


def _widths(graph) -> tuple:
    """``(node features, edge features)`` of a graph (``None`` where it has none)."""
    width = graph.x.size(-1) if getattr(graph, "x", None) is not None else None
    attr = getattr(graph, "edge_attr", None)
    return width, attr.size(-1) if attr is not None and attr.dim() == 2 else None


def _check_model_fits(graph, where: str, model) -> None:
    """The ``--model`` file against one graph of the command's data (feature widths), so a model made
    for another dataset is named instead of failing in a matrix product."""
    config = getattr(model, "config", {})
    width, edge_width = _widths(graph)
    if "in_channels" in config and width is not None and config["in_channels"] != width:
        raise UsageError(f"--model: a {type(model).__name__} for {config['in_channels']} node features, but the graphs "
                         f"of {where} have {width}")
    if config.get("edge_dim") and edge_width is not None and config["edge_dim"] != edge_width:
        raise UsageError(f"--model: a {type(model).__name__} for {config['edge_dim']} edge features, but the graphs "
                         f"of {where} have {edge_width}")


def _check_explainer_fits(graph, where: str, model, refine) -> None:
    """The ``--explainer`` file against one graph of the data and the model (widths, class count)."""
    config = getattr(model, "config", {})
    width, edge_width = _widths(graph)
    a = refine.attributors
    if width is not None and a.node_dim != width:
        raise UsageError(f"--explainer: attributors for {a.node_dim} node features, but the graphs of {where} "
                         f"have {width}")
    if a.edge_dim and a.edge_dim != edge_width:
        raise UsageError(f"--explainer: attributors for {a.edge_dim} edge features, but the graphs of {where} "
                         f"have {edge_width or 0}")
    if "num_classes" in config and config["num_classes"] != refine.num_classes:
        raise UsageError(f"--explainer: pre-trained for {refine.num_classes} classes, but --model has "
                         f"{config['num_classes']}")


def _correct(model, graphs) -> List:
    from .metrics import correct_subset

    index, _ = correct_subset(model, graphs)
    return [graphs[int(i)] for i in index]


# --------------------------------------------------------------------------- train-gnn
def cmd_train_gnn(args, device: torch.device) -> Dict[str, Any]:
    from .models import train_for_dataset

    _need_data_root(args)
    try:
        metrics = train_for_dataset(args.dataset, args.data_root or ".", args.out, epochs=args.epochs,
                                    seed=args.seed, progress=not args.no_progress, cache_dir=args.cache_dir,
                                    device=device)
    except FileNotFoundError as error:
        raise UsageError(f"--data-root {args.data_root}: {error}") from None
    _say(args, f"test accuracy {metrics.get('test_acc', float('nan')):.4f}; model written to {metrics['model_path']}")
    return metrics


# --------------------------------------------------------------------------- pretrain
def _pretrain(dataset, splits, model, name: str, args, device: torch.device, world: int = 1) -> "Any":
    from .baselines.refine import VARIANTS
    from .explain import ReFine, ReFineConfig, attributor_dims

    overrides = dict(VARIANTS[args.variant])
    if args.hidden is not None:
        overrides["hidden"] = args.hidden
    config = ReFineConfig.for_dataset(name, **overrides)
    refine = ReFine(model, config=config, seed=args.seed, **attributor_dims(dataset)).to(device)
    if world > 1:  # data parallel over the torchrun ranks, same global batches as one process
        from .explain.distributed import pretrain_refine

        history = pretrain_refine(refine, splits["train"], epochs=args.epochs, seed=args.seed,
                                  val_dataset=splits["val"], progress=not args.no_progress)
    else:
        history = refine.pretrain(splits["train"], epochs=args.epochs, seed=args.seed, val_dataset=splits["val"],
                                  progress=not args.no_progress)
    return refine, history


def cmd_pretrain(args, device: torch.device) -> Dict[str, Any]:
    rank, world = join_torchrun(device)
    model = _load_model(args, map_location=device)
    dataset, splits = _load(args)
    _check_model_fits(dataset[0], f"--dataset {args.dataset}", model)
    if model.config.get("num_classes", dataset.num_classes) != dataset.num_classes:
        raise UsageError(f"--model: a {type(model).__name__} for {model.config['num_classes']} classes, but "
                         f"--dataset {args.dataset} has {dataset.num_classes}")
    start = time.perf_counter()
    refine, history = _pretrain(dataset, splits, model, args.dataset, args, device, world)
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
def _id_range(bounds: Optional[tuple], n: int) -> tuple:
    """``--id-range`` (parsed ``(start | None, stop | None)``) → ``(start, stop)`` checked within ``0..n``."""
    if bounds is None:
        return 0, n
    start, stop = (d if v is None else v for v, d in zip(bounds, (0, n)))
    if not 0 <= start <= stop <= n:
        raise UsageError(f"--id-range {start}:{stop} is outside the {n} graphs of --graphs")
    return start, stop


def _open_graphs(root: str):
    """The on-disk graph set of ``--graphs`` (schema-typed, see :mod:`refine_fast.datasets.on_disk`);
    a missing or foreign folder is an error naming the argument."""
    from .datasets import open_graphs

    try:
        return open_graphs(root)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"--graphs {root}: {error}") from None


def _explain_source(args):
    """``(graphs, ids, meta)``: --dataset's --split held in memory, or --graphs' id range read from disk;
    ``meta`` names the graph set and its content fingerprint."""
    from .datasets import dataset_sha256

    if (args.dataset is None) == (args.graphs is None):
        raise UsageError("give exactly one of --dataset NAME or --graphs DIR")
    if args.graphs is None:
        if args.id_range is not None:
            raise UsageError("--id-range applies only to --graphs (use --split with --dataset)")
        split = args.split or "test"
        dataset, _ = _load(args)
        ids = torch.arange(len(dataset)) if split == "all" else dataset.split_idx[split]
        return dataset, ids, {"dataset": args.dataset, "split": split, "data_sha256": dataset_sha256(dataset)}
    if args.split is not None:
        raise UsageError("--split applies only to --dataset; with --graphs use --id-range")
    graphs = _open_graphs(args.graphs)
    start, stop = _id_range(args.id_range, len(graphs))
    return graphs, range(start, stop), {"graphs": str(Path(args.graphs).resolve()), "graphs_sha256": graphs.sha256(),
                                        "id_range": [start, stop]}


# Manifest keys recorded for information only: the files' contents are compared through their sha256.
PATH_KEYS = ("model", "explainer", "graphs")


def cmd_explain(args, device: torch.device) -> Dict[str, Any]:
    from .fileio import file_sha256
    from .store import ExplanationStore
    from .stream import explain_to_store, fetch, rank_chunks

    source, ids, meta = _explain_source(args)
    rank, world = join_torchrun(device)
    model = _load_model(args, map_location=device)
    sample = fetch(source, [int(ids[0])])[0] if len(ids) else None
    where = f"--dataset {args.dataset}" if args.graphs is None else f"--graphs {args.graphs}"
    if sample is not None:
        _check_model_fits(sample, where, model)
    refine = _load_explainer(args, model).to(device)
    if sample is not None:
        _check_explainer_fits(sample, where, model, refine)
    config = refine.config
    # Every setting that changes a result, as used (the explainer's defaults filled in).
    settings = {"ratio": float(config.ratio if args.ratio is None else args.ratio),
                "steps": int(config.fine_tune_steps if args.steps is None else args.steps),
                "lr": float(config.fine_tune_lr if args.lr is None else args.lr),
                "batch_size": int(refine.explain_batch_size() if args.batch_size is None else args.batch_size),
                "select": args.select, "seed": args.seed, "threads": torch.get_num_threads()}
    meta.update(settings, model=str(Path(args.model).resolve()), model_sha256=file_sha256(args.model),
                explainer=str(Path(args.explainer).resolve()), explainer_sha256=file_sha256(args.explainer))
    # Nothing is written before the first chunk, so a run that fails earlier leaves --out as it was.
    # Under torchrun, rank 0 alone may clear an old run: it starts the store, the others then open it.
    if rank == 0:
        store = ExplanationStore(args.out, len(ids), args.chunk_size, meta, overwrite=args.overwrite,
                                 informational=PATH_KEYS)
        if world > 1:
            store.start()
    if world > 1:
        torch.distributed.barrier()
    if rank != 0:
        store = ExplanationStore(args.out, len(ids), args.chunk_size, meta, informational=PATH_KEYS)
    todo = store.pending()
    if world > 1:
        todo = rank_chunks(source, ids, todo, device)
    start = time.perf_counter()
    explained = explain_to_store(refine, source, store, ids, todo, ratio=settings["ratio"], steps=settings["steps"],
                                 lr=settings["lr"], seed=args.seed, batch_size=settings["batch_size"],
                                 select=args.select, progress=not args.no_progress,
                                 desc=f"explain (rank {rank})" if world > 1 else "explain")
    seconds = time.perf_counter() - start
    if world > 1:
        torch.distributed.barrier()
    result = {"rank": rank, "world_size": world, "graphs_explained_now": explained,
              "graphs_total": len(ids), "seconds": seconds,
              "graphs_per_second": explained / seconds if seconds > 0 and explained else None}
    if rank == 0:
        store.start()  # a run of no graphs wrote no chunk
        result["explanations"] = str(store.dir if args.no_merge else store.merge())
        _say(args, f"explained {explained} graphs now ({len(ids)} in all) in {seconds:.1f}s; "
                   f"written to {result['explanations']}")
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result


# --------------------------------------------------------------------------- evaluate
def _read_explanations(path: str):
    """``(ids, importances, meta)`` of ``--explanations``; unreadable or unfinished runs name the option."""
    from .store import load_explanations

    try:
        return load_explanations(path)
    except (ValueError, OSError, RuntimeError) as error:
        raise UsageError(f"--explanations: {error}") from None


def _explained_graphs(args, meta: Dict[str, Any], ids: torch.Tensor) -> List:
    """The graphs of an explain run, in memory: from --dataset, else from --graphs or the graph set the
    run's manifest names (opened only as a schema-typed set). The data must be what was explained: its
    fingerprint, when the run recorded one, must match."""
    from .datasets import dataset_sha256
    from .stream import fetch

    if args.dataset is not None and args.graphs is not None:
        raise UsageError("give at most one of --dataset NAME or --graphs DIR")
    if args.dataset is not None:
        if meta.get("dataset", args.dataset) != args.dataset:
            raise UsageError(f"--dataset {args.dataset}: the explanations were made for --dataset {meta['dataset']}")
        dataset, _ = _load(args)
        recorded, actual, what = meta.get("data_sha256"), None, f"--dataset {args.dataset}"
        if recorded is not None:
            actual = dataset_sha256(dataset)
        if len(ids) and not 0 <= int(ids.min()) <= int(ids.max()) < len(dataset):
            raise UsageError(f"--explanations: graph ids up to {int(ids.max())}, but {what} has {len(dataset)} graphs")
        graphs = [dataset[int(i)] for i in ids]
    else:
        root = args.graphs or meta.get("graphs")
        if root is None:
            raise UsageError("--dataset NAME or --graphs DIR is required (the explanations in --explanations were "
                             "not made from an on-disk graph set)")
        source = _open_graphs(root)
        recorded, what = meta.get("graphs_sha256"), f"--graphs {root}"
        actual = source.sha256() if recorded is not None else None
        if len(ids) and not 0 <= int(ids.min()) <= int(ids.max()) < len(source):
            raise UsageError(f"--explanations: graph ids up to {int(ids.max())}, but {what} has {len(source)} graphs")
        graphs = fetch(source, ids)
    if recorded is not None and actual != recorded:
        raise UsageError(f"{what}: not the graphs the explanations were made from (content sha256 {actual[:12]}…, "
                         f"recorded {recorded[:12]}…)")
    return graphs


def cmd_evaluate(args, device: torch.device) -> Dict[str, Any]:
    if args.table:
        from .tables import run_tables

        if args.out is None:
            raise UsageError("--table needs --out")
        if args.device not in ("auto", "cpu"):
            raise UsageError(f"--table runs on the CPU (Table 4 times CPU runs); --device {args.device} is not "
                             f"supported")
        return run_tables(args.dataset or "all", args.data_root or ".", args.out, seeds=args.seeds, quick=args.quick,
                          model_dir=args.model_dir, progress=not args.no_progress, resume=not args.fresh,
                          cache_dir=args.cache_dir, threads=1 if args.threads is None else args.threads,
                          compute=not args.render_only, reference_models=args.reference_models)
    if args.model is None:
        raise UsageError("--model is required (or use --table)")
    if (args.explanations is None) == (args.explainer is None):
        raise UsageError("give exactly one of --explanations DIR or --explainer FILE")
    if args.dataset is not None and args.dataset not in DATASETS:
        raise UsageError(f"--dataset must be one of {', '.join(DATASETS)} without --table")
    if args.explainer is not None and args.dataset is None:
        raise UsageError("--explainer needs --dataset (one of ba3, mutag, mnist)")
    from .evaluation import evaluate_refine
    from .metrics import EvalGraphs, acc_auc, correct_subset, ground_truth_metrics
    from .plot import plot_acc_curves

    model = _load_model(args, map_location=device)
    if args.explainer is not None:
        refine = _load_explainer(args, model).to(device)
        _, splits = _load(args)
        where = f"--dataset {args.dataset}"
        _check_model_fits(splits[args.split][0], where, model)
        _check_explainer_fits(splits[args.split][0], where, model, refine)
        graphs = _correct(model, splits[args.split])
        result = {"refine_ft": evaluate_refine(refine, graphs, fine_tune=False, seed=args.seed,
                                               progress=not args.no_progress),
                  "refine": evaluate_refine(refine, graphs, steps=args.steps, seed=args.seed,
                                            progress=not args.no_progress, select=args.select)}
        curves = {"ReFine-FT": result["refine_ft"]["acc"], "ReFine": result["refine"]["acc"]}
    else:
        ids, imps, meta = _read_explanations(args.explanations)
        graphs = _explained_graphs(args, meta, ids)
        for i, (graph, imp) in enumerate(zip(graphs, imps)):
            if imp.numel() != graph.num_edges:
                raise UsageError(f"--explanations: graph {int(ids[i])} has {graph.num_edges} edges but "
                                 f"{imp.numel()} importances: they explain other graphs")
        if graphs:
            _check_model_fits(graphs[0], "--explanations", model)
        index, counts = correct_subset(model, graphs)
        graphs = [graphs[int(i)] for i in index]
        imps = [imps[int(i)] for i in index]
        batch = EvalGraphs.of(graphs)
        metrics = acc_auc(model, batch, imps)
        metrics.update(ground_truth_metrics(batch, imps, model=model), **counts)
        result = {"explanations": metrics, "meta": meta}
        curves = {meta.get("explainer", "explanations"): metrics["acc"]}
    if args.out:
        from .fileio import atomic_write_text

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(result, indent=1, default=float), out / "evaluation.json")
        result["plot"] = str(plot_acc_curves(curves, out / "acc_curve.png"))
    for name, r in result.items():
        if isinstance(r, dict) and "acc_auc" in r:
            extra = "".join(f", {k} {r[k]:.3f}" for k in ("recall@5", "recall@5_ceiling", "auroc_pooled", "auroc_needed")
                            if k in r)
            _say(args, f"{name}: ACC-AUC {r['acc_auc']:.3f} on {r['num_graphs']} graphs{extra}")
    return result


# --------------------------------------------------------------------------- demo
def cmd_demo(args, device: torch.device) -> Dict[str, Any]:
    from .demo import run_demo

    return run_demo(args.out, seed=args.seed, gnn_epochs=args.gnn_epochs, epochs=args.epochs, device=device,
                    progress=not args.no_progress, say=lambda line: _say(args, line))


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The command line; every number is checked here (type and range), so an error names its option."""
    parser = _Parser(prog="refine-fast", description="ReFine explanations for PyG graph classifiers.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="BA-3motif end to end: train the GNN, pre-train, explain, evaluate, plot")
    p.add_argument("--out", default="demo_out")
    p.add_argument("--gnn-epochs", type=POSITIVE_INT, default=None, help="target GNN epochs (default: the dataset's)")
    p.add_argument("--epochs", type=POSITIVE_INT, default=None, help="pre-training epochs (default: the paper's 25)")
    _common(p, dataset=False)
    p.set_defaults(func=cmd_demo, parser=p)

    p = sub.add_parser("train-gnn", help="train a dataset's target GNN")
    _common(p)
    p.add_argument("--out", required=True, help="folder for model.pt and metrics.json")
    p.add_argument("--epochs", type=POSITIVE_INT, default=None, help="default: the dataset's setting")
    p.set_defaults(func=cmd_train_gnn, parser=p)

    p = sub.add_parser("pretrain", help="pre-train ReFine's class-wise attributors")
    _common(p)
    p.add_argument("--model", type=_existing_file, required=True, help="target GNN file written by train-gnn")
    p.add_argument("--out", required=True, help="explainer file to write")
    p.add_argument("--epochs", type=POSITIVE_INT, default=None, help="default: the paper's setting for the dataset")
    p.add_argument("--hidden", type=POSITIVE_INT, default=None)
    p.add_argument("--variant", choices=("refine", "ct", "pg"), default="refine",
                   help="refine; ct = no contrastive term (ReFine-CT); pg = one shared attributor, "
                        "no contrastive term (PGExplainer-equivalent)")
    p.set_defaults(func=cmd_pretrain, parser=p)

    p = sub.add_parser("explain", help="explain a split or an on-disk graph set in resumable chunks "
                                       "(runs under torchrun too)")
    _common(p, dataset_required=False)
    p.add_argument("--graphs", default=None,
                   help="instead of --dataset: a graph set folder (refine_fast.datasets.write_graphs), "
                        "streamed one chunk at a time")
    p.add_argument("--model", type=_existing_file, required=True)
    p.add_argument("--explainer", type=_existing_file, required=True, help="file written by pretrain")
    _allow_other_model_option(p)
    p.add_argument("--out", required=True, help="output folder: explanations.pt + resumable chunks")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default=None,
                   help="with --dataset (default test)")
    p.add_argument("--id-range", type=_id_range_text, default=None, metavar="START:STOP",
                   help="with --graphs: explain graph ids START..STOP-1 (default all)")
    p.add_argument("--ratio", type=RATIO, default=None, help="in (0, 1]; default: the explainer's config")
    p.add_argument("--steps", type=_at_least(0), default=None, help="fine-tuning steps (0 = ReFine-FT)")
    p.add_argument("--lr", type=POSITIVE_FLOAT, default=None, help="fine-tuning learning rate")
    _select_option(p)
    p.add_argument("--batch-size", type=POSITIVE_INT, default=None, help="graphs fine-tuned at once")
    p.add_argument("--chunk-size", type=POSITIVE_INT, default=4096, help="graphs per resumable chunk")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier run in --out")
    p.add_argument("--no-merge", action="store_true",
                   help="leave the results in chunks (load_explanations reads them) instead of merging "
                        "them into explanations.pt, which takes 4 bytes per edge + 16 per graph of memory")
    p.set_defaults(func=cmd_explain, parser=p)

    p = sub.add_parser("evaluate", help="ACC@ρ curve, ACC-AUC, Recall@N (or the paper's tables with --table)")
    p.add_argument("--dataset", type=_table_datasets, default=None,
                   help="ba3, mutag or mnist; with --table also all or a comma-separated list (ba3,mutag)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--model", type=_existing_file, default=None)
    p.add_argument("--explanations", default=None, help="folder or file written by explain")
    p.add_argument("--graphs", default=None, help="with --explanations: the graph set folder they explain "
                                                  "(default: the one named in their manifest)")
    p.add_argument("--explainer", type=_existing_file, default=None,
                   help="evaluate ReFine-FT and ReFine (fine-tuned at each ρ)")
    _allow_other_model_option(p)
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--steps", type=_at_least(0), default=None)
    _select_option(p)
    p.add_argument("--out", default=None, help="folder for evaluation.json and acc_curve.png")
    p.add_argument("--table", action="store_true", help="regenerate the paper's Tables 2-4")
    p.add_argument("--seeds", type=POSITIVE_INT, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--model-dir", type=_existing_dir, default=None,
                   help="with --table: folder of trained target GNNs (default: trained into OUT/models)")
    p.add_argument("--reference-models", type=_existing_dir, default=None,
                   help="with --table: a folder holding the ReFine authors' released target GNNs "
                        "(mutag_net_state.pt, ba3_net_state.pt); explains those on the reference's own splits")
    p.add_argument("--fresh", action="store_true", help="with --table: recompute finished results")
    p.add_argument("--render-only", action="store_true",
                   help="with --table: render the tables from the results finished so far, compute nothing")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--threads", type=POSITIVE_INT, default=None,
                   help="torch CPU threads (default: torch's choice; with --table 1, so that Table 4 times "
                        "every explainer at the same setting)")
    _device_option(p)
    _output_options(p)
    p.set_defaults(func=cmd_evaluate, parser=p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; returns the exit code: 0, or 2 after a user error (one line on stderr)."""
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # named by the command's own parser, like every other option error
            args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exit:  # an option error (one line printed) or --help
        return exit.code if isinstance(exit.code, int) else 0
    prog = f"refine-fast {args.command}"
    try:
        with _warnings_as_lines(prog):
            if args.threads is not None:
                torch.set_num_threads(args.threads)
            try:
                device = resolve_device(args.device)
            except ValueError as error:
                raise UsageError(f"--device: {error}") from None
            result = args.func(args, device)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr, flush=True)
        return 2
    _emit(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
