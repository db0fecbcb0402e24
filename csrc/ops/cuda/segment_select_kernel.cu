// CUDA kernels of segment_select. One thread per edge writes its selection key as an
// order-preserving uint64 (asserting the score is valid); then each segment keeps the k_s first
// edges of the order higher key first, ties to the lower index (the CPU kernel's order):
//   n_s <= kSmallSegment:  one block, keys in shared memory, each edge's rank counted directly;
//   n_s <= kBlockSegment:  one block, the k_s-th largest key t found by a radix select (8 passes of
//                          8-bit digits, histograms in shared memory), then the keys > t and the
//                          first ties at t in index order (a block scan);
//   larger segments:       the same radix select split across blocks of kTile edges: each pass adds
//                          the blocks' digit histograms into one per segment (integer atomics, so
//                          the counts and the selection are exact and deterministic); every block
//                          replays the digit choices of the previous passes from those histograms.
//                          The ties at t are ranked by the tie counts of the segment's earlier tiles
//                          plus a block scan.
// No host synchronization: the launches are sized from E and S alone; ptr and the scores are
// checked by device-side asserts.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <limits>

#include "ops/common/philox.h"
#include "ops/common/select.h"
#include "ops/segment_select.h"

namespace refine_fast {

namespace {

constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
constexpr int64_t kSmallSegment = 2048;
constexpr int64_t kBlockSegment = 32768;
constexpr int64_t kTile = 4096;  // edges per block of a segment split across blocks
constexpr int kDigitBits = 8;
constexpr int kBins = 1 << kDigitBits;
constexpr int kPasses = 64 / kDigitBits;
static_assert(kThreads == kBins, "one histogram bin per thread");

using ordered_t = unsigned long long;
using count_t = unsigned long long;
using Reduce = cub::BlockReduce<long long, kThreads>;
using Scan = cub::BlockScan<long long, kThreads>;

// Order-preserving map of a double (not NaN) to an unsigned integer; -0 is mapped like +0.
__device__ inline ordered_t ordered_key(double d) {
  const long long bits = __double_as_longlong(d == 0.0 ? 0.0 : d);
  return bits < 0 ? ~static_cast<ordered_t>(bits) : static_cast<ordered_t>(bits) | (1ull << 63);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    select_keys_kernel(const scalar_t* __restrict__ scores, const int64_t* __restrict__ key, int64_t seed,
                       int64_t step, bool stochastic, int64_t n, ordered_t* __restrict__ keys) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double score = static_cast<double>(scores[e]);
    CUDA_KERNEL_ASSERT_MSG(score == score, "segment_select (CUDA): scores must not contain NaN");
    CUDA_KERNEL_ASSERT_MSG(!stochastic || score >= 0,
                           "segment_select (CUDA): scores must be probabilities >= 0 when stochastic=True");
    keys[e] = ordered_key(stochastic ? gumbel_select_key(score, philox_uniform_double(
                                                                   philox_draw(seed, key[e], step, kSelectStream)))
                                     : score);
  }
}

// Bits of a key above the digit of `pass` (none for pass 0).
__device__ __forceinline__ ordered_t high_mask(int pass) {
  return pass == 0 ? 0ull : ~0ull << (64 - kDigitBits * pass);
}

__device__ __forceinline__ int digit_of(ordered_t key, int pass) {
  return static_cast<int>((key >> (64 - kDigitBits * (pass + 1))) & (kBins - 1));
}

// One radix pass of the selection, by one full warp: hist[d] counts the candidate keys (those
// matching the digits chosen so far) by their digit d of this pass; k_rem is the rank of the
// sought key among the candidates. Returns the digit holding it and the number of candidates
// with a larger digit.
template <typename Count>
__device__ void select_digit(const Count* hist, long long k_rem, int& digit, long long& above) {
  const int lane = threadIdx.x % kWarpSize;
  constexpr int kPerLane = kBins / kWarpSize;  // lane l owns digits 255 - 8l - j, j = 0..7
  long long own[kPerLane];
  long long sum = 0;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    own[j] = static_cast<long long>(hist[kBins - 1 - kPerLane * lane - j]);
    sum += own[j];
  }
  long long inclusive = sum;  // candidates in the digits of lanes 0..lane (the larger digits)
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const long long v = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += v;
  }
  const long long exclusive = inclusive - sum;
  const unsigned owners = __ballot_sync(0xffffffffu, exclusive < k_rem && k_rem <= inclusive);
  CUDA_KERNEL_ASSERT(owners != 0);
  const int owner = __ffs(static_cast<int>(owners)) - 1;
  int d = 0;
  long long a = 0;
  if (lane == owner) {
    long long cumulative = exclusive;
    for (int j = 0; j < kPerLane; ++j) {
      if (cumulative + own[j] >= k_rem) {
        d = kBins - 1 - kPerLane * lane - j;
        a = cumulative;
        break;
      }
      cumulative += own[j];
    }
  }
  digit = __shfl_sync(0xffffffffu, d, owner);
  above = __shfl_sync(0xffffffffu, a, owner);
}

