"""segment_select: against the sort-based reference, counts, ties, degenerate segments,
exact without-replacement inclusion probabilities, determinism, hypothesis properties,
opcheck, errors and CPU/CUDA agreement."""
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refine_fast.ops import segment_select, segment_select_reference
from refine_fast.ops.segment_select import select_counts
from refine_fast.testing import SyncCounter, assert_cuda_graph_safe

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
DTYPES = [torch.float32, torch.float64]


def make_batch(sizes, dtype=torch.float64, seed=0, ties=False):
    """Scores in [0, 1], ptr and graph-id * 2**32 + edge-index keys for segments of `sizes`."""
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.tensor(sizes, dtype=torch.int64)
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.cumsum(0)])
    num_edges = int(ptr[-1])
    scores = torch.rand(num_edges, generator=gen, dtype=torch.float64)
    if ties:
        scores = (scores * 4).floor() / 4
    segment = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
    key = (segment << 32) + torch.arange(num_edges) - ptr[:-1][segment]
    return scores.to(dtype), ptr, key


def per_segment_sum(mask, ptr):
    return torch.segment_reduce(mask.double(), "sum", offsets=ptr).long() if ptr.numel() > 1 else mask.long()


@pytest.mark.parametrize("dtype", DTYPES + [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("stochastic", [True, False])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 1.0])
def test_matches_reference(dtype, stochastic, ties, ratio):
    sizes = [0, 1, 2, 5, 10, 60, 0, 333, 1, 7]
    scores, ptr, key = make_batch(sizes, dtype, seed=3, ties=ties)
    out = segment_select(scores, ptr, ratio, key, seed=5, step=1, stochastic=stochastic)
    assert out.dtype == torch.bool and out.shape == scores.shape
    assert torch.equal(out, segment_select_reference(scores, ptr, ratio, key, 5, 1, stochastic))
    assert torch.equal(per_segment_sum(out, ptr), select_counts(ptr, ratio))


@pytest.mark.parametrize("stochastic", [True, False])
def test_large_segments(stochastic):
    scores, ptr, key = make_batch([5000, 3, 20_000], seed=8, ties=True)
    for ratio in [0.01, 0.5, 0.99]:
        out = segment_select(scores, ptr, ratio, key, 4, 2, stochastic)
        assert torch.equal(out, segment_select_reference(scores, ptr, ratio, key, 4, 2, stochastic))


def test_ratio_is_a_float_argument():
    # A float in the schema: no tensor made per call (and none copied to the device).
    schema = torch.ops.refine_fast.segment_select.default._schema
    assert str(schema.arguments[2].type) == "float" and schema.arguments[2].name == "ratio"
    scores, ptr, key = make_batch([4, 10, 0, 25, 3])
    for stochastic in [True, False]:
        out = torch.ops.refine_fast.segment_select(scores, ptr, 0.3, key, 1, 0, stochastic)
        assert torch.equal(out, segment_select(scores, ptr, 0.3, key, 1, 0, stochastic))
        # A one-element tensor still works through the wrapper (converted once on the host).
        scalar = segment_select(scores, ptr, torch.tensor(0.3, dtype=torch.float32), key, 1, 0, stochastic)
        assert torch.equal(scalar, out)


def test_counts_round_like_exact_arithmetic():
    n = torch.tensor([10, 10, 10, 3, 1, 7, 100])
    ptr = torch.cat([torch.zeros(1, dtype=torch.int64), n.cumsum(0)])
    assert select_counts(ptr, 0.3).tolist() == [3, 3, 3, 1, 1, 3, 30]
    assert select_counts(ptr, torch.tensor(0.3, dtype=torch.float32)).tolist() == [3, 3, 3, 1, 1, 3, 30]
    assert select_counts(ptr, 0.31).tolist() == [4, 4, 4, 1, 1, 3, 31]
    assert select_counts(ptr, 1.0).tolist() == n.tolist()
    for ratio in [0.3, torch.tensor(0.3, dtype=torch.float32), 0.7, 0.1]:
        scores = torch.rand(int(ptr[-1]), generator=torch.Generator().manual_seed(0))
        mask = segment_select(scores, ptr, ratio, stochastic=False)
        assert torch.equal(per_segment_sum(mask, ptr), select_counts(ptr, ratio))


