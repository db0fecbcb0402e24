"""Counter-based uniform noise and the concrete (relaxed Bernoulli) edge sampling of ReFine.

``u = uniform(key, seed, step)`` is a pure function of (seed, key[e], step): Philox-4x32-10
with Philox key (seed lo, seed hi) and counter (key lo, key hi, step, stream), stream 0.
The same edge therefore draws the same u on CPU and CUDA, whatever the thread count or
the batch it sits in. ``key`` is one int64 per edge (graph id * 2**32 + edge index within
the graph in ReFine).

float32: ``u = ((x0 >> 9) + 0.5) * 2**-23`` in [2**-24, 1 - 2**-24];
float64: ``u = (((x0 << 20) | (x1 >> 12)) + 0.5) * 2**-52`` in [2**-53, 1 - 2**-53].
Both are exact, strictly inside (0, 1) and symmetric (1 - u is a possible draw).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .devices import check_same_device

__all__ = [
    "uniform",
    "uniform_reference",
    "philox4x32_reference",
    "concrete_sample",
    "concrete_sample_reference",
]

CONCRETE_STREAM = 0  # stream of concrete_sample's logistic noise
SELECT_STREAM = 1  # stream of segment_select's Gumbel noise

_MASK32 = 0xFFFFFFFF
_PHILOX_MUL = (0xD2511F53, 0xCD9E8D57)
_PHILOX_WEYL = (0x9E3779B9, 0xBB67AE85)


def _int64(seed: int) -> int:
    """A seed in [-2**63, 2**64) as the int64 with the same low 64 bits."""
    if not -(2**63) <= seed < 2**64:
        raise ValueError(f"seed must be in [-2**63, 2**64), got {seed}")
    return seed - 2**64 if seed >= 2**63 else seed


def uniform(key: Tensor, seed: int, step: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    """Counter-based uniform draws strictly inside (0, 1).

    Args:
        key: ``[E]`` int64, one key per edge.
        seed: the run's seed (any 64-bit integer).
        step: the training step, in [0, 2**32).
        dtype: torch.float32 or torch.float64.

    Returns:
        ``[E]`` of ``dtype``.
    """
    return torch.ops.refine_fast.uniform(key, _int64(seed), step, dtype)


def concrete_sample(logits: Tensor, key: Tensor, seed: int, step: int = 0, temperature: float = 1.0) -> Tensor:
    """Reparameterized edge mask ``m = sigmoid((log u - log(1 - u) + logits) / temperature)``.

    ``u = uniform(key, seed, step, logits.dtype)`` (float32 draws for half and bfloat16 logits).
    Differentiable in ``logits``: ``d m / d logits = m (1 - m) / temperature``. Infinite logits
    give 0 or 1; NaN logits give NaN.

    Args:
        logits: ``[E]`` floating, the edge logits (log alpha in the paper).
        key: ``[E]`` int64, one key per edge.
        seed: the run's seed.
        step: the training step, in [0, 2**32).
        temperature: > 0.

    Returns:
        ``[E]`` of ``logits.dtype`` in [0, 1].
    """
    return torch.ops.refine_fast.concrete_sample(logits, key, _int64(seed), step, float(temperature))


def philox4x32_reference(counter: Tensor, key: Tensor) -> Tensor:
    """Philox-4x32-10 in pure PyTorch (int64 arithmetic, masked to 32 bits).

    Args:
        counter: ``[..., 4]`` int64 holding 32-bit words.
        key: ``[..., 2]`` int64 holding 32-bit words (broadcasts against counter).

    Returns:
        ``[..., 4]`` int64 holding the 32-bit output words.
    """
    x = [counter[..., i] & _MASK32 for i in range(4)]
    k0, k1 = key[..., 0] & _MASK32, key[..., 1] & _MASK32
    for _ in range(10):
        hi0, lo0 = _mulhilo(_PHILOX_MUL[0], x[0])
        hi1, lo1 = _mulhilo(_PHILOX_MUL[1], x[2])
        x = [hi1 ^ x[1] ^ k0, lo1, hi0 ^ x[3] ^ k1, lo0]
        k0 = (k0 + _PHILOX_WEYL[0]) & _MASK32
        k1 = (k1 + _PHILOX_WEYL[1]) & _MASK32
    return torch.stack(x, dim=-1)


def _mulhilo(a: int, b: Tensor) -> tuple[Tensor, Tensor]:
    """High and low 32-bit words of the 64-bit product a * b, without int64 overflow."""
    low = a * (b & 0xFFFF)  # < 2**48
    high = a * (b >> 16)  # < 2**48
    middle = low + ((high & 0xFFFF) << 16)  # < 2**49
    return (high >> 16) + (middle >> 32), middle & _MASK32


def uniform_reference(
    key: Tensor, seed: int, step: int = 0, dtype: torch.dtype = torch.float32, stream: int = CONCRETE_STREAM
) -> Tensor:
    """Pure-PyTorch :func:`uniform`; ``stream`` 1 gives segment_select's noise.

    Returns:
        ``[E]`` of ``dtype`` (float32 or float64).
    """
    seed = _int64(seed)
    key = key.to(torch.int64)
    counter = torch.stack(
        [key & _MASK32, (key >> 32) & _MASK32, torch.full_like(key, step & _MASK32), torch.full_like(key, stream)],
        dim=-1,
    )
    philox_key = torch.tensor([seed & _MASK32, (seed >> 32) & _MASK32], dtype=torch.int64, device=key.device)
    x = philox4x32_reference(counter, philox_key)
    if dtype == torch.float32:
        return (((x[:, 0] >> 9).to(torch.float64) + 0.5) * 2.0**-23).to(torch.float32)
    if dtype == torch.float64:
        bits = (x[:, 0] << 20) | (x[:, 1] >> 12)
        return (bits.to(torch.float64) + 0.5) * 2.0**-52
    raise ValueError(f"uniform_reference: dtype must be float32 or float64, got {dtype}")


def concrete_sample_reference(
    logits: Tensor, key: Tensor, seed: int, step: int = 0, temperature: float = 1.0
) -> Tensor:
    """Pure-PyTorch :func:`concrete_sample` (differentiable through autograd)."""
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    u = uniform_reference(key, seed, step, compute)
    z = (torch.log(u) - torch.log(1 - u) + logits.to(compute)) / temperature
    return torch.sigmoid(z).to(logits.dtype)


@torch.library.register_fake("refine_fast::uniform")
def _uniform_fake(key, seed, step, dtype):
    return key.new_empty(key.shape, dtype=dtype)


@torch.library.register_fake("refine_fast::concrete_sample")
def _concrete_sample_fake(logits, key, seed, step, temperature):
    check_same_device("concrete_sample", logits=logits, key=key)
    return torch.empty_like(logits, memory_format=torch.contiguous_format)


@torch.library.register_fake("refine_fast::concrete_sample_backward")
def _concrete_sample_backward_fake(grad, output, temperature):
    check_same_device("concrete_sample_backward", output=output, grad=grad)
    return torch.empty_like(output, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    ctx.temperature = inputs[4]
    ctx.save_for_backward(output)


def _backward(ctx, grad):
    (output,) = ctx.saved_tensors
    grad_logits = torch.ops.refine_fast.concrete_sample_backward(grad.contiguous(), output, ctx.temperature)
    return grad_logits, None, None, None, None


torch.library.register_autograd("refine_fast::concrete_sample", _backward, setup_context=_setup_context)
