// CUDA kernel of segment_select. One thread per edge writes its selection key as an
// order-preserving uint64; then one block per segment keeps the k_s first edges of the
// order higher key first, ties to the lower index:
//   n_s <= kSmallSegment: keys in shared memory, each edge's rank counted directly;
//   larger segments: the k_s-th largest key found bit by bit (64 counting passes),
//   then the ties at it taken in index order with a block scan.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>

#include "ops/common/philox.h"
#include "ops/common/select.h"
#include "ops/segment_select.h"

namespace refine_fast {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kSmallSegment = 2048;

using ordered_t = unsigned long long;

// Order-preserving map of a double (not NaN) to an unsigned integer; -0 is mapped like +0.
__device__ inline ordered_t ordered_key(double d) {
  const long long bits = __double_as_longlong(d == 0.0 ? 0.0 : d);
  return bits < 0 ? ~static_cast<ordered_t>(bits) : static_cast<ordered_t>(bits) | (1ull << 63);
}

template <typename scalar_t>
__global__ void select_keys_kernel(const scalar_t* __restrict__ scores, const int64_t* __restrict__ key,
                                   int64_t seed, int64_t step, bool stochastic, int64_t n,
                                   ordered_t* __restrict__ keys) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double score = static_cast<double>(scores[e]);
    keys[e] = ordered_key(stochastic ? gumbel_select_key(score, philox_uniform_double(
                                                                   philox_draw(seed, key[e], step, kSelectStream)))
                                     : score);
  }
}

__global__ void select_segments_kernel(const ordered_t* __restrict__ all_keys, const int64_t* __restrict__ ptr,
                                       const double* __restrict__ ratio, bool per_segment_ratio,
                                       bool* __restrict__ all_mask) {
  using Reduce = cub::BlockReduce<long long, kThreads>;
  using Scan = cub::BlockScan<long long, kThreads>;
  __shared__ ordered_t cache[kSmallSegment];
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } storage;
  __shared__ ordered_t threshold;
  __shared__ long long greater;

  const int64_t s = blockIdx.x;
  const int64_t begin = ptr[s], n = ptr[s + 1] - begin;
  const int64_t k = select_count(ratio[per_segment_ratio ? s : 0], n);
  const ordered_t* keys = all_keys + begin;
  bool* mask = all_mask + begin;
  const int tid = threadIdx.x;

  if (k == n) {
    for (int64_t i = tid; i < n; i += kThreads) mask[i] = true;
    return;
  }
  if (n <= kSmallSegment) {
    for (int64_t i = tid; i < n; i += kThreads) cache[i] = keys[i];
    __syncthreads();
    for (int64_t i = tid; i < n; i += kThreads) {
      const ordered_t key_i = cache[i];
      int64_t rank = 0;
      for (int64_t j = 0; j < n; ++j) rank += cache[j] > key_i || (cache[j] == key_i && j < i);
      mask[i] = rank < k;
    }
    return;
  }

  // Largest t with #{key >= t} >= k, i.e. the k-th largest key.
  ordered_t t = 0;
  for (int bit = 63; bit >= 0; --bit) {
    const ordered_t candidate = t | (1ull << bit);
    long long count = 0;
    for (int64_t i = tid; i < n; i += kThreads) count += keys[i] >= candidate;
    const long long total = Reduce(storage.reduce).Sum(count);
    if (tid == 0) threshold = total >= k ? candidate : t;
    __syncthreads();
    t = threshold;
    __syncthreads();
  }
  long long count = 0;
  for (int64_t i = tid; i < n; i += kThreads) count += keys[i] > t;
  const long long total = Reduce(storage.reduce).Sum(count);
  if (tid == 0) greater = total;
  __syncthreads();
  const long long ties_needed = k - greater;

  long long ties_before = 0;
  for (int64_t base = 0; base < n; base += kThreads) {
    const int64_t i = base + tid;
    const ordered_t key_i = i < n ? keys[i] : 0;
    const long long tie = i < n && key_i == t;
    long long prefix, chunk_ties;
    Scan(storage.scan).ExclusiveSum(tie, prefix, chunk_ties);
    if (i < n) mask[i] = key_i > t || (tie && ties_before + prefix < ties_needed);
    ties_before += chunk_ties;
    __syncthreads();
  }
}

at::Tensor segment_select_cuda(const at::Tensor& scores, const at::Tensor& ptr, const at::Tensor& ratio,
                               const c10::optional<at::Tensor>& key, int64_t seed, int64_t step, bool stochastic) {
  check_segment_select(scores, ptr, ratio, key, step, stochastic, "CUDA");
  const c10::cuda::OptionalCUDAGuard guard(scores.device());
  const auto scores_c = scores.contiguous();
  const auto ptr_c = ptr.contiguous();
  const auto ratio_c = ratio.to(at::kDouble).contiguous();
  const auto key_c = stochastic ? key->contiguous() : at::Tensor();
  auto mask = at::zeros({scores.numel()}, scores.options().dtype(at::kBool));
  const int64_t num_edges = scores.numel(), num_segments = ptr.numel() - 1;
  if (num_edges == 0) return mask;

  const auto stream = at::cuda::getCurrentCUDAStream();
  auto keys = at::empty({num_edges}, scores.options().dtype(at::kLong));
  auto* keys_ptr = reinterpret_cast<ordered_t*>(keys.data_ptr<int64_t>());
  const int64_t max_blocks = at::cuda::getCurrentDeviceProperties()->multiProcessorCount * 32;
  const int blocks = static_cast<int>(std::min<int64_t>((num_edges + kThreads - 1) / kThreads, max_blocks));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "segment_select_cuda", [&] {
    select_keys_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        scores_c.data_ptr<scalar_t>(), stochastic ? key_c.data_ptr<int64_t>() : nullptr, seed, step, stochastic,
        num_edges, keys_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  select_segments_kernel<<<static_cast<unsigned int>(num_segments), kThreads, 0, stream>>>(
      keys_ptr, ptr_c.data_ptr<int64_t>(), ratio_c.data_ptr<double>(), ratio_c.dim() == 1, mask.data_ptr<bool>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return mask;
}

}  // namespace

}  // namespace refine_fast

TORCH_LIBRARY_IMPL(refine_fast, CUDA, m) { m.impl("segment_select", &refine_fast::segment_select_cuda); }
