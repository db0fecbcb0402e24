"""Benchmark edge_score forward + backward (E = 1M edges, N = 400k nodes, H = 64) against the eager
reference (gather + add + tanh + matmul + autograd), in the same run; the kernel's benchmark checks its
results against the reference first.

    python -m pytest bench/bench_edge_score.py -s -q --benchmark-columns=median,iqr,rounds

Peak memory: each implementation runs once in a fresh subprocess (``python bench/bench_edge_score.py
--memory kernel|reference``) with glibc's mmap threshold fixed at 128 KiB, so every tensor buffer is
mmapped and returned to the OS when freed and the resident set tracks live memory. The peak resident
set is reset (``/proc/self/clear_refs`` = 5) after the inputs exist, and the reported peak is
``VmHWM - VmRSS(before)`` over one forward + backward: every byte the call touches, temporaries and
the gradients it returns (``[N, H]`` for p_src and p_dst, 2 x 102 MB, which both must produce)
included. ``transient`` is the part freed again by the end of the call.

Targets (issue 2): kernel >= 3x faster than the reference, peak memory <= 1/5 of the reference's.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

NUM_NODES, NUM_EDGES, HIDDEN = 400_000, 1_000_000, 64
MEDIANS = {}
MEMORY = {}


def make_inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    leaves = dict(
        p_src=torch.randn(NUM_NODES, HIDDEN, generator=gen),
        p_dst=torch.randn(NUM_NODES, HIDDEN, generator=gen),
        weight=torch.randn(1, HIDDEN, generator=gen) / HIDDEN**0.5,
        bias=torch.randn(1, generator=gen),
    )
    for t in leaves.values():
        t.requires_grad_()
    edge_index = torch.randint(0, NUM_NODES, (2, NUM_EDGES), generator=gen)
    grad_out = torch.randn(NUM_EDGES, generator=gen)
    return leaves, edge_index, grad_out


def implementation(name):
    from refine_fast.ops import edge_score, edge_score_reference

    return {"kernel": edge_score, "reference": edge_score_reference}[name]


def forward_backward(fn, leaves, edge_index, grad_out):
    for t in leaves.values():
        t.grad = None
    out = fn(leaves["p_src"], leaves["p_dst"], edge_index, leaves["weight"], leaves["bias"])
    out.backward(grad_out)
    return out


@pytest.fixture(scope="module")
def inputs():
    return make_inputs()


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    lines = [f"\nedge_score fwd+bwd, E = {NUM_EDGES}, N = {NUM_NODES}, H = {HIDDEN}, "
             f"{torch.get_num_threads()} threads"]
    for impl, median in sorted(MEDIANS.items()):
        ratio = f"  kernel {median / MEDIANS['kernel']:.2f}x faster" if impl != "kernel" and "kernel" in MEDIANS else ""
        lines.append(f"  time   {impl:10s} median {1e3 * median:9.1f} ms{ratio}")
    for impl, mem in sorted(MEMORY.items()):
        line = (f"  memory {impl:10s} forward peak {mem['forward_mb']:7.1f} MB, forward+backward peak "
                f"{mem['peak_mb']:7.1f} MB (transient {mem['transient_mb']:6.1f} MB)")
        if impl != "kernel" and "kernel" in MEMORY:
            line += "; kernel = 1/" + ", 1/".join(f"{mem[k] / MEMORY['kernel'][k]:.1f}" for k in mem)
        lines.append(line)
    print("\n".join(lines))


def check_correct(inputs):
    """The kernel against the reference evaluated in float64 on the same values (the float32
    reference itself is off by up to 5e-2 in the weight gradient, a sum over 1M edges)."""
    leaves, edge_index, grad_out = inputs
    out = forward_backward(implementation("kernel"), leaves, edge_index, grad_out)
    got = [out.detach()] + [t.grad.clone() for t in leaves.values()]
    exact = {k: t.detach().double().requires_grad_() for k, t in leaves.items()}
    out = forward_backward(implementation("reference"), exact, edge_index, grad_out.double())
    want = [out.detach()] + [t.grad for t in exact.values()]
    for name, g, w in zip(["out"] + list(leaves), got, want):
        torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_time(benchmark, inputs, impl):
    if impl == "kernel":  # correctness first, inside the benchmark so that --benchmark-only runs it too
        check_correct(inputs)
    leaves, edge_index, grad_out = inputs
    fn = implementation(impl)
    benchmark.group = "edge_score fwd+bwd"
    benchmark.pedantic(lambda: forward_backward(fn, leaves, edge_index, grad_out), rounds=5, iterations=1,
                       warmup_rounds=1)
    MEDIANS[impl] = benchmark.stats.stats.median


@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_peak_memory(impl):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    repo = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, __file__, "--memory", impl], env=env, capture_output=True, text=True,
                            check=True)
    MEMORY[impl] = json.loads(result.stdout.strip().splitlines()[-1])


def _status_kb(field):
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def measure_memory(impl):
    """Peak resident memory (MB) of one forward (with autograd recording) and of one forward +
    backward, and the transient part of the latter, in this fresh process."""
    import refine_fast  # noqa: F401

    fn = implementation(impl)
    warm = dict(p_src=torch.randn(8, HIDDEN), p_dst=torch.randn(8, HIDDEN), weight=torch.randn(1, HIDDEN),
                bias=torch.randn(1))
    for t in warm.values():
        t.requires_grad_()
    forward_backward(fn, warm, torch.randint(0, 8, (2, 64)), torch.randn(64))  # thread pools, lazy init
    leaves, edge_index, grad_out = make_inputs()
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    out = fn(leaves["p_src"], leaves["p_dst"], edge_index, leaves["weight"], leaves["bias"])
    forward_mb = (_status_kb("VmHWM") - before) / 1024
    out.backward(grad_out)
    peak, after = _status_kb("VmHWM"), _status_kb("VmRSS")
    return dict(forward_mb=forward_mb, peak_mb=(peak - before) / 1024, transient_mb=(peak - after) / 1024)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory":
        print(json.dumps(measure_memory(sys.argv[2])))
    else:
        sys.exit(f"usage: {sys.argv[0]} --memory kernel|reference")
