"""One-command GPU acceptance run: the CUDA kernels agree with the CPU, are deterministic, and how fast.

    python bench/gpu_check.py                               # one GPU, under 8 minutes
    python bench/gpu_check.py --device cpu --quick          # the same checks on the CPU, small sizes (CI)

Writes a JSON report (``--out``, default ``gpu_check.json``) and prints a summary; exits 1 when a check
fails. Sections:

* ``cuda_tests``: the CUDA tests of ``tests/`` (``pytest -k cuda``), counts of passed/failed/skipped.
* ``ops``: every op on the device against the CPU: the same Philox noise bit for bit (``uniform``),
  the same selections (``segment_select``, all three kernel paths), ``edge_score`` and
  ``concrete_sample`` forward/backward within tolerance, ``csr_order`` equal; each run twice on the
  device and compared bit for bit (determinism).
* ``edge_cases``: empty inputs; a non-default stream (the same bits as the default stream); inputs of
  more than 2**31 elements (when the GPU has the free memory); one segment of 16M edges.
* ``benchmarks``: the kernels against their eager references on the device (median ms, speed-up).
* ``end_to_end``: BA-3motif (generated) and Mutagenicity (``--data-root``): one pre-training epoch and
  ``explain`` on the device and on the CPU from the same weights (freshly initialized target models:
  the check is agreement, not quality): largest difference of the attributor weights and of the
  importances, graphs whose top-ρ edge sets differ, graphs per second on both.
* ``syncs``: host syncs per fine-tuning step and per pre-training step on the device
  (:class:`refine_fast.testing.SyncCounter`; on CUDA also the synchronizing CUDA calls that
  ``torch.cuda.set_sync_debug_mode`` reports). Reported, not judged.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Callable, Dict, List

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's refine_fast, wherever the script is run from

import torch  # noqa: E402

from refine_fast.device import resolve_device  # noqa: E402
from refine_fast.ops import (  # noqa: E402
    concrete_sample, concrete_sample_reference, edge_score, edge_score_reference, segment_select,
    segment_select_reference, uniform,
)
from refine_fast.testing import SyncCounter, cuda_sync_debug_count  # noqa: E402

CPU = torch.device("cpu")
SEED, STEP = 2021, 3


class Context:
    """The run's device, size mode and random source."""

    def __init__(self, device: torch.device, quick: bool, data_root: Path, cache_dir: Path):
        self.device, self.quick, self.data_root, self.cache_dir = device, quick, data_root, cache_dir
        self.gen = torch.Generator().manual_seed(0)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], object], reps: int) -> float:
        """Median seconds of ``fn`` over ``reps`` runs after one warm-up."""
        fn()
        self.sync()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)


def skipped(reason: str) -> Dict:
    return {"ok": None, "skipped": reason}


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.cpu(), b.cpu())


def close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> Dict:
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    diff = (a - b).abs()
    ok = bool(a.shape == b.shape and (diff <= atol + rtol * b.abs()).all())
    return {"ok": ok, "max_abs_diff": float(diff.max()) if diff.numel() else 0.0}


