"""refine_fast: fast, faithful ReFine explanations for PyTorch Geometric."""
from .threads import prefer_passive_waits

prefer_passive_waits()  # before torch loads the OpenMP runtime, which reads OMP_WAIT_POLICY once

import torch  # noqa: E402

from .device import load_failure_message

try:
    from . import _C
except ImportError as error:  # not built, built with CUDA under a torch without, or built for another torch
    raise ImportError(load_failure_message(error, __path__[0], torch.version.cuda)) from error

if _C.has_cuda() and torch.version.cuda is not None:
    _built = _C.cuda_version()
    _major, _minor = (int(v) for v in torch.version.cuda.split(".")[:2])
    if _built // 1000 != _major:
        raise RuntimeError(
            f"refine_fast was built with CUDA {_built // 1000}.{_built % 1000 // 10} but torch uses "
            f"CUDA {torch.version.cuda}; reinstall refine_fast with pip install --no-build-isolation ."
        )

from . import device, ops, nn  # noqa: E402  (ops register fake kernels and autograd on import)
from . import datasets, metrics, models  # noqa: E402
from .explain import ReFine, ReFineAlgorithm, ReFineConfig  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ReFine", "ReFineAlgorithm", "ReFineConfig", "device", "ops", "nn", "datasets", "models", "metrics",
           "__version__"]
