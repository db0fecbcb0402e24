// Schema and implementation (ATen ops, any device) of csr_order; torch.ops.refine_fast.csr_order
// exposes it so that the tests check on the CPU the order the CUDA kernels rely on.
#include "ops/csr_order.h"

#include <torch/library.h>

namespace refine_fast {

std::tuple<at::Tensor, at::Tensor> csr_order(const at::Tensor& index, int64_t size) {
  TORCH_CHECK(index.scalar_type() == at::kLong && index.dim() == 1,
              "csr_order: index must be a 1-D int64 tensor, got ", index.scalar_type(), " of shape ", index.sizes());
  TORCH_CHECK(size >= 0, "csr_order: size must be >= 0, got ", size);
  auto [sorted, perm] = at::sort(index, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  auto ptr = at::searchsorted(sorted, at::arange(size + 1, index.options()));
  return {ptr, perm};
}

}  // namespace refine_fast

TORCH_LIBRARY_FRAGMENT(refine_fast, m) { m.def("csr_order(Tensor index, int size) -> (Tensor, Tensor)"); }

TORCH_LIBRARY_IMPL(refine_fast, CompositeImplicitAutograd, m) { m.impl("csr_order", &refine_fast::csr_order); }
