"""Scale-out of ``refine-fast explain``: 1 process vs 2 torchrun processes (one thread each) on the
BA-3motif test split, and peak memory (max RSS) on 100,000 generated BA-3motif graphs, held in memory
or streamed from an on-disk graph set (``--on-disk``).

A script rather than a pytest-benchmark file: it times whole processes (launch included) and reads
each rank's own explain-loop time from its ``--json`` output. Correctness first: the 2-process
explanations must equal the 1-process ones exactly.

    python bench/scaling.py --work /tmp/refine_scaling                  # both measurements
    python bench/scaling.py --work /tmp/refine_scaling --big 0          # scaling only
    python bench/scaling.py --split all --big 0                         # scaling on all 3,000 graphs
    python bench/scaling.py --work /tmp/refine_scaling --big-steps 2    # memory run with fewer steps
    python bench/scaling.py --repeats 0 --on-disk --big 20000,100000   # streamed memory runs only

The large dataset is ``BA3Motif(graphs_per_class=ceil(n/3))`` (the same seeded generator) cut to
``n`` graphs; the memory run explains it with ``--split all`` through the CLI with ``_load`` pointed
at it, or, with ``--on-disk``, writes it once to an OnDiskDataset folder (``write_graphs``, in a
separate process) and explains it with ``refine-fast explain --graphs DIR``. The machine may be
shared: the timings are as noisy as its load (printed with the results).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])), OMP_NUM_THREADS="1")
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return wall, proc.stdout


def explain_1(args_) -> tuple[float, list]:
    """Wall seconds and ``[result]`` of one process."""
    wall, out = _run([sys.executable, "-m", "refine_fast.cli", "explain", *args_, "--json"])
    return wall, [json.loads(out)]


def explain_n(n: int, args_, logs: Path) -> tuple[float, list]:
    """Wall seconds (launcher included) and the per-rank results of ``torchrun --nproc_per_node=n``."""
    logs.mkdir(parents=True, exist_ok=True)
    wall, _ = _run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--nnodes=1",
                    "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "--log-dir", logs, "--redirects", "1",
                    "-m", "refine_fast.cli", "explain", *args_, "--json"])
    results = [json.loads(p.read_text()) for p in sorted(logs.glob("**/stdout.log"), key=os.path.getmtime)[-n:]]
    return wall, sorted(results, key=lambda r: r["rank"])


def setup(work: Path, gnn_epochs: int) -> list:
    """Target GNN and a ReFine pre-trained for one epoch (weights do not change the timings)."""
    from refine_fast import cli
    from refine_fast.models import train_for_dataset

    torch.set_num_threads(1)
    cache, model, explainer = work / "cache", work / "model" / "model.pt", work / "explainer.pt"
    if not model.is_file():
        train_for_dataset("ba3", ".", model.parent, epochs=gnn_epochs, cache_dir=cache, progress=False)
    common = ["--dataset", "ba3", "--cache-dir", cache, "--model", model, "--threads", 1, "--no-progress"]
    if not explainer.is_file():
        cli.main([str(a) for a in ["pretrain", *common, "--epochs", 1, "--out", explainer]])
    return [str(a) for a in common + ["--explainer", explainer]]


def scaling(work: Path, common: list, split: str, steps: int, chunk_size: int, repeats: int) -> dict:
    run = common + ["--split", split, "--steps", str(steps), "--chunk-size", str(chunk_size), "--overwrite"]
    out1, out2 = work / "x1", work / "x2"
    explain_1(run + ["--out", str(out1)])   # warm-up + correctness
    explain_n(2, run + ["--out", str(out2)], work / "logs" / "check")
    a = torch.load(out1 / "explanations.pt", weights_only=True)
    b = torch.load(out2 / "explanations.pt", weights_only=True)
    equal = all(torch.equal(a[k], b[k]) for k in ("graph_ids", "ptr", "importance"))
    if not equal:
        raise SystemExit("2-process explanations differ from the 1-process ones")
    rows = []
    for i in range(repeats):  # interleaved, so load changes hit both alike
        w1, r1 = explain_1(run + ["--out", str(out1)])
        w2, r2 = explain_n(2, run + ["--out", str(out2)], work / "logs" / f"run{i}")
        rows.append({"wall_1": w1, "loop_1": r1[0]["seconds"], "wall_2": w2,
                     "loop_2": max(r["seconds"] for r in r2), "loop_2_ranks": [r["seconds"] for r in r2],
                     "graphs_2_ranks": [r["graphs_explained_now"] for r in r2]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in ("wall_1", "loop_1", "wall_2", "loop_2")}
    return {"split": split, "graphs": int(a["graph_ids"].numel()), "steps": steps, "chunk_size": chunk_size,
            "equal": equal, "runs": rows, "median": med, "speedup_loop": med["loop_1"] / med["loop_2"],
            "speedup_wall": med["wall_1"] / med["wall_2"]}


def big_dataset(cache: Path, n: int):
    from refine_fast.datasets import BA3Motif

    full = BA3Motif(cache, seed=0, graphs_per_class=math.ceil(n / 3))
    data = full[:n]
    data.split_idx = {"all": torch.arange(n)}
    return data


def big_graphs(cache: Path, n: int, root: Path) -> None:
    """Write the ``n`` large-dataset graphs to an OnDiskDataset folder ``root`` (once)."""
    from refine_fast.datasets import open_graphs, write_graphs

    if not root.exists():
        data = big_dataset(cache, n)
        write_graphs(root, (data[i] for i in range(n))).close()
    if len(open_graphs(root)) != n:
        raise SystemExit(f"{root} does not hold {n} graphs (an interrupted write?): delete it and rerun")


def big_child(argv) -> None:
    """In a fresh process: ``refine-fast explain ...`` on ``n`` graphs; prints max RSS. ``n`` graphs held
    in memory (``--split all`` with ``_load`` pointed at them), or ``n = 0``: the arguments say
    ``--graphs DIR``."""
    n, cache, rest = int(argv[0]), Path(argv[1]), argv[2:]
    from refine_fast import cli

    if n:
        dataset = big_dataset(cache, n)
        cli._load = lambda args: (dataset, {"all": dataset})
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    cli.main(rest)
    print(json.dumps({"seconds": time.perf_counter() - start, "max_rss_kib_after_load": rss_before,
                      "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def _without_dataset(common: list) -> list:
    """``common`` minus ``--dataset X`` and ``--cache-dir X``."""
    out, skip = [], False
    for a in common:
        if skip or a in ("--dataset", "--cache-dir"):
            skip = not skip
            continue
        out.append(a)
    return out


def memory(work: Path, common: list, n: int, steps: int, chunk_size: int, on_disk: bool) -> dict:
    cache, graphs = work / "cache_big", work / f"graphs_{n}"
    start = time.perf_counter()
    make = f"big_graphs(C, {n}, Path({str(graphs)!r}))" if on_disk else f"big_dataset(C, {n})"
    _run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO / 'bench')!r}); "
                                f"from pathlib import Path; from scaling import *; C = Path({str(cache)!r}); {make}"])
    generate = time.perf_counter() - start
    out_dir = work / ("x_disk" if on_disk else "x_big")
    source = _without_dataset(common) + ["--graphs", str(graphs)] if on_disk else common + ["--split", "all"]
    args_ = source + ["--steps", str(steps), "--chunk-size", str(chunk_size), "--overwrite", "--out", str(out_dir)]
    load = os.getloadavg()
    wall, out = _run([sys.executable, __file__, "--big-child", "0" if on_disk else str(n), str(cache),
                      "explain", *args_])
    result = json.loads(out.strip().splitlines()[-1])
    merged = torch.load(out_dir / "explanations.pt", weights_only=True)
    result.update(graphs=n, on_disk=on_disk, wall=wall, generate_seconds=generate, steps=steps,
                  chunk_size=chunk_size, explained=int(merged["graph_ids"].numel()),
                  edges=int(merged["importance"].numel()), max_rss_gib=result["max_rss_kib"] / 2**20,
                  load_average_before=load, load_average_after=os.getloadavg(),
                  command="refine-fast explain " + " ".join(args_))
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--big-child":
        return big_child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/refine_scaling")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test",
                   help="BA-3motif split of the scaling runs")
    p.add_argument("--steps", type=int, default=20, help="fine-tuning steps of the scaling runs")
    p.add_argument("--chunk-size", type=int, default=100, help="graphs per chunk (the unit of sharding)")
    p.add_argument("--repeats", type=int, default=3, help="scaling runs (0: skip the scaling measurement)")
    p.add_argument("--gnn-epochs", type=int, default=5)
    p.add_argument("--big", default="100000", help="graphs of the memory run(s), comma-separated (0: skip)")
    p.add_argument("--big-steps", type=int, default=20)
    p.add_argument("--big-chunk-size", type=int, default=4096)
    p.add_argument("--on-disk", action="store_true",
                   help="memory runs stream the graphs from an OnDiskDataset folder (explain --graphs)")
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    common = setup(work, a.gnn_epochs)
    result = {"load_average_before": os.getloadavg(), "cpus": os.cpu_count(), "torch": torch.__version__}
    if a.repeats:
        result["scaling"] = scaling(work, common, a.split, a.steps, a.chunk_size, a.repeats)
    sizes = [int(n) for n in a.big.split(",") if int(n)]
    if sizes:
        result["memory"] = []
        for n in sizes:
            result["memory"].append(memory(work, common, n, a.big_steps, a.big_chunk_size, a.on_disk))
            print(json.dumps(result["memory"][-1]), file=sys.stderr, flush=True)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
