"""Benchmark concrete_sample and segment_select (E = 1M edges, segments of ~60 edges) against
their eager references, in the same run. Each benchmark checks correctness first.

    python -m pytest bench/bench_sampling.py -s -q --benchmark-columns=median,iqr,rounds

The summary printed at the end gives the medians and the speed-up over each baseline
(target: >= 3x the eager reference).
"""
import pytest
import torch

from refine_fast.ops import (
    concrete_sample,
    concrete_sample_reference,
    segment_select,
    segment_select_reference,
)

NUM_EDGES = 1_000_000
RATIO = 0.3
SEED, STEP, TEMPERATURE = 2021, 7, 1.0
MEDIANS = {}


@pytest.fixture(scope="module")
def batch():
    """Graphs of 30-90 edges (mean 60) concatenated into E = 1M edges."""
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(30, 91, (NUM_EDGES // 30,), generator=gen)
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)])
    ptr = torch.cat([ptr[ptr < NUM_EDGES], torch.tensor([NUM_EDGES])])
    segment = torch.repeat_interleave(torch.arange(ptr.numel() - 1), ptr.diff())
    key = (segment << 32) + torch.arange(NUM_EDGES) - ptr[:-1][segment]
    logits = torch.randn(NUM_EDGES, generator=gen)
    scores = torch.rand(NUM_EDGES, generator=gen)
    return dict(ptr=ptr, key=key, logits=logits, scores=scores)


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    lines = [f"\nE = {NUM_EDGES}, {torch.get_num_threads()} threads: median ms and speed-up of the kernel"]
    for (op, impl), median in sorted(MEDIANS.items()):
        kernel = MEDIANS.get((op, "kernel"))
        ratio = f"{median / kernel:6.1f}x" if kernel and impl != "kernel" else ""
        lines.append(f"  {op:32s} {impl:12s} {1e3 * median:9.2f} ms {ratio}")
    print("\n".join(lines))


def run(benchmark, op, impl, fn, rounds):
    benchmark.group = op
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
    MEDIANS[(op, impl)] = benchmark.stats.stats.median


def torch_rand_concrete(logits, temperature):
    """The eager concrete sampling of ReFine's original code (torch.rand noise, not counter-based)."""
    u = torch.rand_like(logits)
    return torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / temperature)


@pytest.mark.parametrize("impl", ["kernel", "reference", "torch.rand"])
def test_concrete_sample(benchmark, batch, impl):
    logits, key = batch["logits"], batch["key"]
    if impl == "kernel":
        torch.testing.assert_close(
            concrete_sample(logits, key, SEED, STEP, TEMPERATURE),
            concrete_sample_reference(logits, key, SEED, STEP, TEMPERATURE),
        )
    fn = {
        "kernel": lambda: concrete_sample(logits, key, SEED, STEP, TEMPERATURE),
        "reference": lambda: concrete_sample_reference(logits, key, SEED, STEP, TEMPERATURE),
        "torch.rand": lambda: torch_rand_concrete(logits, TEMPERATURE),
    }[impl]
    run(benchmark, "concrete_sample", impl, fn, rounds=3 if impl == "reference" else 10)


@pytest.mark.parametrize("impl", ["kernel", "reference"])
@pytest.mark.parametrize("stochastic", [True, False], ids=["stochastic", "deterministic"])
def test_segment_select(benchmark, batch, impl, stochastic):
    args = (batch["scores"], batch["ptr"], RATIO, batch["key"], SEED, STEP, stochastic)
    if impl == "kernel":
        assert torch.equal(segment_select(*args), segment_select_reference(*args))
    fn = segment_select if impl == "kernel" else segment_select_reference
    name = f"segment_select ({'stochastic' if stochastic else 'deterministic'})"
    run(benchmark, name, impl, lambda: fn(*args), rounds=3 if impl == "reference" else 10)