def test_deterministic_ties_go_to_lower_index():
    scores = torch.tensor([0.5, 0.9, 0.5, 0.5, 0.9, 0.1])
    ptr = torch.tensor([0, 6])
    mask = segment_select(scores, ptr, 0.5, stochastic=False)  # k = 3
    assert mask.tolist() == [True, True, False, False, True, False]
    assert segment_select(torch.zeros(5), torch.tensor([0, 5]), 0.4, stochastic=False).tolist() == [
        True, True, False, False, False
    ]


def test_stochastic_zero_scores_only_when_needed():
    scores = torch.tensor([0.0, 0.2, 0.0, 0.7, 0.0, 0.0])
    ptr = torch.tensor([0, 6])
    key = torch.arange(6)
    for seed in range(20):
        assert segment_select(scores, ptr, 2 / 6, key, seed).tolist() == [False, True, False, True, False, False]
        # k = 4 needs two of the zero-score edges: the lower indices 0 and 2.
        assert segment_select(scores, ptr, 4 / 6, key, seed).tolist() == [True, True, True, True, False, False]


def test_empty_inputs():
    empty = torch.zeros(0)
    for ptr in [torch.zeros(1, dtype=torch.int64), torch.zeros(4, dtype=torch.int64)]:
        out = segment_select(empty, ptr, 0.5, torch.zeros(0, dtype=torch.int64))
        assert out.shape == (0,) and out.dtype == torch.bool
        assert torch.equal(out, segment_select_reference(empty, ptr, 0.5, torch.zeros(0, dtype=torch.int64)))
    ptr = torch.zeros(1, dtype=torch.int64)
    assert segment_select(empty, ptr, 1.0, stochastic=False).shape == (0,)


def test_non_contiguous():
    scores, ptr, key = make_batch([8, 0, 20, 1, 31], seed=1)
    scores_nc = torch.stack([scores, scores], 1)[:, 1]
    key_nc = torch.stack([key, key], 1)[:, 0]
    ptr_nc = torch.stack([ptr, ptr], 1)[:, 1]
    assert not (scores_nc.is_contiguous() or key_nc.is_contiguous() or ptr_nc.is_contiguous())
    for stochastic in [True, False]:
        assert torch.equal(
            segment_select(scores_nc, ptr_nc, 0.4, key_nc, 2, 0, stochastic),
            segment_select(scores, ptr, 0.4, key, 2, 0, stochastic),
        )


def exact_inclusion(weights, k):
    """P(edge i in a k-draw without replacement, probabilities proportional to weights)."""
    total = sum(weights)
    inclusion = [0.0] * len(weights)
    for order in itertools.permutations(range(len(weights)), k):
        p, left = 1.0, total
        for i in order:
            p *= weights[i] / left
            left -= weights[i]
        for i in order:
            inclusion[i] += p
    return inclusion


def test_stochastic_inclusion_probabilities():
    # Many copies of one 4-edge segment, each with its own keys: independent draws.
    weights, k, copies = [0.9, 0.5, 0.3, 0.1], 2, 100_000
    scores = torch.tensor(weights, dtype=torch.float64).repeat(copies)
    ptr = torch.arange(copies + 1) * 4
    key = (torch.arange(copies).repeat_interleave(4) << 32) + torch.arange(4).repeat(copies)
    exact = torch.tensor(exact_inclusion(weights, k), dtype=torch.float64)
    for seed in [0, 1]:
        mask = segment_select(scores, ptr, 0.5, key, seed=seed, step=seed)
        frequency = mask.view(copies, 4).double().mean(0)
        # Standard error <= 0.0016: 0.008 is 5 of them, and the seeds are fixed.
        torch.testing.assert_close(frequency, exact, rtol=0, atol=0.008)