// The state of a radix selection: the digits chosen so far and the rank sought among the keys
// that share them. After all passes, prefix is the k-th largest key t and k_rem the number of
// ties at t to take.
struct RadixState {
  ordered_t prefix;
  long long k_rem;
};

// Block-wide: marks keys[i] > t and the first ties_needed keys == t (in index order) of keys[0, n).
__device__ void mark_selected(const ordered_t* keys, int64_t n, ordered_t t, long long ties_before,
                              long long ties_needed, bool* mask, typename Scan::TempStorage& scan) {
  for (int64_t base = 0; base < n; base += kThreads) {
    const int64_t i = base + threadIdx.x;
    const ordered_t key_i = i < n ? keys[i] : 0;
    const long long tie = i < n && key_i == t;
    long long prefix, chunk_ties;
    Scan(scan).ExclusiveSum(tie, prefix, chunk_ties);
    if (i < n) mask[i] = key_i > t || (tie && ties_before + prefix < ties_needed);
    ties_before += chunk_ties;
    __syncthreads();
  }
}

// Segments of at most kBlockSegment edges, one block each (larger ones are left to the split kernels).
__global__ void __launch_bounds__(kThreads)
    select_segments_kernel(const ordered_t* __restrict__ all_keys, const int64_t* __restrict__ ptr,
                           int64_t num_segments, int64_t num_edges, double ratio, bool* __restrict__ all_mask) {
  __shared__ ordered_t cache[kSmallSegment];
  __shared__ unsigned int hist[kBins];
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } storage;
  __shared__ RadixState state;

  const int64_t s = blockIdx.x;
  const int tid = threadIdx.x;
  if (s == 0) {
    CUDA_KERNEL_ASSERT_MSG(ptr[0] == 0, "segment_select (CUDA): ptr[0] must be 0");
  }
  if (s == num_segments - 1) {
    CUDA_KERNEL_ASSERT_MSG(ptr[num_segments] == num_edges, "segment_select (CUDA): ptr[-1] must equal E");
  }
  const int64_t begin = ptr[s], end = ptr[s + 1];
  CUDA_KERNEL_ASSERT_MSG(begin <= end, "segment_select (CUDA): ptr must be non-decreasing");
  CUDA_KERNEL_ASSERT_MSG(begin >= 0 && end <= num_edges, "segment_select (CUDA): ptr must lie in [0, E]");
  const int64_t n = end - begin;
  if (n > kBlockSegment) return;
  const int64_t k = select_count(ratio, n);
  const ordered_t* keys = all_keys + begin;
  bool* mask = all_mask + begin;

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

  if (tid == 0) state = {0ull, k};
  for (int pass = 0; pass < kPasses; ++pass) {
    hist[tid] = 0;  // kThreads == kBins
    __syncthreads();
    const ordered_t high = high_mask(pass), prefix = state.prefix;
    for (int64_t i = tid; i < n; i += kThreads) {
      const ordered_t key = keys[i];
      if ((key & high) == prefix) atomicAdd(&hist[digit_of(key, pass)], 1u);
    }
    __syncthreads();
    if (tid < kWarpSize) {
      int digit;
      long long above;
      select_digit(hist, state.k_rem, digit, above);
      if (tid == 0) {
        state.prefix |= static_cast<ordered_t>(digit) << (64 - kDigitBits * (pass + 1));
        state.k_rem -= above;
      }
    }
    __syncthreads();
  }
  mark_selected(keys, n, state.prefix, 0, state.k_rem, mask, storage.scan);
}

