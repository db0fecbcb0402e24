"""concrete_sample: forward and backward against the pure-PyTorch reference, gradcheck,
opcheck, degenerate inputs, errors, and CPU/CUDA agreement."""
import pytest
import torch

from refine_fast.ops import concrete_sample, concrete_sample_reference, uniform

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-14)}


def make_inputs(n, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(n, generator=gen, dtype=torch.float64)).to(dtype)
    key = (torch.arange(n) % 50) + (torch.arange(n) // 50 << 32)  # graph id * 2**32 + edge index
    return logits, key


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 37, 10_000])
@pytest.mark.parametrize("temperature", [1.0, 0.3, 5.0])
def test_forward_backward_match_reference(dtype, n, temperature):
    logits, key = make_inputs(n, dtype)
    x = logits.clone().requires_grad_()
    y = logits.clone().requires_grad_()
    out = concrete_sample(x, key, 42, 3, temperature)
    ref = concrete_sample_reference(y, key, 42, 3, temperature)
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref, **TOL[dtype])
    grad = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=dtype)
    out.backward(grad)
    ref.backward(grad)
    # m (1 - m) from a float32 m near 1 carries an absolute error ~1e-7 / temperature.
    grad_tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else TOL[dtype]
    torch.testing.assert_close(x.grad, y.grad, **grad_tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision(dtype):
    logits, key = make_inputs(1000, dtype)
    out = concrete_sample(logits, key, 1, 0)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), concrete_sample_reference(logits, key, 1, 0).float(), rtol=1e-2, atol=1e-2)


def test_uses_the_uniform_draws():
    logits, key = make_inputs(500, torch.float64)
    u = uniform(key, 8, 2, torch.float64)
    expected = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / 0.5)
    torch.testing.assert_close(concrete_sample(logits, key, 8, 2, 0.5), expected)


def test_non_contiguous():
    logits, key = make_inputs(400, torch.float64)
    logits_nc, key_nc = logits[::2], key[1::2]
    assert not logits_nc.is_contiguous() and not key_nc.is_contiguous()
    torch.testing.assert_close(
        concrete_sample(logits_nc, key_nc, 4, 1), concrete_sample_reference(logits_nc, key_nc, 4, 1)
    )


def test_empty():
    logits = torch.zeros(0, requires_grad=True)
    out = concrete_sample(logits, torch.zeros(0, dtype=torch.int64), 0)
    assert out.shape == (0,)
    out.sum().backward()
    assert logits.grad.shape == (0,)


def test_extreme_logits_stay_finite():
    logits = torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4])
    out = concrete_sample(logits, torch.arange(5), 0, 0, 0.1)
    assert torch.isfinite(out).all() and (out >= 0).all() and (out <= 1).all()


def test_same_key_same_mask_across_layouts_and_threads():
    logits, key = make_inputs(30_001, torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = concrete_sample(logits, key, 6, 9)
        torch.set_num_threads(2)
        two = concrete_sample(logits, key, 6, 9)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    perm = torch.randperm(key.numel(), generator=torch.Generator().manual_seed(1))
    assert torch.equal(concrete_sample(logits[perm], key[perm], 6, 9), one[perm])


def test_gradcheck():
    logits, key = make_inputs(20, torch.float64)
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: concrete_sample(x, key, 3, 1, 0.7), (logits,))


def test_opcheck():
    logits, key = make_inputs(64, torch.float64)
    torch.library.opcheck(torch.ops.refine_fast.concrete_sample.default, (logits.requires_grad_(), key, 3, 1, 0.7))
    m = concrete_sample(logits.detach(), key, 3, 1)
    torch.library.opcheck(torch.ops.refine_fast.concrete_sample_backward.default, (torch.randn(64).double(), m, 0.7))


def test_errors():
    logits, key = make_inputs(10, torch.float32)
    with pytest.raises(RuntimeError, match=r"concrete_sample \(CPU\): logits must be a 1-D floating tensor"):
        concrete_sample(torch.arange(10), key, 0)
    with pytest.raises(RuntimeError, match=r"concrete_sample \(CPU\): key must be a 1-D int64"):
        concrete_sample(logits, key.int(), 0)
    with pytest.raises(RuntimeError, match=r"concrete_sample \(CPU\): key must have shape \[E\] = \[10\]"):
        concrete_sample(logits, key[:5], 0)
    with pytest.raises(RuntimeError, match=r"concrete_sample \(CPU\): temperature must be > 0"):
        concrete_sample(logits, key, 0, 0, 0.0)
    with pytest.raises(RuntimeError, match=r"concrete_sample \(CPU\): step must be in \[0, 2\^32\)"):
        concrete_sample(logits, key, 0, 2**32)
    with pytest.raises(RuntimeError, match=r"concrete_sample_backward \(CPU\): grad must have the shape"):
        torch.ops.refine_fast.concrete_sample_backward(torch.ones(3), torch.ones(4), 1.0)


def test_argument_on_meta_is_refused():
    logits, key = make_inputs(10, torch.float32)
    with pytest.raises(RuntimeError, match=r"concrete_sample: key must be on the device of logits \(cpu\), got meta"):
        concrete_sample(logits, key.to("meta"), 0)
    with pytest.raises(RuntimeError, match=r"concrete_sample: key must be on the device of logits \(meta\), got cpu"):
        concrete_sample(logits.to("meta"), key, 0)
    with pytest.raises(RuntimeError, match=r"concrete_sample_backward: grad must be on the device of output"):
        torch.ops.refine_fast.concrete_sample_backward(torch.ones(4, device="meta"), torch.ones(4), 1.0)
    assert concrete_sample(logits.to("meta"), key.to("meta"), 0).device.type == "meta"


@CUDA
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype):
    logits, key = make_inputs(10_000, dtype)
    x = logits.cuda().requires_grad_()
    out = concrete_sample(x, key.cuda(), 5, 2, 0.5)
    torch.testing.assert_close(out.cpu(), concrete_sample(logits, key, 5, 2, 0.5), **TOL[dtype])
    out.sum().backward()
    y = logits.clone().requires_grad_()
    concrete_sample(y, key, 5, 2, 0.5).sum().backward()
    torch.testing.assert_close(x.grad.cpu(), y.grad, **TOL[dtype])
