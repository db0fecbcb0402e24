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


def measure(repo: str, overrides: dict, threads: int, cache: str | None, model_path: str) -> dict:
    """One measurement in this process (refine_fast from ``sys.path``): BA-3motif's preset with
    ``overrides``, explaining the model at ``model_path`` (or an untrained one: ``'untrained'``)."""
    import time

    import refine_fast  # before torch: passive OpenMP waits on a busy machine
    import torch

    from refine_fast import ReFine, ReFineConfig
    from refine_fast.datasets import BA3Motif, default_cache_dir
    from refine_fast.models import BA3MotifNet, load_model

    if not Path(refine_fast.__file__).resolve().is_relative_to(Path(repo).resolve()):
        raise RuntimeError(f"imported {refine_fast.__file__}, not the checkout {repo}")
    torch.set_num_threads(threads)
    train, _, test = BA3Motif(str(cache or default_cache_dir()), seed=0).splits()
    train, test = list(train), list(test)
    torch.manual_seed(0)
    model = BA3MotifNet().eval() if model_path == "untrained" else load_model(model_path)
    refine = ReFine(model, 3, 4, config=ReFineConfig.for_dataset("ba3", **overrides), seed=0)
    refine.pretrain(train[:256], epochs=1, progress=False)  # warm-up
    start = time.perf_counter()
    refine.pretrain(train, epochs=1, progress=False)
    pretrain_s = time.perf_counter() - start
    refine.explain(test[:50], steps=2, seed=0, progress=False)  # warm-up
    start = time.perf_counter()
    refine.explain(test, steps=20, seed=0, progress=False)
    graphs_per_s = len(test) / (time.perf_counter() - start)
    with torch.no_grad():
        predicted = torch.stack([model(g.x, g.edge_index, g.edge_attr).argmax(-1).view(()) for g in train])
    return {"pretrain_s": pretrain_s, "graphs_per_s": graphs_per_s, "load": os.getloadavg()[0],
            "predicted_classes": torch.bincount(predicted, minlength=3).tolist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", type=Path, default=None, help="another refine_fast checkout to compare")
    parser.add_argument("--cache", default=None, help="dataset cache (default: refine_fast's)")
    parser.add_argument("--model", default=str(RELEASED_BA3),
                        help="trained BA-3motif target model, or 'untrained' (default: the released one)")
    parser.add_argument("--measure", nargs=2, metavar=("REPO", "OVERRIDES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        repo, overrides = args.measure
        sys.path.insert(0, repo)
        print(json.dumps(measure(repo, json.loads(overrides), args.threads, args.cache, args.model)))
        return 0
    if args.model != "untrained" and not Path(args.model).is_file():
        parser.error(f"--model: no file at {args.model} (give a trained BA-3motif model, or 'untrained')")
    from ablation import NO_BA3_PRESET  # the preset without BA3_REFERENCE, as the ablation's row
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