// Segments of more than kBlockSegment edges, cut into tiles of kTile edges (device pointers).
struct Split {
  const int64_t* ptr;       // [S + 1] the op's ptr
  const int64_t* tile_ptr;  // [S + 1] tile ranges (none for the other segments)
  const int64_t* slot;      // [S] index of a split segment among the split segments
  int64_t S, max_slots;
  double ratio;
};

// The split segment and its tile handled by this block, or false when the block has no tile.
struct TileOf {
  int64_t s, slot, begin, end;  // tile edges [begin, end)
  int64_t seg_begin, n, k;      // segment edges [seg_begin, seg_begin + n), k of them selected
};

__device__ bool tile_of(const Split& split, int64_t b, TileOf& tile) {
  if (b >= split.tile_ptr[split.S]) return false;
  int64_t lo = 0, hi = split.S - 1;  // the last s with tile_ptr[s] <= b
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (split.tile_ptr[mid] <= b) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  tile.s = lo;
  tile.slot = split.slot[lo];
  tile.seg_begin = split.ptr[lo];
  tile.n = split.ptr[lo + 1] - tile.seg_begin;
  tile.k = select_count(split.ratio, tile.n);
  tile.begin = tile.seg_begin + (b - split.tile_ptr[lo]) * kTile;
  tile.end = std::min(tile.begin + kTile, tile.seg_begin + tile.n);
  return true;
}

// The radix state of a split segment after `passes` passes, replayed from the segment's histograms
// hist [kPasses, max_slots, kBins] by warp 0 into `state` (then the block synchronizes).
__device__ void replay(const count_t* hist, const Split& split, const TileOf& tile, int passes, RadixState& state) {
  if (threadIdx.x < kWarpSize) {
    RadixState current{0ull, tile.k};
    for (int pass = 0; pass < passes; ++pass) {
      int digit;
      long long above;
      select_digit(hist + (pass * split.max_slots + tile.slot) * kBins, current.k_rem, digit, above);
      current.prefix |= static_cast<ordered_t>(digit) << (64 - kDigitBits * (pass + 1));
      current.k_rem -= above;
    }
    if (threadIdx.x == 0) state = current;
  }
  __syncthreads();
}

// Pass `pass` of the split radix select: the tile's histogram of this pass's digit among the
// candidates, added into the segment's histogram.
__global__ void __launch_bounds__(kThreads)
    split_histogram_kernel(const ordered_t* __restrict__ keys, Split split, int pass, count_t* __restrict__ hist) {
  __shared__ unsigned int tile_hist[kBins];
  __shared__ RadixState state;
  TileOf tile;
  if (!tile_of(split, blockIdx.x, tile) || tile.k == tile.n) return;
  replay(hist, split, tile, pass, state);
  tile_hist[threadIdx.x] = 0;  // kThreads == kBins
  __syncthreads();
  const ordered_t high = high_mask(pass);
  for (int64_t i = tile.begin + threadIdx.x; i < tile.end; i += kThreads) {
    const ordered_t key = keys[i];
    if ((key & high) == state.prefix) atomicAdd(&tile_hist[digit_of(key, pass)], 1u);
  }
  __syncthreads();
  const unsigned int count = tile_hist[threadIdx.x];
  if (count > 0) atomicAdd(hist + (pass * split.max_slots + tile.slot) * kBins + threadIdx.x, count_t(count));
}

