"""Build refine_fast and its C++/CUDA extension ``refine_fast._C``.

CPU kernels always; CUDA kernels when torch has CUDA and ``CUDA_HOME`` is set, or
``FORCE_CUDA=1``. ``FORCE_ONLY_CPU=1`` forces a CPU-only build. Build against the
torch already installed: ``pip install --no-build-isolation .``
"""
import glob
import os
import sys

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.getenv(name, "0") == "1"


def _with_cuda():
    if _flag("FORCE_ONLY_CPU"):
        return False
    if _flag("FORCE_CUDA"):
        return True
    return torch.version.cuda is not None and CUDA_HOME is not None


def _openmp_flags():
    info = torch.__config__.parallel_info()
    if "backend: OpenMP" not in info or sys.platform == "darwin":
        return [], []
    return ["-fopenmp"], ["-fopenmp"]


def extensions():
    with_cuda = _with_cuda()
    compile_omp, link_omp = _openmp_flags()
    sources = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    defines = [("REFINE_FAST_OPENMP", "1" if compile_omp else "0")]
    cxx = ["-O3"] + compile_omp  # torch picks the C++ standard it needs (C++20 from 2.14)
    extra = {"cxx": cxx}
    if with_cuda:
        sources += sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
        defines.append(("WITH_CUDA", None))
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    ext = CUDAExtension if with_cuda else CppExtension
    return [
        ext(
            "refine_fast._C",
            [os.path.relpath(s, ROOT) if os.path.isabs(s) else s for s in sources],
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=defines,
            extra_compile_args=extra,
            extra_link_args=link_omp,
        )
    ]


setup(
    packages=find_packages(include=["refine_fast", "refine_fast.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