# ------------------------------------------------------------------------------------------ inputs
def segment_batch(ctx: Context, num_edges: int, large: List[int]):
    """Scores in [0, 1] (a quarter rounded to quarters: ties), ptr of segments of 30-90 edges plus
    ``large`` ones, and graph-id * 2**32 + edge-index keys."""
    sizes = torch.randint(30, 91, (max(num_edges // 60, 1),), generator=ctx.gen).tolist() + large
    ptr = torch.tensor([0] + sizes).cumsum(0)
    n = int(ptr[-1])
    scores = torch.rand(n, generator=ctx.gen, dtype=torch.float64)
    scores[: n // 4] = (scores[: n // 4] * 4).floor() / 4
    segment = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    key = (segment << 32) + torch.arange(n) - ptr[:-1][segment]
    return scores.float(), ptr, key


def edge_score_inputs(ctx: Context, num_nodes: int, num_edges: int, hidden: int, groups: int):
    g = ctx.gen
    return dict(p_src=torch.randn(num_nodes, hidden, generator=g), p_dst=torch.randn(num_nodes, hidden, generator=g),
                edge_index=torch.randint(0, num_nodes, (2, num_edges), generator=g),
                weight=torch.randn(groups, hidden, generator=g) / hidden**0.5, bias=torch.randn(groups, generator=g),
                edge_term=torch.randn(num_edges, hidden, generator=g),
                group=torch.randint(0, groups, (num_edges,), generator=g))


DIFFERENTIABLE = ("p_src", "p_dst", "weight", "bias", "edge_term")


def edge_score_fwd_bwd(inputs: Dict, device: torch.device, grad_out: torch.Tensor, fn=edge_score):
    leaves = {k: (v.to(device).requires_grad_() if k in DIFFERENTIABLE else v.to(device)) for k, v in inputs.items()}
    out = fn(**leaves)
    out.backward(grad_out.to(device))
    return [out.detach()] + [leaves[k].grad for k in DIFFERENTIABLE if k in leaves]


# ------------------------------------------------------------------------------------------ sections
def check_cuda_tests(ctx: Context) -> Dict:
    if ctx.device.type != "cuda":
        return skipped("needs --device cuda")
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "tests", "-q", "-k", "cuda", "-p", "no:cacheprovider",
                               f"--junitxml={xml}"], cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        suite = ElementTree.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {"ok": proc.returncode == 0 and counts["passed"] > 0, **counts, "seconds": round(seconds, 1),
            "tail": proc.stdout[-3000:] if proc.returncode else ""}


def check_ops(ctx: Context) -> Dict:
    dev, out = ctx.device, {}
    n = ctx.size(1_000_000, 20_000)
    key = torch.randint(0, 2**62, (n,), generator=ctx.gen)
    for dtype in (torch.float32, torch.float64):
        cpu = uniform(key, SEED, STEP, dtype)
        first, second = (uniform(key.to(dev), SEED, STEP, dtype) for _ in range(2))
        out[f"uniform_{str(dtype)[6:]}"] = {"ok": same(first, cpu) and same(second, first),
                                            "bit_equal_to_cpu": same(first, cpu), "deterministic": same(second, first)}

    logits = 3 * torch.randn(n, generator=ctx.gen)

    def concrete(device):
        x = logits.to(device).requires_grad_()
        m = concrete_sample(x, key.to(device), SEED, STEP, 0.7)
        m.backward(torch.linspace(-1, 1, n, device=device))
        return m.detach(), x.grad

    cpu, first, second = concrete(CPU), concrete(dev), concrete(dev)
    fwd, bwd = close(first[0], cpu[0], 1e-5, 1e-6), close(first[1], cpu[1], 1e-5, 1e-6)
    determ = all(same(a, b) for a, b in zip(first, second))
    out["concrete_sample"] = {"ok": fwd["ok"] and bwd["ok"] and determ, "forward": fwd, "backward": bwd,
                              "deterministic": determ}

    large = [40_000, 100_000] if not ctx.quick else [40_000]  # > 32768 edges: the split radix select
    scores, ptr, skey = segment_batch(ctx, n, large + [2_000, 5_000, 0, 1])
    for stochastic in (True, False):
        for ratio in (0.05, 0.3, 1.0):
            cpu = segment_select(scores, ptr, ratio, skey, SEED, STEP, stochastic)
            args = (scores.to(dev), ptr.to(dev), ratio, skey.to(dev), SEED, STEP, stochastic)
            first, second = segment_select(*args), segment_select(*args)
            out[f"segment_select_{'stochastic' if stochastic else 'top'}_{ratio}"] = {
                "ok": same(first, cpu) and same(second, first), "same_selection_as_cpu": same(first, cpu),
                "deterministic": same(second, first)}

    E = ctx.size(1_000_000, 20_000)
    inputs = edge_score_inputs(ctx, max(E // 3, 1), E, 64, 8)
    grad_out = torch.randn(E, generator=ctx.gen)
    cpu = edge_score_fwd_bwd(inputs, CPU, grad_out)
    first, second = edge_score_fwd_bwd(inputs, dev, grad_out), edge_score_fwd_bwd(inputs, dev, grad_out)
    sums_atol = 1e-4 * (1 + E**0.5 / 10)  # weight and bias gradients sum over all edges
    parts = {name: close(a, b, 1e-4, sums_atol if name in ("weight", "bias") else 1e-4)
             for name, a, b in zip(("out",) + DIFFERENTIABLE, first, cpu)}
    determ = all(same(a, b) for a, b in zip(first, second))
    out["edge_score"] = {"ok": all(p["ok"] for p in parts.values()) and determ, **parts, "deterministic": determ}

    index = inputs["edge_index"][0]
    cpu = torch.ops.refine_fast.csr_order(index, E // 3)
    got = torch.ops.refine_fast.csr_order(index.to(dev), E // 3)
    out["csr_order"] = {"ok": all(same(a, b) for a, b in zip(got, cpu))}
    out["ok"] = all(v["ok"] for v in out.values())
    return out


def check_empty(ctx: Context) -> Dict:
    dev = ctx.device
    empty_key = torch.zeros(0, dtype=torch.long, device=dev)
    results = {"uniform": uniform(empty_key, 0).shape == (0,),
               "concrete_sample": concrete_sample(torch.zeros(0, device=dev), empty_key, 0).shape == (0,),
               "segment_select": segment_select(torch.zeros(0, device=dev), torch.zeros(4, dtype=torch.long,
                                                device=dev), 0.5, empty_key).shape == (0,)}
    inputs = edge_score_inputs(ctx, 5, 0, 8, 2)
    grads = edge_score_fwd_bwd(inputs, dev, torch.zeros(0))
    results["edge_score"] = grads[0].shape == (0,) and all(not g.any() for g in grads[1:])
    return {"ok": all(results.values()), **results}


def check_streams(ctx: Context) -> Dict:
    if ctx.device.type != "cuda":
        return skipped("needs --device cuda")
    dev = ctx.device
    E = ctx.size(200_000, 5_000)
    inputs = edge_score_inputs(ctx, E // 4, E, 64, 4)
    grad_out = torch.randn(E, generator=ctx.gen)
    scores, ptr, key = segment_batch(ctx, E, [50_000])

    def run():
        return edge_score_fwd_bwd(inputs, dev, grad_out) + [
            segment_select(scores.to(dev), ptr.to(dev), 0.3, key.to(dev), SEED, STEP),
            concrete_sample(scores.to(dev), key.to(dev), SEED, STEP), uniform(key.to(dev), SEED, STEP)]

    default = run()
    stream = torch.cuda.Stream(dev)
    stream.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(stream):
        side = run()
    torch.cuda.current_stream(dev).wait_stream(stream)
    torch.cuda.synchronize(dev)
    return {"ok": all(same(a, b) for a, b in zip(side, default)), "outputs_compared": len(default)}


def free_gpu_bytes(ctx: Context) -> int:
    return torch.cuda.mem_get_info(ctx.device)[0] if ctx.device.type == "cuda" else 0


def check_huge(ctx: Context) -> Dict:
    """More than 2**31 elements: 64-bit indexing in every kernel (sampled against the CPU)."""
    if ctx.device.type != "cuda" or ctx.quick:
        return skipped("needs --device cuda without --quick")
    dev, n, out = ctx.device, 2**31 + 4099, {}
    sample = torch.cat([torch.arange(4096), torch.randint(0, n, (4096,), generator=ctx.gen), torch.arange(n - 4096, n)])

    if free_gpu_bytes(ctx) > 1.2 * n * (8 + 4):
        key = torch.arange(n, device=dev)
        u = uniform(key, SEED, STEP)
        out["uniform"] = {"ok": same(u[sample.to(dev)], uniform(sample, SEED, STEP)), "elements": n}
        del key, u
    else:
        out["uniform"] = skipped("not enough free GPU memory")

    torch.cuda.empty_cache()
    segment = 2**20  # every segment split across blocks
    if free_gpu_bytes(ctx) > 1.2 * n * (2 + 8 + 1):
        scores = torch.rand(n, device=dev, dtype=torch.float16)
        ptr = torch.cat([torch.arange(0, n, segment, device=dev), torch.tensor([n], device=dev)])
        mask = segment_select(scores, ptr, 0.3, stochastic=False)
        checks = []
        for s in (0, ptr.numel() // 2, ptr.numel() - 2):
            begin, end = int(ptr[s]), int(ptr[s + 1])
            local = segment_select(scores[begin:end].cpu(), torch.tensor([0, end - begin]), 0.3, stochastic=False)
            checks.append(same(mask[begin:end], local))
        out["segment_select"] = {"ok": all(checks), "elements": n, "segments_checked": len(checks)}
        del scores, mask
    else:
        out["segment_select"] = skipped("not enough free GPU memory")

    torch.cuda.empty_cache()
    E, H = 2**25 + 3, 64  # edge_term and its gradient: E * H > 2**31 elements
    if free_gpu_bytes(ctx) > 1.2 * E * H * 4 * 3:
        inputs = {k: v.to(dev) for k, v in edge_score_inputs(ctx, 1000, 1, H, 2).items()}
        inputs["edge_index"] = torch.randint(0, 1000, (2, E), device=dev)
        inputs["group"] = torch.randint(0, 2, (E,), device=dev)
        inputs["edge_term"] = torch.randn(E, H, device=dev)
        grad_out = torch.randn(E, device=dev)
        leaves = {k: v.requires_grad_() if k in DIFFERENTIABLE else v for k, v in inputs.items()}
        score = edge_score(**leaves)
        score.backward(grad_out)
        pick = torch.cat([torch.arange(2048), torch.arange(E - 2048, E)]).to(dev)
        sub = {k: leaves[k].detach().double() for k in ("p_src", "p_dst", "weight", "bias")}
        sub.update(edge_index=inputs["edge_index"][:, pick], group=inputs["group"][pick],
                   edge_term=inputs["edge_term"][pick].detach().double().requires_grad_())
        want = edge_score_reference(**sub)
        want.backward(grad_out[pick].double())
        grad_weight = torch.zeros(2, H, dtype=torch.float64, device=dev)  # over all E edges, float64 chunks
        with torch.no_grad():
            for start in range(0, E, 2**22):
                chunk = slice(start, min(start + 2**22, E))
                ei, g = inputs["edge_index"][:, chunk], inputs["group"][chunk]
                t = torch.tanh(sub["p_src"][ei[0]] + sub["p_dst"][ei[1]] + inputs["edge_term"][chunk].double())
                grad_weight.index_add_(0, g, t * grad_out[chunk].double()[:, None])
        out["edge_score"] = {"ok": bool(close(score[pick], want, 1e-4, 1e-4)["ok"]
                                        and close(leaves["edge_term"].grad[pick], sub["edge_term"].grad, 1e-4, 1e-4)["ok"]
                                        and close(leaves["weight"].grad, grad_weight, 1e-4, 1e-1)["ok"]),
                             "edge_term_elements": E * H}
        del inputs, leaves, score
    else:
        out["edge_score"] = skipped("not enough free GPU memory")
    torch.cuda.empty_cache()
    out["ok"] = all(v["ok"] is not False for v in out.values())
    return out


def check_long_segment(ctx: Context) -> Dict:
    """One segment of 16M edges (``--quick``: 200k): the same selection as the CPU, and its time."""
    n = ctx.size(16 * 2**20, 200_000)
    scores = torch.rand(n, generator=ctx.gen)
    ptr, key = torch.tensor([0, n]), torch.arange(n)
    out = {"edges": n}
    for stochastic in (True, False):
        cpu = segment_select(scores, ptr, 0.3, key, SEED, STEP, stochastic)
        args = (scores.to(ctx.device), ptr.to(ctx.device), 0.3, key.to(ctx.device), SEED, STEP, stochastic)
        seconds = ctx.timed(lambda: segment_select(*args), reps=3)
        out["stochastic" if stochastic else "top"] = {"ok": same(segment_select(*args), cpu),
                                                      "device_ms": round(1e3 * seconds, 3)}
    out["ok"] = out["stochastic"]["ok"] and out["top"]["ok"]
    return out


def check_benchmarks(ctx: Context) -> Dict:
    """Kernels against their eager references on the device (median ms; reference / kernel)."""
    dev, reps, out = ctx.device, ctx.size(20, 3), {}
    E = ctx.size(1_000_000, 20_000)
    inputs = edge_score_inputs(ctx, max(E * 2 // 5, 1), E, 64, 1)
    del inputs["edge_term"], inputs["group"]
    grad_out = torch.randn(E, generator=ctx.gen)
    scores, ptr, key = segment_batch(ctx, E, [])
    logits = torch.randn(scores.numel(), generator=ctx.gen)
    d = {k: v.to(dev) for k, v in dict(scores=scores, ptr=ptr, key=key, logits=logits).items()}
    cases = {
        "edge_score fwd+bwd": (lambda fn: (lambda: edge_score_fwd_bwd(inputs, dev, grad_out, fn)),
                               edge_score, edge_score_reference),
        "concrete_sample": (lambda fn: (lambda: fn(d["logits"], d["key"], SEED, STEP)),
                            concrete_sample, concrete_sample_reference),
        "segment_select (stochastic)": (lambda fn: (lambda: fn(d["scores"], d["ptr"], 0.3, d["key"], SEED, STEP)),
                                        segment_select, segment_select_reference),
    }
    for name, (make, kernel, reference) in cases.items():
        k_ms = 1e3 * ctx.timed(make(kernel), reps)
        r_ms = 1e3 * ctx.timed(make(reference), max(reps // 4, 1))
        out[name] = {"kernel_ms": round(k_ms, 3), "reference_ms": round(r_ms, 3), "speedup": round(r_ms / k_ms, 2)}
    return {"ok": None, "edges": E, **out}


def _dataset(ctx: Context, name: str):
    """(train, test) graphs and a freshly initialized, seeded target model."""
    from refine_fast.datasets import BA3Motif
    from refine_fast.models import BA3MotifNet, MutagenicityNet, load_splits

    if name == "ba3":
        data = BA3Motif(ctx.cache_dir, seed=0, graphs_per_class=ctx.size(500, 20))
        train, test = data[data.split_idx["train"]], data[data.split_idx["test"]]
        model_cls = BA3MotifNet
    else:
        if not (ctx.data_root / "mutagenicity").is_dir():
            return None
        _, (train, _, test) = load_splits("mutag", ctx.data_root, ctx.cache_dir)
        model_cls = MutagenicityNet
    train = list(train)[: ctx.size(1024, 48)]
    test = list(test)[: ctx.size(256, 12)]
    torch.manual_seed(0)
    return train, test, model_cls().eval()


def _refine(name: str, model, graph, device: torch.device, state=None):
    """ReFine around ``model`` (moved to ``device``) with the paper's settings, optionally loaded with ``state``."""
    from refine_fast import ReFine, ReFineConfig

    attr = graph.edge_attr
    edge_dim = attr.size(1) if attr is not None and attr.dim() == 2 and attr.size(1) > 1 else 0
    refine = ReFine(model.to(device), num_classes=3 if name == "ba3" else 2, node_dim=graph.num_node_features,
                    edge_dim=edge_dim, config=ReFineConfig.for_dataset(name), seed=0)
    if state is not None:
        refine.attributors.load_state_dict(state)
    return refine.to(device)


def _top_sets_differ(cpu: List[torch.Tensor], dev: List[torch.Tensor], ratio: float) -> Dict:
    """Graphs whose top-ρ edge sets differ, and those among them without a near-tie at the boundary."""
    differ = real = 0
    for a, b in zip(cpu, dev):
        k = max(math.ceil(ratio * a.numel() - 1e-9), 1) if a.numel() else 0
        order = torch.sort(a, descending=True, stable=True)
        if set(order.indices[:k].tolist()) != set(torch.sort(b.cpu(), descending=True, stable=True).indices[:k].tolist()):
            differ += 1
            gap = float(order.values[k - 1] - order.values[k]) if k < a.numel() else float("inf")
            real += gap > 1e-4
    return {"graphs_top_set_differs": differ, "of_which_without_near_tie": real}


def check_end_to_end(ctx: Context) -> Dict:
    out = {}
    for name in ("ba3", "mutag"):
        loaded = _dataset(ctx, name)
        if loaded is None:
            out[name] = skipped(f"no Mutagenicity files under {ctx.data_root}")
            continue
        train, test, model = loaded
        result = {"train_graphs": len(train), "test_graphs": len(test)}
        pretrained, seconds = {}, {}
        for device in dict.fromkeys([CPU, ctx.device]):
            refine = _refine(name, model, train[0], device)
            start = time.perf_counter()
            refine.pretrain(train, epochs=1, seed=0, progress=False)
            ctx.sync()
            seconds[device.type] = time.perf_counter() - start
            pretrained[device.type] = {k: v.detach().cpu() for k, v in refine.attributors.state_dict().items()}
        weights = max(float((pretrained["cpu"][k].double() - v.double()).abs().max())
                      for k, v in pretrained[ctx.device.type].items())
        result["pretrain_epoch"] = {"ok": weights <= 1e-3, "max_abs_weight_diff": weights,
                                    **{f"{d}_graphs_per_s": round(len(train) / s, 1) for d, s in seconds.items()}}
        explained, seconds = {}, {}
        steps = ctx.size(20, 3)
        for device in dict.fromkeys([CPU, ctx.device]):
            refine = _refine(name, model, train[0], device, pretrained["cpu"])
            start = time.perf_counter()
            explained[device.type] = refine.explain(test, steps=steps, seed=0, progress=False)
            ctx.sync()
            seconds[device.type] = time.perf_counter() - start
        cpu, dev = explained["cpu"], explained[ctx.device.type]
        diff = max(float((a - b.cpu()).abs().max()) for a, b in zip(cpu, dev) if a.numel())
        tops = _top_sets_differ(cpu, dev, 0.4)
        result["explain"] = {"ok": diff <= 1e-3 and tops["of_which_without_near_tie"] == 0, "steps": steps,
                             "max_abs_importance_diff": diff, **tops,
                             **{f"{d}_graphs_per_s": round(len(test) / s, 1) for d, s in seconds.items()}}
        result["ok"] = result["pretrain_epoch"]["ok"] and result["explain"]["ok"]
        out[name] = result
    out["ok"] = all(v["ok"] is not False for v in out.values())
    return out


def check_syncs(ctx: Context) -> Dict:
    """Host syncs per fine-tuning step (explain with 3 steps minus 1 step, halved) and per pre-training
    batch (2 epochs minus 1 epoch, over the batches of an epoch, so the once-per-epoch reads of the loss
    terms are spread over them); ``fixed``: the rest of the shorter run. Adam's reads of its host step
    counters are left out. ``ok``: a fine-tuning step makes no sync (``tests/test_syncs.py``)."""
    train, test, model = _dataset(ctx, "ba3")
    train, graphs, batch_size = train[:64], test[:8], 16
    refine = _refine("ba3", model, train[0], ctx.device)
    batches = math.ceil(len(train) / batch_size)
    runs = {  # name: (run of n units, n of the shorter run, n of the longer run, units per n)
        "fine_tune_step": (lambda n: refine.explain(graphs, steps=n, seed=0, progress=False, batch_size=len(graphs)),
                           1, 3, 1),
        "pretrain_batch": (lambda n: refine.pretrain(train, epochs=n, batch_size=batch_size, seed=0, progress=False),
                           1, 2, batches),
    }
    out = {}
    for label, (run, short, long, units) in runs.items():
        counts = []
        for n in (short, long):
            with SyncCounter(exclude=("Optimizer.step",)) as counter:
                run(n)
            counts.append(counter)
        per_unit = (counts[1].count - counts[0].count) / ((long - short) * units)
        out[label] = {"sync_ops_per_unit": per_unit, "sync_ops_fixed": counts[0].count - per_unit * short * units,
                      "by_op_per_unit": {k: (counts[1].ops[k] - counts[0].ops[k]) / ((long - short) * units)
                                         for k in counts[1].ops}}
        if ctx.device.type == "cuda":
            short_syncs, long_syncs = (cuda_sync_debug_count(lambda n=n: run(n)) for n in (short, long))
            out[label]["cuda_syncs_per_unit"] = (long_syncs - short_syncs) / ((long - short) * units)
    return {"ok": out["fine_tune_step"]["sync_ops_per_unit"] == 0, **out}


SECTIONS = {"cuda_tests": check_cuda_tests, "ops": check_ops, "empty_inputs": check_empty,
            "non_default_stream": check_streams, "over_2_31_elements": check_huge, "long_segment": check_long_segment,
            "benchmarks": check_benchmarks, "end_to_end": check_end_to_end, "syncs": check_syncs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes (the CPU run of CI)")
    parser.add_argument("--out", default="gpu_check.json", help="JSON report to write")
    default_data = Path(os.environ.get("REFINE_FAST_SHARED", REPO.parent / "shared")) / "data"
    parser.add_argument("--data-root", type=Path, default=default_data,
                        help="folder holding mutagenicity/ (default $REFINE_FAST_SHARED/data or ../shared/data)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="processed datasets (default: a temporary folder)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of the sections")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    names = args.sections.split(",")
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; expected some of {list(SECTIONS)}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(device, args.quick, args.data_root, args.cache_dir or Path(tmp))
        report = {"device": str(device), "quick": args.quick, "machine": machine(device), "sections": {}}
        for name in names:
            section_start = time.perf_counter()
            try:
                result = SECTIONS[name](ctx)
            except Exception:  # noqa: BLE001  (a failing section is reported, the others still run)
                result = {"ok": False, "error": traceback.format_exc()[-4000:]}
            result["seconds"] = round(time.perf_counter() - section_start, 1)
            report["sections"][name] = result
            print(f"{name:20s} {verdict(result['ok']):8s} {result['seconds']:7.1f} s", flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["ok"] = all(s["ok"] is not False for s in report["sections"].values())
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'all':20s} {verdict(report['ok']):8s} {report['seconds']:7.1f} s; report written to {args.out}")
    return 0 if report["ok"] else 1


def verdict(ok) -> str:
    return {True: "ok", False: "FAILED", None: "-"}[ok]


def machine(device: torch.device) -> Dict:
    from refine_fast import _C

    info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "extension_cuda": _C.cuda_version(),
            "python": platform.python_version(), "threads": torch.get_num_threads(), "cpu": platform.processor()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}")
    return info


if __name__ == "__main__":
    sys.exit(main())