// After the passes: marks the tile's keys above the threshold t (all keys when k = n), counts its
// ties at t into tile_ties and, from the segment's first tile, stores t and the ties to take.
__global__ void __launch_bounds__(kThreads)
    split_threshold_kernel(const ordered_t* __restrict__ keys, Split split, const count_t* __restrict__ hist,
                           long long* __restrict__ tile_ties, ordered_t* __restrict__ threshold,
                           long long* __restrict__ ties_needed, bool* __restrict__ mask) {
  __shared__ typename Reduce::TempStorage reduce;
  __shared__ RadixState state;
  TileOf tile;
  if (!tile_of(split, blockIdx.x, tile)) return;
  if (tile.k == tile.n) {
    for (int64_t i = tile.begin + threadIdx.x; i < tile.end; i += kThreads) mask[i] = true;
    return;
  }
  replay(hist, split, tile, kPasses, state);
  long long ties = 0;
  for (int64_t i = tile.begin + threadIdx.x; i < tile.end; i += kThreads) {
    mask[i] = keys[i] > state.prefix;
    ties += keys[i] == state.prefix;
  }
  const long long total = Reduce(reduce).Sum(ties);
  if (threadIdx.x == 0) {
    tile_ties[blockIdx.x] = total;
    if (tile.begin == tile.seg_begin) {
      threshold[tile.slot] = state.prefix;
      ties_needed[tile.slot] = state.k_rem;
    }
  }
}

// Marks the ties at t to take: those among the first ties_needed of the segment in index order.
__global__ void __launch_bounds__(kThreads)
    split_ties_kernel(const ordered_t* __restrict__ keys, Split split, const long long* __restrict__ tile_ties,
                      const ordered_t* __restrict__ threshold, const long long* __restrict__ ties_needed,
                      bool* __restrict__ mask) {
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } storage;
  __shared__ long long earlier;
  TileOf tile;
  if (!tile_of(split, blockIdx.x, tile) || tile.k == tile.n) return;
  long long ties = 0;  // ties in the segment's earlier tiles
  for (int64_t b = split.tile_ptr[tile.s] + threadIdx.x; b < blockIdx.x; b += kThreads) ties += tile_ties[b];
  const long long total = Reduce(storage.reduce).Sum(ties);
  if (threadIdx.x == 0) earlier = total;
  __syncthreads();
  const ordered_t t = threshold[tile.slot];
  const long long needed = ties_needed[tile.slot];
  if (earlier >= needed) return;  // block-uniform
  for (int64_t base = tile.begin; base < tile.end; base += kThreads) {
    const int64_t i = base + threadIdx.x;
    const long long tie = i < tile.end && keys[i] == t;
    long long prefix, chunk_ties;
    Scan(storage.scan).ExclusiveSum(tie, prefix, chunk_ties);
    if (tie && earlier + prefix < needed) mask[i] = true;
    __syncthreads();
    if (threadIdx.x == 0) earlier += chunk_ties;
    __syncthreads();
  }
}

int max_blocks() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount * 32; }

