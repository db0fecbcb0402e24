"""OpenMP threads on a machine whose cores are shared: ask for passive waits before torch loads the runtime.

With torch's default of one thread per core, idle OpenMP threads spin while they wait for the others. When
other processes hold the cores, the spinning threads wait on descheduled ones and small ops become tens of
times slower. ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep) cures it, but costs a quiet machine about
a quarter of its speed (a sleeping thread takes time to wake), and the OpenMP runtime reads it once, when
``import torch`` loads the runtime. So refine_fast asks for passive waits only when the machine is busy
as it starts (:func:`passive_wanted`). This module imports no torch, so that ``refine_fast``'s
``__init__`` can set the variable first.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Optional

__all__ = ["ADVICE", "passive_wanted", "prefer_passive_waits", "spin_warning", "usable_cores"]

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


def passive_wanted(load: float, cores: int) -> bool:
    """Whether to ask for passive waits: when other work holds at least half the usable ``cores`` (1-minute
    load average ``load``). Measured on 2 cores (bench/RESULTS.md, issue 15): quiet (load 0.5), spinning
    waits were 1.27x faster; with 2 busy processes, passive waits were 1.4x faster (and far more under
    heavier load). Results do not depend on it."""
    return load >= cores / 2


def prefer_passive_waits() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` when the machine is busy (:func:`passive_wanted`) unless the user
    set the variable; called before refine_fast imports torch.

    If torch is already loaded the setting would come too late: warn instead when the machine looks
    oversubscribed (:func:`spin_warning`).
    """
    torch = sys.modules.get("torch")
    if torch is None:
        if ("OMP_WAIT_POLICY" not in os.environ and hasattr(os, "getloadavg")
                and passive_wanted(os.getloadavg()[0], usable_cores())):
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        return
    if "OMP_WAIT_POLICY" in os.environ or not hasattr(os, "getloadavg"):
        return
    message = spin_warning(torch.get_num_threads(), os.getloadavg()[0], usable_cores())
    if message is not None:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