def test_determinism_threads_and_batch_layout():
    sizes = [int(s) for s in torch.randint(0, 120, (800,), generator=torch.Generator().manual_seed(2))]
    scores, ptr, key = make_batch(sizes, seed=4)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = segment_select(scores, ptr, 0.3, key, 9, 4)
        torch.set_num_threads(2)
        two = segment_select(scores, ptr, 0.3, key, 9, 4)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    # The same graphs (same keys) concatenated in reverse order pick the same edges.
    order = list(reversed(range(len(sizes))))
    parts = [torch.arange(int(ptr[s]), int(ptr[s + 1])) for s in order]
    index = torch.cat(parts)
    ptr_rev = torch.cat([torch.zeros(1, dtype=torch.int64), torch.tensor([sizes[s] for s in order]).cumsum(0)])
    assert torch.equal(segment_select(scores[index], ptr_rev, 0.3, key[index], 9, 4), one[index])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 30), min_size=0, max_size=12),
    ratio=st.floats(0.01, 1.0),
    levels=st.integers(1, 6),
    seed=st.integers(0, 2**32),
)
def test_property_counts_and_top_k(sizes, ratio, levels, seed):
    gen = torch.Generator().manual_seed(seed)
    ptr = torch.tensor([0] + sizes, dtype=torch.int64).cumsum(0)
    scores = torch.randint(0, levels, (int(ptr[-1]),), generator=gen).double() / levels  # many ties
    key = torch.randint(0, 2**40, scores.shape, generator=gen)
    counts = select_counts(ptr, ratio)
    det = segment_select(scores, ptr, ratio, stochastic=False)
    sto = segment_select(scores, ptr, ratio, key, seed)
    assert torch.equal(det, segment_select_reference(scores, ptr, ratio, stochastic=False))
    assert torch.equal(sto, segment_select_reference(scores, ptr, ratio, key, seed))
    for s, (begin, end) in enumerate(zip(ptr[:-1].tolist(), ptr[1:].tolist())):
        assert int(det[begin:end].sum()) == int(sto[begin:end].sum()) == int(counts[s])
        picked, left = scores[begin:end][det[begin:end]], scores[begin:end][~det[begin:end]]
        if picked.numel() and left.numel():
            assert picked.min() >= left.max()  # deterministic picks are a top-k
        # among equal scores, the lower indices are taken
        for value in scores[begin:end].unique():
            tied = det[begin:end][scores[begin:end] == value]
            assert torch.equal(tied, tied.sort(descending=True).values)


@pytest.mark.parametrize("stochastic", [True, False])
def test_opcheck(stochastic):
    scores, ptr, key = make_batch([3, 0, 9, 1])
    args = (scores, ptr, 0.4, key if stochastic else None, 1, 2, stochastic)
    torch.library.opcheck(torch.ops.refine_fast.segment_select.default, args)


def test_errors():
    scores, ptr, key = make_batch([3, 4])
    op = r"segment_select \(CPU\): "
    cases = [
        (dict(scores=scores.long()), "scores must be a 1-D floating tensor"),
        (dict(ptr=ptr.int()), r"ptr must be a 1-D int64 tensor of shape \[S \+ 1\]"),
        (dict(ptr=torch.tensor([1, 3, 7])), r"ptr\[0\] must be 0"),
        (dict(ptr=torch.tensor([0, 3, 6])), r"ptr\[-1\] must equal E = 7"),
        (dict(ptr=torch.tensor([0, 5, 2, 7])), r"ptr must be non-decreasing, got ptr\[1\] = 5 > ptr\[2\] = 2"),
        (dict(ratio=0.0), r"ratio must be in \(0, 1\]"),
        (dict(ratio=1.5), r"ratio must be in \(0, 1\]"),
        (dict(ratio=float("nan")), r"ratio must be in \(0, 1\]"),
        (dict(key=None), "key is required when stochastic=True"),
        (dict(key=key[:3]), r"key must be int64 of shape \[E\] = \[7\]"),
        (dict(step=-1), r"step must be in \[0, 2\^32\)"),
        (dict(scores=torch.tensor([0.1, 0.3, 0.1, 0.1, 0.1, float("nan"), 0.1])),
         "scores must not contain NaN, got NaN at edge 5"),
        (dict(scores=torch.tensor([0.1, -0.2, 0.3, 0.1, 0.1, 0.1, -0.1])),
         "scores must be probabilities >= 0 when stochastic=True, got -0.2 at edge 1"),
    ]
    for change, message in cases:
        args = dict(scores=scores, ptr=ptr, ratio=0.5, key=key, seed=0, step=0, stochastic=True) | change
        with pytest.raises(RuntimeError, match=op + message):
            segment_select(**args)
    # Negative scores are fine for the deterministic top-k.
    assert segment_select(-scores, ptr, 0.5, stochastic=False).sum() == 4


