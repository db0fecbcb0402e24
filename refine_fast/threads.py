"""OpenMP threads on a machine whose cores are shared: ask for passive waits before torch loads the runtime.

With torch's default of one thread per core, idle OpenMP threads spin while they wait for the others. When
other processes hold the cores, the spinning threads wait on descheduled ones and small ops become tens of
times slower. ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep) cures it, but the OpenMP runtime reads it
once, when ``import torch`` loads the runtime. This module imports no torch, so that ``refine_fast``'s
``__init__`` can set the variable first.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Optional

__all__ = ["ADVICE", "prefer_passive_waits", "spin_warning", "usable_cores"]

ADVICE = "set OMP_WAIT_POLICY=PASSIVE in the environment before importing torch"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def spin_warning(threads: int, load: float, cores: int) -> Optional[str]:
    """The warning for a process whose OpenMP threads spin while waiting (torch imported before refine_fast,
    no ``OMP_WAIT_POLICY``) if the machine looks oversubscribed: more than one torch thread and a 1-minute
    load average above ``cores``. Else ``None``."""
    if threads <= 1 or load <= cores:
        return None
    return (f"refine_fast: the machine is busy (load {load:.1f} on {cores} cores) and torch, imported before "
            f"refine_fast, runs {threads} OpenMP threads that spin while waiting; small ops can become tens of "
            f"times slower: {ADVICE} (or call torch.set_num_threads(1))")


def prefer_passive_waits() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it; called before refine_fast imports torch.

    If torch is already loaded the setting would come too late: warn instead when the machine looks
    oversubscribed (:func:`spin_warning`).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return
    if "OMP_WAIT_POLICY" in os.environ or not hasattr(os, "getloadavg"):
        return
    message = spin_warning(torch.get_num_threads(), os.getloadavg()[0], usable_cores())
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
