"""The counter-based generator: Philox-4x32-10 known answers, uniform() vs its reference,
range, uniformity, and independence of thread count, batch layout and device."""
import pytest
import torch

from refine_fast.ops import uniform, uniform_reference
from refine_fast.ops.concrete_sample import CONCRETE_STREAM, SELECT_STREAM, philox4x32_reference

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
DTYPES = [torch.float32, torch.float64]

# Random123 known-answer vectors (counter, key, output) of Philox-4x32-10.
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]


def random_keys(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-(2**63), 2**63 - 1, (n,), generator=gen, dtype=torch.int64)


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_reference_known_answers(counter, key, expected):
    out = philox4x32_reference(torch.tensor(counter), torch.tensor(key))
    assert out.tolist() == expected


def test_philox_reference_batched():
    counters = torch.tensor([c for c, _, _ in KAT])
    keys = torch.tensor([k for _, k, _ in KAT])
    assert philox4x32_reference(counters, keys).tolist() == [e for _, _, e in KAT]


def test_uniform_known_answer():
    # seed 0, key 0, step 0, stream 0 is the all-zero counter and key: x = KAT[0].
    x0, x1 = KAT[0][2][:2]
    zero = torch.zeros(1, dtype=torch.int64)
    assert uniform(zero, 0, 0, torch.float32).item() == ((x0 >> 9) + 0.5) * 2.0**-23
    assert uniform(zero, 0, 0, torch.float64).item() == (((x0 << 20) | (x1 >> 12)) + 0.5) * 2.0**-52


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,step", [(0, 0), (1, 7), (2**40 + 3, 2**32 - 1), (-5, 123), (2**64 - 1, 1)])
def test_uniform_matches_reference(dtype, seed, step):
    key = random_keys(5000)
    out = uniform(key, seed, step, dtype)
    assert out.dtype == dtype and out.shape == key.shape
    assert torch.equal(out, uniform_reference(key, seed, step, dtype))


def test_uniform_non_contiguous_and_empty():
    key = random_keys(200)[::2]
    assert torch.equal(uniform(key, 3, 1), uniform_reference(key, 3, 1))
    empty = uniform(torch.zeros(0, dtype=torch.int64), 3, 1, torch.float64)
    assert empty.shape == (0,) and empty.dtype == torch.float64


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_open_interval_and_extremes(dtype):
    u = uniform(torch.arange(200_000), 11, 0, dtype)
    assert (u > 0).all() and (u < 1).all()
    bits = 23 if dtype == torch.float32 else 52
    # The smallest and largest possible values are exact, inside (0, 1) and symmetric.
    lo = torch.tensor(0.5 * 2.0**-bits, dtype=dtype)
    hi = torch.tensor((2**bits - 0.5) * 2.0**-bits, dtype=dtype)
    assert 0 < lo.item() and hi.item() < 1 and (1 - hi).item() == lo.item()


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_is_uniform(dtype):
    # Fixed keys and seed, so the statistic is a fixed number: no flakiness.
    num_bins, n = 100, 400_000
    u = uniform(torch.arange(n), 2024, 5, dtype)
    counts = torch.bincount((u * num_bins).long(), minlength=num_bins).double()
    chi2 = ((counts - n / num_bins) ** 2 / (n / num_bins)).sum().item()
    assert chi2 < 99 + 6 * (2 * 99) ** 0.5  # df = 99, ~6 standard deviations
    # Neighbouring keys and neighbouring steps are uncorrelated.
    assert abs(torch.corrcoef(torch.stack([u[:-1], u[1:]]))[0, 1].item()) < 0.01
    v = uniform(torch.arange(n), 2024, 6, dtype)
    assert abs(torch.corrcoef(torch.stack([u, v]))[0, 1].item()) < 0.01


def test_streams_are_independent():
    key = torch.arange(100_000)
    a = uniform_reference(key, 9, 0, torch.float64, stream=CONCRETE_STREAM)
    b = uniform_reference(key, 9, 0, torch.float64, stream=SELECT_STREAM)
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 0.01


def test_seed_and_step_change_the_draws():
    key = torch.arange(1000)
    base = uniform(key, 1, 0)
    assert (base != uniform(key, 2, 0)).float().mean() > 0.99
    assert (base != uniform(key, 1, 1)).float().mean() > 0.99
    assert (base != uniform(key, 1 + 2**32, 0)).float().mean() > 0.99  # the seed's high word counts


def test_thread_count_and_batch_layout_independence():
    key = random_keys(100_003, seed=1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = uniform(key, 5, 2)
        torch.set_num_threads(2)
        two = uniform(key, 5, 2)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    perm = torch.randperm(key.numel(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(uniform(key[perm], 5, 2), one[perm])
    assert torch.equal(uniform(key[17:40], 5, 2), one[17:40])


def test_uniform_errors():
    with pytest.raises(RuntimeError, match=r"uniform \(CPU\): key must be a 1-D int64"):
        uniform(torch.zeros(3, dtype=torch.int32), 0)
    with pytest.raises(RuntimeError, match=r"uniform \(CPU\): step must be in \[0, 2\^32\)"):
        uniform(torch.zeros(3, dtype=torch.int64), 0, -1)
    with pytest.raises(RuntimeError, match=r"uniform \(CPU\): dtype must be float32 or float64"):
        uniform(torch.zeros(3, dtype=torch.int64), 0, 0, torch.float16)
    with pytest.raises(ValueError, match="seed must be in"):
        uniform(torch.zeros(3, dtype=torch.int64), 2**64)


def test_uniform_opcheck():
    torch.library.opcheck(torch.ops.refine_fast.uniform.default, (random_keys(64), 3, 4, torch.float64))


@CUDA
@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_cuda_matches_cpu(dtype):
    key = random_keys(100_000)
    assert torch.equal(uniform(key.cuda(), 7, 3, dtype).cpu(), uniform(key, 7, 3, dtype))