// The selection of the segments above kBlockSegment edges, split across blocks.
void select_split_segments(const ordered_t* keys, const at::Tensor& ptr, double ratio, int64_t num_edges,
                           bool* mask, cudaStream_t stream) {
  const int64_t num_segments = ptr.numel() - 1;
  const auto n = ptr.diff();
  const auto split_segment = n > kBlockSegment;
  const auto tiles = at::where(split_segment, at::div(n + (kTile - 1), kTile, "floor"), 0);
  const auto tile_ptr = at::cat({at::zeros({1}, ptr.options()), tiles.cumsum(0)});
  const auto split_long = split_segment.to(at::kLong);
  const auto slot = split_long.cumsum(0) - split_long;
  // Fewer than E / kBlockSegment split segments, each with at most n_s / kTile + 1 tiles.
  const int64_t max_slots = std::min(num_segments, num_edges / (kBlockSegment + 1));
  const int64_t max_tiles = (num_edges + kTile - 1) / kTile + max_slots;
  TORCH_CHECK(max_tiles <= std::numeric_limits<int>::max(), "segment_select (CUDA): too many edges, got ",
              num_edges);
  const auto options = ptr.options();
  auto hist = at::zeros({kPasses, max_slots, kBins}, options);
  auto tile_ties = at::empty({max_tiles}, options);
  auto threshold = at::empty({max_slots}, options);
  auto ties_needed = at::empty({max_slots}, options);
  const Split split{ptr.const_data_ptr<int64_t>(), tile_ptr.const_data_ptr<int64_t>(),
                    slot.const_data_ptr<int64_t>(), num_segments, max_slots, ratio};
  auto* hist_ptr = reinterpret_cast<count_t*>(hist.mutable_data_ptr<int64_t>());
  const auto grid = static_cast<unsigned int>(max_tiles);
  for (int pass = 0; pass < kPasses; ++pass) {
    split_histogram_kernel<<<grid, kThreads, 0, stream>>>(keys, split, pass, hist_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  auto* threshold_ptr = reinterpret_cast<ordered_t*>(threshold.mutable_data_ptr<int64_t>());
  split_threshold_kernel<<<grid, kThreads, 0, stream>>>(
      keys, split, hist_ptr, reinterpret_cast<long long*>(tile_ties.mutable_data_ptr<int64_t>()), threshold_ptr,
      reinterpret_cast<long long*>(ties_needed.mutable_data_ptr<int64_t>()), mask);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  split_ties_kernel<<<grid, kThreads, 0, stream>>>(
      keys, split, reinterpret_cast<const long long*>(tile_ties.const_data_ptr<int64_t>()), threshold_ptr,
      reinterpret_cast<const long long*>(ties_needed.const_data_ptr<int64_t>()), mask);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor segment_select_cuda(const at::Tensor& scores, const at::Tensor& ptr, double ratio,
                               const std::optional<at::Tensor>& key, int64_t seed, int64_t step, bool stochastic) {
  check_segment_select(scores, ptr, ratio, key, step, stochastic, "CUDA");
  const int64_t num_edges = scores.numel(), num_segments = ptr.numel() - 1;
  TORCH_CHECK(num_segments <= std::numeric_limits<int>::max(), "segment_select (CUDA): at most 2^31 - 1 segments, got ",
              num_segments);
  const c10::cuda::OptionalCUDAGuard guard(scores.device());
  auto mask = at::zeros({num_edges}, scores.options().dtype(at::kBool));
  if (num_edges == 0) return mask;
  const auto scores_c = scores.contiguous();
  const auto ptr_c = ptr.contiguous();
  const auto key_c = stochastic ? key->contiguous() : at::Tensor();

  const auto stream = at::cuda::getCurrentCUDAStream();
  auto keys = at::empty({num_edges}, scores.options().dtype(at::kLong));
  auto* keys_ptr = reinterpret_cast<ordered_t*>(keys.mutable_data_ptr<int64_t>());
  const int blocks = static_cast<int>(std::min<int64_t>((num_edges + kThreads - 1) / kThreads, max_blocks()));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, scores.scalar_type(), "segment_select_cuda", [&] {
    select_keys_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        scores_c.const_data_ptr<scalar_t>(), stochastic ? key_c.const_data_ptr<int64_t>() : nullptr, seed, step,
        stochastic, num_edges, keys_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  bool* mask_ptr = mask.mutable_data_ptr<bool>();
  select_segments_kernel<<<static_cast<unsigned int>(num_segments), kThreads, 0, stream>>>(
      keys_ptr, ptr_c.const_data_ptr<int64_t>(), num_segments, num_edges, ratio, mask_ptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (num_edges > kBlockSegment) select_split_segments(keys_ptr, ptr_c, ratio, num_edges, mask_ptr, stream);
  return mask;
}

}  // namespace

}  // namespace refine_fast

TORCH_LIBRARY_IMPL(refine_fast, CUDA, m) { m.impl("segment_select", &refine_fast::segment_select_cuda); }
