"""Where refine_fast computes: the device choice of the command line (``--device``) and of Python code,
and, under torchrun, the process group of this process's device (:func:`join_torchrun`).

CUDA is used only when torch sees a GPU *and* the extension was built with CUDA kernels
(``refine_fast._C.has_cuda()``): a CPU-only build on a GPU machine (what a build without ``CUDA_HOME``
gives) computes on the CPU with a warning, instead of failing in the first kernel. Under torchrun,
rank ``LOCAL_RANK`` takes ``cuda:LOCAL_RANK % torch.cuda.device_count()``: ranks that share a node's
GPUs get one each, and ranks that each see a single GPU (``CUDA_VISIBLE_DEVICES`` per rank) take it.
"""
from __future__ import annotations

import glob
import os
import warnings
from typing import Optional, Union

import torch

__all__ = ["cuda_usable", "resolve_device", "join_torchrun", "load_failure_message"]

NO_CUDA_KERNELS = (
    "refine_fast._C was built without CUDA kernels (refine_fast._C.has_cuda() is False); for the GPU, "
    "rebuild it against a CUDA build of torch with CUDA_HOME set (or FORCE_CUDA=1): "
    "pip install --no-build-isolation ."
)


def cuda_usable() -> bool:
    """Whether the CUDA kernels can run: torch sees a GPU and the extension has CUDA kernels."""
    from . import _C

    return torch.cuda.is_available() and _C.has_cuda()


def _local_gpu() -> torch.device:
    """This process's GPU: ``cuda:LOCAL_RANK % device_count()`` (``cuda:0`` outside torchrun)."""
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def resolve_device(device: Union[str, torch.device, None] = None) -> torch.device:
    """The device to compute on.

    Args:
        device: ``None`` or ``"auto"``: this process's GPU when :func:`cuda_usable`, else the CPU (with a
            warning when torch sees a GPU the extension cannot use); ``"cuda"``: this process's GPU;
            ``"cuda:N"`` or ``"cpu"``: that device.

    Raises:
        ValueError: a GPU asked for that cannot be used (none visible, index out of range, or an
            extension built without CUDA), or a device type other than cpu and cuda.
    """
    from . import _C

    if device is None or device == "auto":
        if cuda_usable():
            return _local_gpu()
        if torch.cuda.is_available():
            warnings.warn(f"torch sees a GPU, but {NO_CUDA_KERNELS}. Computing on the CPU.", RuntimeWarning,
                          stacklevel=2)
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from error
    if chosen.type == "cpu":
        return chosen
    if chosen.type != "cuda":
        raise ValueError(f"refine_fast computes on cpu or cuda, got device {chosen}")
    if not _C.has_cuda():
        raise ValueError(f"device {chosen} asked for, but {NO_CUDA_KERNELS}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {chosen} asked for, but torch sees no GPU (torch {torch.__version__}, "
                         f"CUDA {torch.version.cuda})")
    if chosen.index is None:
        return _local_gpu()
    if chosen.index >= torch.cuda.device_count():
        raise ValueError(f"device {chosen} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    return chosen


def join_torchrun(device: torch.device) -> tuple[int, int]:
    """``(rank, world_size)`` of this process. Launched by torchrun (``WORLD_SIZE`` > 1), it first joins the
    process group (once): nccl with ``device`` made the current GPU, or gloo when ``device`` is the CPU.
    Otherwise ``(0, 1)``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        on_gpu = torch.device(device).type == "cuda"
        if on_gpu:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if on_gpu else "gloo")
    return dist.get_rank(), dist.get_world_size()


def load_failure_message(error: ImportError, package_dir: str, torch_cuda: Optional[str]) -> str:
    """What to tell the user when ``refine_fast._C`` cannot be imported from ``package_dir``.

    Tells apart a checkout without the compiled extension, an extension built with CUDA loaded under a
    torch without CUDA (``torch_cuda`` is ``torch.version.cuda``), and one built against another torch.
    """
    built = sorted(glob.glob(os.path.join(package_dir, "_C*.so")) + glob.glob(os.path.join(package_dir, "_C*.pyd")))
    if not built:
        return ("refine_fast._C (the compiled kernels) is missing from " + package_dir + ": install with "
                "pip install --no-build-isolation -e . (or python setup.py build_ext --inplace) in the checkout")
    if torch_cuda is None and "cuda" in str(error).lower():
        return (f"refine_fast._C ({built[0]}) was built with CUDA, but this torch ({torch.__version__}) has no "
                f"CUDA ({error}): install a CUDA build of torch, or rebuild refine_fast against this one "
                "(FORCE_ONLY_CPU=1 pip install --no-build-isolation .)")
    return (f"refine_fast._C ({built[0]}) could not be loaded ({error}); it was probably built against another "
            f"torch than this one ({torch.__version__}): rebuild it with pip install --no-build-isolation -e . "
            "(or python setup.py build_ext --inplace)")