@pytest.mark.parametrize("threads", [1, 2])
def test_bad_score_names_the_first_bad_edge(threads):
    # Checked as the kernel reads the scores (no separate pass, no host sync): the lowest bad edge is
    # named whatever the thread count, also in segments where every edge is kept (k = n).
    scores, ptr, key = make_batch([1] * 100 + [200] * 50, seed=1)
    scores[9000], scores[50] = float("nan"), -1.0
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with pytest.raises(RuntimeError, match=r"segment_select \(CPU\): scores must be probabilities >= 0 when "
                                               r"stochastic=True, got -1 at edge 50"):
            segment_select(scores, ptr, 0.3, key, 0, 0, True)
        with pytest.raises(RuntimeError, match=r"scores must not contain NaN, got NaN at edge 9000"):
            segment_select(scores, ptr, 0.3, key, 0, 0, False)
    finally:
        torch.set_num_threads(previous)


def test_no_host_sync():
    scores, ptr, key = make_batch([0, 5, 60, 333, 7], seed=2)
    with SyncCounter() as syncs:
        for stochastic in [True, False]:
            segment_select(scores, ptr, 0.3, key, 1, 2, stochastic)
    assert syncs.count == 0, syncs.ops


@pytest.mark.parametrize("name", ["scores", "ptr", "key"])
def test_argument_on_meta_is_refused(name):
    args = dict(zip(["scores", "ptr", "key"], make_batch([3, 4])))
    expected = (r"ptr must be on the device of scores \(meta\), got cpu" if name == "scores"
                else rf"{name} must be on the device of scores \(cpu\), got meta")
    args[name] = args[name].to("meta")
    with pytest.raises(RuntimeError, match=r"segment_select: " + expected):
        segment_select(args["scores"], args["ptr"], 0.5, args["key"], 0, 0, True)


@CUDA
@pytest.mark.parametrize("stochastic", [True, False])
@pytest.mark.parametrize("ties", [False, True])
def test_cuda_matches_cpu(stochastic, ties):
    # Every path: the shared-memory ranks (<= 2048), the one-block radix select (<= 32768) and the
    # radix select split across blocks (> 32768, tiles of 4096), with ties at the threshold.
    sizes = [0, 1, 5, 60, 2047, 2048, 2049, 5000, 0, 3, 32768, 32769, 40000, 100_000, 3]
    scores, ptr, key = make_batch(sizes, seed=6, ties=ties)
    for ratio in [0.01, 0.3, 0.999, 1.0]:
        cpu = segment_select(scores, ptr, ratio, key, 3, 1, stochastic)
        gpu = segment_select(scores.cuda(), ptr.cuda(), ratio, key.cuda(), 3, 1, stochastic)
        assert torch.equal(gpu.cpu(), cpu), ratio
        assert torch.equal(gpu, segment_select(scores.cuda(), ptr.cuda(), ratio, key.cuda(), 3, 1, stochastic))


@CUDA
def test_cuda_all_ties_in_a_split_segment():
    # One 200k-edge segment of equal scores: the k first edges, ties spanning many tiles.
    scores = torch.full((200_000,), 0.5, dtype=torch.float64)
    ptr = torch.tensor([0, 200_000])
    for ratio in [0.0001, 0.37, 0.9999]:
        gpu = segment_select(scores.cuda(), ptr.cuda(), ratio, stochastic=False).cpu()
        assert torch.equal(gpu, segment_select(scores, ptr, ratio, stochastic=False))


@CUDA
def test_cuda_mixed_devices():
    scores, ptr, key = make_batch([3, 4])
    with pytest.raises(RuntimeError, match=r"ptr must be on the device of scores"):
        segment_select(scores.cuda(), ptr, 0.5, key.cuda())
    with pytest.raises(RuntimeError, match=r"segment_select: key must be on the device of scores \(cuda:0\)"):
        segment_select(scores.cuda(), ptr.cuda(), 0.5, key.to("meta"))


@CUDA
def test_cuda_no_sync_and_graph_capture():
    # Every path (split segments included) without host synchronization: none under sync debug mode
    # "error", and a CUDA graph capture replays to the same selection.
    scores, ptr, key = make_batch([5, 3000, 40_000, 70_000, 0, 60], seed=2)
    scores, ptr, key = scores.cuda(), ptr.cuda(), key.cuda()

    def run():
        return [segment_select(scores, ptr, 0.3, key, 1, 2, stochastic) for stochastic in (True, False)]

    assert_cuda_graph_safe(run)
