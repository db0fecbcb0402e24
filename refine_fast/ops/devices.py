"""The device check of the fake (meta) kernels.

An op called with one argument on ``meta`` and the others on a real device dispatches to its fake
kernel (Meta outranks every other backend), which would return uninitialized tensors on the device
of the other arguments; the fake kernels refuse such calls instead, as the C++ ops refuse mixed
real devices.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

__all__ = ["check_same_device"]


def check_same_device(op: str, **tensors: Optional[Tensor]) -> None:
    """Raise unless every given tensor (None skipped) is on the device of the first one."""
    given = [(name, t) for name, t in tensors.items() if t is not None]
    first_name, first = given[0]
    for name, t in given[1:]:
        if t.device != first.device:
            raise RuntimeError(f"{op}: {name} must be on the device of {first_name} ({first.device}), got {t.device}")
