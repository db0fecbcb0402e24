"""refine_fast: fast, faithful ReFine explanations for PyTorch Geometric."""
from .threads import prefer_passive_waits

prefer_passive_waits()  # before torch loads the OpenMP runtime, which reads OMP_WAIT_POLICY once

import torch  # noqa: E402

try:
    from . import _C
except ImportError as error:  # a source checkout without the compiled extension
    raise ImportError(
        "refine_fast._C (the compiled kernels) is missing from " + __path__[0] + ": install with "
        "pip install --no-build-isolation -e . (or python setup.py build_ext --inplace) in the checkout"
    ) from error

if _C.has_cuda() and torch.version.cuda is not None:
    _built = _C.cuda_version()
    _major, _minor = (int(v) for v in torch.version.cuda.split(".")[:2])
    if _built // 1000 != _major:
        raise RuntimeError(
            f"refine_fast was built with CUDA {_built // 1000}.{_built % 1000 // 10} but torch uses "
            f"CUDA {torch.version.cuda}; reinstall refine_fast with pip install --no-build-isolation ."
        )

from . import ops, nn  # noqa: E402  (ops register fake kernels and autograd on import)
from . import datasets, metrics, models  # noqa: E402
from .explain import ReFine, ReFineAlgorithm, ReFineConfig  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ReFine", "ReFineAlgorithm", "ReFineConfig", "ops", "nn", "datasets", "models", "metrics", "__version__"]
