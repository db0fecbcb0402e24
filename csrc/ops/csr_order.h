#pragma once

// The CSR order of an index: the fixed order in which the CUDA edge_score backward sums per node and
// per group (segmented sums instead of float atomics, so its results are the same bit for bit on
// every run).

#include <ATen/ATen.h>

#include <tuple>

namespace refine_fast {

// ptr [size + 1] and perm [E] such that index[perm[ptr[v]:ptr[v + 1]]] == v, the edges of each v in
// increasing order (a stable sort). Values outside [0, size) fall outside every range. Device
// agnostic (sort + searchsorted), no host synchronization.
std::tuple<at::Tensor, at::Tensor> csr_order(const at::Tensor& index, int64_t size);

}  // namespace refine_fast
