"""What BA-3motif's preset costs (issue 13's speed clause): the preset against the same preset without
``config.BA3_REFERENCE`` (the session-5 preset), and optionally against another checkout of refine_fast.

Each measurement is a fresh process (one torch thread by default): one pre-training epoch over the 2,200
generated BA-3motif training graphs, then the 400 test graphs fine-tuned for 20 steps, and a warm-up of
each. Rounds are interleaved; medians. The target model is a trained one: ``--model`` (a file of
``refine-fast train-gnn`` or a released state_dict), by default the released BA-3motif GNN under
../shared/reference_models. The class mix matters: the preset's pre-training makes one edge-free pass per
class present in a batch, and an untrained ``BA3MotifNet`` (``--model untrained``) predicts one class for
every training graph, which understates that cost.

    python bench/preset_cost.py                        # 6 rounds, this checkout
    python bench/preset_cost.py --before ../old        # also a checkout of older code (its extension built)
    python bench/preset_cost.py --floor                # the floor of the preset's pre-training cost (below)

``--floor`` times, in one process and rounds interleaved, the matrix products that the reference batch norm
(``pretrain_norm='reference'``) adds to one pre-training epoch and cannot avoid — per batch, one edge-free
pass per class present over every node: each layer's ``[N, H] @ [H, H]`` and its two backward products —
alone, against a whole epoch of the preset without ``BA3_REFERENCE``.

Whole-process timings of a few seconds each, as noisy as the machine: the load average is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RELEASED_BA3 = REPO.parent / "shared" / "reference_models" / "ba3_net_state.pt"


def _load(model_path: str, cache: str | None, threads: int):
    """``(model, train, test, predicted)``: the target model (``'untrained'``: a seeded ``BA3MotifNet``), the
    generated BA-3motif splits, from the refine_fast on ``sys.path``, and the model's class of each training
    graph (``[len(train)]``; the preset's pre-training cost depends on the classes in a batch)."""
    import torch

    from refine_fast.datasets import BA3Motif, default_cache_dir
    from refine_fast.models import BA3MotifNet, load_model

    torch.set_num_threads(threads)
    train, _, test = BA3Motif(str(cache or default_cache_dir()), seed=0).splits()
    torch.manual_seed(0)
    model = BA3MotifNet().eval() if model_path == "untrained" else load_model(model_path)
    with torch.no_grad():
        predicted = torch.stack([model(g.x, g.edge_index, g.edge_attr).argmax(-1).view(()) for g in train])
    return model, list(train), list(test), predicted


def floor(model_path: str, threads: int, cache: str | None, rounds: int, overrides: dict) -> dict:
    """``--floor`` (see the module docstring), this checkout: median seconds of the products and of the
    epoch."""
    import time

    import refine_fast  # noqa: F401  (before torch: passive OpenMP waits on a busy machine)
    import torch

    from refine_fast import ReFine, ReFineConfig

    model, train, _, predicted = _load(model_path, cache, threads)
    config = ReFineConfig.for_dataset("ba3", **overrides)
    refine = ReFine(model, 3, 4, config=config, seed=0)
    refine.pretrain(train[:256], epochs=1, progress=False)  # warm-up
    H, gen = config.hidden, torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, len(train), config.batch_size):
        n = sum(g.num_nodes for g in train[start:start + config.batch_size])
        classes = int(predicted[start:start + config.batch_size].unique().numel())
        batches.append((classes, torch.randn(n, H, generator=gen), torch.randn(H, H, generator=gen),
                        torch.randn(H, generator=gen), torch.randn(n, H, generator=gen)))

    def products():
        for classes, free, weight, bias, grad in batches:
            for _ in range(classes * config.num_layers):
                torch.addmm(bias, free, weight)  # forward
                grad @ weight.t()  # backward, input
                free.t() @ grad  # backward, weight

    times = {"products_s": [], "epoch_without_s": []}
    for _ in range(rounds):
        start = time.perf_counter()
        products()
        times["products_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        refine.pretrain(train, epochs=1, progress=False)
        times["epoch_without_s"].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(repo: str, overrides: dict, threads: int, cache: str | None, model_path: str) -> dict:
    """One measurement in this process (refine_fast from ``sys.path``): BA-3motif's preset with
    ``overrides``, explaining the model at ``model_path`` (or an untrained one: ``'untrained'``)."""
    import time

    import refine_fast  # before torch: passive OpenMP waits on a busy machine
    import torch

    from refine_fast import ReFine, ReFineConfig

    if not Path(refine_fast.__file__).resolve().is_relative_to(Path(repo).resolve()):
        raise RuntimeError(f"imported {refine_fast.__file__}, not the checkout {repo}")
    model, train, test, predicted = _load(model_path, cache, threads)
    refine = ReFine(model, 3, 4, config=ReFineConfig.for_dataset("ba3", **overrides), seed=0)
    refine.pretrain(train[:256], epochs=1, progress=False)  # warm-up
    start = time.perf_counter()
    refine.pretrain(train, epochs=1, progress=False)
    pretrain_s = time.perf_counter() - start
    refine.explain(test[:50], steps=2, seed=0, progress=False)  # warm-up
    start = time.perf_counter()
    refine.explain(test, steps=20, seed=0, progress=False)
    return {"pretrain_s": pretrain_s, "graphs_per_s": len(test) / (time.perf_counter() - start),
            "load": os.getloadavg()[0],
            "predicted_classes": torch.bincount(predicted, minlength=3).tolist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", type=Path, default=None, help="another refine_fast checkout to compare")
    parser.add_argument("--cache", default=None, help="dataset cache (default: refine_fast's)")
    parser.add_argument("--model", default=str(RELEASED_BA3),
                        help="trained BA-3motif target model, or 'untrained' (default: the released one)")
    parser.add_argument("--floor", action="store_true", help="time the reference batch norm's unavoidable "
                        "matrix products against an epoch without it (this checkout, one process)")
    parser.add_argument("--measure", nargs=2, metavar=("REPO", "OVERRIDES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        repo, overrides = args.measure
        sys.path.insert(0, repo)
        print(json.dumps(measure(repo, json.loads(overrides), args.threads, args.cache, args.model)))
        return 0
    if args.rounds < 1:
        parser.error(f"--rounds: expected at least 1, got {args.rounds}")
    if args.model != "untrained" and not Path(args.model).is_file():
        parser.error(f"--model: no file at {args.model} (give a trained BA-3motif model, or 'untrained')")
    from ablation import NO_BA3_PRESET  # the preset without BA3_REFERENCE, as the ablation's row
    if args.floor:
        result = floor(args.model, args.threads, args.cache, args.rounds, NO_BA3_PRESET)
        print(f"{args.rounds} rounds, {args.threads} thread(s), medians; model {args.model}: the reference batch "
              f"norm's matrix products {result['products_s']:.3f} s, an epoch without BA3_REFERENCE "
              f"{result['epoch_without_s']:.3f} s: {result['products_s'] / result['epoch_without_s']:.1%} "
              f"(load {os.getloadavg()[0]:.1f})")
        return 0
    configs = {"preset": {}, "without_ba3_reference": NO_BA3_PRESET}
    repos = [REPO] + ([args.before.resolve()] if args.before else [])
    runs = {(str(r), c): [] for r in repos for c in configs}
    for _ in range(args.rounds):
        for repo, config in runs:
            cmd = [sys.executable, __file__, "--measure", repo, json.dumps(configs[config]), "--threads",
                   str(args.threads), "--model", args.model]
            cmd += ["--cache", args.cache] if args.cache else []
            out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": repo}).stdout
            runs[(repo, config)].append(json.loads(out.strip().splitlines()[-1]))
    print(f"{args.rounds} rounds, {args.threads} thread(s), medians; model {args.model}, predicted classes of "
          f"the training graphs {next(iter(runs.values()))[0]['predicted_classes']}")
    for (repo, config), values in runs.items():
        loads = [v["load"] for v in values]
        print(f"{repo:40s} {config:22s} pre-training epoch "
              f"{statistics.median(v['pretrain_s'] for v in values):.3f} s, fine-tuning "
              f"{statistics.median(v['graphs_per_s'] for v in values):.1f} graphs/s "
              f"(load {min(loads):.1f}-{max(loads):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
