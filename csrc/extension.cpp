// The Python extension module refine_fast._C. Importing it loads this shared
// library, whose static initializers register the ops (TORCH_LIBRARY_FRAGMENT /
// TORCH_LIBRARY_IMPL in csrc/ops/) as torch.ops.refine_fast.*.
#include <torch/extension.h>

#ifdef WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

int64_t cuda_version() {
#ifdef WITH_CUDA
  return CUDART_VERSION;
#else
  return -1;
#endif
}

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool has_openmp() { return REFINE_FAST_OPENMP == 1; }

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "refine_fast C++/CUDA kernels; ops live in torch.ops.refine_fast";
  m.def("cuda_version", &cuda_version, "CUDA runtime version the extension was built with, -1 if CPU-only");
  m.def("has_cuda", &has_cuda, "Whether the CUDA kernels were compiled in");
  m.def("has_openmp", &has_openmp, "Whether the CPU kernels were compiled with OpenMP");
}
