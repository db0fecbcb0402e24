// CUDA kernels of the fused edge-score MLP.
//
// Forward: one warp per edge, lanes over the H channels, warp-shuffle sum.
// Backward, deterministic (no float atomics, the same bits on every run): three segmented sums in
// CSR order (csr_order: the edges stably sorted by source node, by target node and by group):
//   grad p_src[n]             = sum over the edges of source node n of grad_e w_g (1 - t_e^2)
//                               (each term is also the edge's grad edge_term row)
//   grad p_dst[n]             = the same over the edges of target node n
//   [grad weight | bias][g]   = sum over the edges of group g of [grad_e t_e | grad_e]
// Each segment is cut into pieces of kPiece edges, one warp per piece, lanes over the channels,
// tanh recomputed. A segment of one piece writes its row directly; a longer one (a hub node, a
// large group) writes partial rows that a second kernel adds in piece order. The cut depends only
// on the segment sizes, so the order of every sum is fixed.
// Index values are checked by device-side asserts where they are read (no host synchronization).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/common/edge_score.h"
#include "ops/csr_order.h"
#include "ops/edge_score.h"

namespace refine_fast {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpSize * kWarpsPerBlock;
constexpr int64_t kPiece = 256;   // edges per piece of a segmented sum
constexpr int kReduceWarps = 32;  // warps adding the partial rows of one segment
constexpr int kReduceThreads = kReduceWarps * kWarpSize;

enum class Side { kSrc, kDst, kGroup };

template <typename opmath_t, typename scalar_t>
__device__ __forceinline__ opmath_t pre_activation(const EdgeScoreInputs<scalar_t>& in, int64_t e, int64_t s, int64_t d,
                                                   int64_t k) {
  opmath_t x = static_cast<opmath_t>(in.p_src[s * in.src_stride + k]) +
               static_cast<opmath_t>(in.p_dst[d * in.dst_stride + k]);
  if (in.edge_term != nullptr) x += static_cast<opmath_t>(in.edge_term[e * in.term_stride + k]);
  return x;
}

// Edge e's source, target and group, asserted in range.
template <bool kBackward, typename scalar_t>
__device__ __forceinline__ void edge_indices(const EdgeScoreInputs<scalar_t>& in, int64_t e, int64_t& s, int64_t& d,
                                             int64_t& g) {
  s = in.src[e];
  d = in.dst[e];
  g = in.group != nullptr ? in.group[e] : 0;
  CUDA_KERNEL_ASSERT_MSG(s >= 0 && s < in.n_src, kBackward
                                                     ? "edge_score_backward (CUDA): edge_index[0] (source nodes) "
                                                       "must be in [0, N_src)"
                                                     : "edge_score (CUDA): edge_index[0] (source nodes) must be in "
                                                       "[0, N_src)");
  CUDA_KERNEL_ASSERT_MSG(d >= 0 && d < in.n_dst, kBackward
                                                     ? "edge_score_backward (CUDA): edge_index[1] (target nodes) "
                                                       "must be in [0, N_dst)"
                                                     : "edge_score (CUDA): edge_index[1] (target nodes) must be in "
                                                       "[0, N_dst)");
  CUDA_KERNEL_ASSERT_MSG(g >= 0 && g < in.G, kBackward ? "edge_score_backward (CUDA): group must be in [0, G)"
                                                       : "edge_score (CUDA): group must be in [0, G)");
}

int64_t num_blocks(int64_t work_items, int64_t items_per_block, int64_t blocks_per_sm) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::max<int64_t>(1, std::min((work_items + items_per_block - 1) / items_per_block, sms * blocks_per_sm));
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    edge_score_forward_kernel(EdgeScoreInputs<scalar_t> in, const scalar_t* __restrict__ bias,
                              scalar_t* __restrict__ out, int64_t E) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize; e < E;
       e += stride) {
    int64_t s, d, g;
    edge_indices<false>(in, e, s, d, g);
    const scalar_t* w = in.weight + g * in.H;
    opmath_t acc = 0;
    for (int64_t k = lane; k < in.H; k += kWarpSize) {
      acc += static_cast<opmath_t>(w[k]) * edge_score_activation(pre_activation<opmath_t>(in, e, s, d, k));
    }
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
    if (lane == 0) out[e] = static_cast<scalar_t>(acc + static_cast<opmath_t>(bias[g]));
  }
}

// One side's CSR cut into pieces (device pointers).
struct Pieces {
  const int64_t* seg_ptr;      // [S + 1] edge ranges in CSR order
  const int64_t* perm;         // [E] edge at each CSR position; nullptr: the identity
  const int64_t* piece_ptr;    // [S + 1] piece ranges: max(1, ceil(n_s / kPiece)) pieces per segment
  const int64_t* partial_row;  // [S] first partial row of a segment of more than one piece
  const int64_t* multi_rank;   // [S] segments of more than one piece among 0..s (inclusive)
  int64_t S;
};

// The tensors behind Pieces, with host-side bounds for the launches and buffers.
struct PiecesTensors {
  at::Tensor seg_ptr, perm, piece_ptr, partial_row, multi_rank;
  int64_t max_pieces;       // >= piece_ptr[S]
  int64_t max_multi;        // >= segments of more than one piece
  int64_t max_partial_rows; // >= partial rows

  Pieces view() const {
    return {seg_ptr.const_data_ptr<int64_t>(),
            perm.defined() ? perm.const_data_ptr<int64_t>() : nullptr,
            piece_ptr.const_data_ptr<int64_t>(),
            partial_row.const_data_ptr<int64_t>(),
            multi_rank.const_data_ptr<int64_t>(),
            seg_ptr.numel() - 1};
  }
};

// Cuts the segments seg_ptr [S + 1] (over E edges) into pieces: ATen ops on the device, no sync.
PiecesTensors make_pieces(const at::Tensor& seg_ptr, const at::Tensor& perm, int64_t E) {
  const int64_t S = seg_ptr.numel() - 1;
  const auto n = seg_ptr.diff();
  const auto pieces = at::clamp_min(at::div(n + (kPiece - 1), kPiece, "floor"), 1);
  const auto is_multi = pieces > 1;
  const auto multi_pieces = at::where(is_multi, pieces, 0);
  const int64_t full = (E + kPiece - 1) / kPiece;
  // A segment of more than one piece has more than kPiece edges: fewer than E / kPiece of them,
  // each with at most n_s / kPiece + 1 pieces.
  return {seg_ptr,
          perm,
          at::cat({at::zeros({1}, seg_ptr.options()), pieces.cumsum(0)}),
          multi_pieces.cumsum(0) - multi_pieces,
          is_multi.to(at::kLong).cumsum(0),
          full + S,
          full,
          2 * full};
}

// Segment of piece p: the last s with piece_ptr[s] <= p (piece_ptr is strictly increasing).
__device__ __forceinline__ int64_t segment_of_piece(const Pieces& pieces, int64_t p) {
  int64_t lo = 0, hi = pieces.S - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (pieces.piece_ptr[mid] <= p) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Term of edge e in channel k of one side's sum (channel H of kGroup: the bias gradient grad_e).
template <Side kSide, typename scalar_t>
__device__ __forceinline__ at::opmath_type<scalar_t> edge_term_of(const EdgeScoreInputs<scalar_t>& in,
                                                                  const scalar_t* grad, int64_t e, int64_t k,
                                                                  scalar_t* grad_term) {
  using opmath_t = at::opmath_type<scalar_t>;
  int64_t s, d, g;
  edge_indices<true>(in, e, s, d, g);
  const opmath_t go = static_cast<opmath_t>(grad[e]);
  if constexpr (kSide == Side::kGroup) {
    if (k == in.H) return go;
  }
  const opmath_t t = edge_score_activation(pre_activation<opmath_t>(in, e, s, d, k));
  if constexpr (kSide == Side::kGroup) {
    return go * t;
  } else {
    const opmath_t gp = go * static_cast<opmath_t>(in.weight[g * in.H + k]) * edge_score_activation_grad(t);
    if constexpr (kSide == Side::kSrc) {
      if (grad_term != nullptr) grad_term[e * in.H + k] = static_cast<scalar_t>(gp);
    }
    return gp;
  }
}

// One warp per piece: the sum of its edges' terms in CSR order, for channels [0, C). Written to the
// segment's row of out when the segment has one piece, else to the piece's partial row.
template <Side kSide, typename scalar_t, typename out_t>
__global__ void __launch_bounds__(kThreads)
    piece_sum_kernel(EdgeScoreInputs<scalar_t> in, const scalar_t* __restrict__ grad, Pieces pieces, int64_t E,
                     int64_t C, scalar_t* __restrict__ grad_term, out_t* __restrict__ out,
                     at::opmath_type<scalar_t>* __restrict__ partial) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (warp == 0) {  // every index value lies in [0, S): the CSR covers all E edges
    CUDA_KERNEL_ASSERT_MSG(pieces.seg_ptr[0] == 0 && pieces.seg_ptr[pieces.S] == E,
                           "edge_score_backward (CUDA): an index of edge_index or group is out of range");
  }
  const int64_t total = pieces.piece_ptr[pieces.S];
  for (int64_t p = warp; p < total; p += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const int64_t s = segment_of_piece(pieces, p);
    const int64_t first = pieces.piece_ptr[s], count = pieces.piece_ptr[s + 1] - first;
    const int64_t begin = pieces.seg_ptr[s] + (p - first) * kPiece;
    const int64_t end = std::min(begin + kPiece, pieces.seg_ptr[s + 1]);
    for (int64_t k = lane; k < C; k += kWarpSize) {
      opmath_t acc = 0;
      for (int64_t j = begin; j < end; ++j) {
        const int64_t e = pieces.perm != nullptr ? pieces.perm[j] : j;
        acc += edge_term_of<kSide>(in, grad, e, k, grad_term);
      }
      if (count == 1) {
        out[s * C + k] = static_cast<out_t>(acc);
      } else {
        partial[(pieces.partial_row[s] + p - first) * C + k] = acc;
      }
    }
  }
}

// out[s, k] = the sum of the partial rows of segment s, in piece order, for the segments of more
// than one piece. One block per (segment, tile of 32 channels): each warp adds a fixed range of
// pieces, then the warps' sums are added in warp order.
template <typename out_t, typename opmath_t>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_pieces_kernel(Pieces pieces, int64_t max_multi, int64_t C, const opmath_t* __restrict__ partial,
                         out_t* __restrict__ out) {
  __shared__ opmath_t sums[kReduceWarps][kWarpSize];
  const int lane = threadIdx.x % kWarpSize, w = threadIdx.x / kWarpSize;
  const int64_t tiles = (C + kWarpSize - 1) / kWarpSize;
  const int64_t multi = pieces.S > 0 ? pieces.multi_rank[pieces.S - 1] : 0;
  for (int64_t task = blockIdx.x; task < std::min(multi, max_multi) * tiles; task += gridDim.x) {
    const int64_t m = task / tiles, k = (task % tiles) * kWarpSize + lane;
    int64_t lo = 0, hi = pieces.S - 1;  // segment s: the first with multi_rank[s] > m
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (pieces.multi_rank[mid] > m) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    const int64_t s = lo;
    const int64_t count = pieces.piece_ptr[s + 1] - pieces.piece_ptr[s];
    const opmath_t* rows = partial + pieces.partial_row[s] * C;
    opmath_t acc = 0;
    if (k < C) {
      for (int64_t i = count * w / kReduceWarps; i < count * (w + 1) / kReduceWarps; ++i) acc += rows[i * C + k];
    }
    sums[w][lane] = acc;
    __syncthreads();
    if (w == 0 && k < C) {
      opmath_t total = 0;
      for (int i = 0; i < kReduceWarps; ++i) total += sums[i][lane];
      out[s * C + k] = static_cast<out_t>(total);
    }
    __syncthreads();
  }
}

// Rows out [S, C] of one side's segmented sum.
template <Side kSide, typename scalar_t, typename out_t>
void segmented_sum(const EdgeScoreInputs<scalar_t>& in, const scalar_t* grad, const PiecesTensors& pieces, int64_t E,
                   int64_t C, scalar_t* grad_term, at::Tensor& out, const at::TensorOptions& opmath_options,
                   cudaStream_t stream) {
  using opmath_t = at::opmath_type<scalar_t>;
  auto partial = at::empty({pieces.max_partial_rows, C}, opmath_options);
  const auto view = pieces.view();
  piece_sum_kernel<kSide, scalar_t, out_t>
      <<<num_blocks(pieces.max_pieces, kWarpsPerBlock, 32), kThreads, 0, stream>>>(
          in, grad, view, E, C, grad_term, out.mutable_data_ptr<out_t>(), partial.mutable_data_ptr<opmath_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (pieces.max_multi == 0 || E <= kPiece) return;  // no segment can have two pieces
  const int64_t tiles = (C + kWarpSize - 1) / kWarpSize;
  reduce_pieces_kernel<out_t, opmath_t><<<num_blocks(pieces.max_multi * tiles, 1, 2), kReduceThreads, 0, stream>>>(
      view, pieces.max_multi, C, partial.const_data_ptr<opmath_t>(), out.mutable_data_ptr<out_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor edge_score_cuda(const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
                           const at::Tensor& weight, const at::Tensor& bias,
                           const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group) {
  check_edge_score(p_src, p_dst, edge_index, weight, bias, edge_term, group, "CUDA");
  const c10::cuda::OptionalCUDAGuard device_guard(p_src.device());
  const int64_t E = edge_index.size(1);
  auto out = at::empty({E}, p_src.options());
  if (E == 0) return out;
  const auto operands = prepare_edge_score(p_src, p_dst, edge_index, weight, edge_term, group);
  const auto b = bias.contiguous();
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p_src.scalar_type(), "edge_score_cuda", [&] {
    const auto in = operands.inputs<scalar_t>();
    edge_score_forward_kernel<scalar_t><<<num_blocks(E, kWarpsPerBlock, 32), kThreads, 0, stream>>>(
        in, b.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), E);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> edge_score_backward_cuda(
    const at::Tensor& grad, const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
    const at::Tensor& weight, const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group) {
  check_edge_score_backward(grad, p_src, p_dst, edge_index, weight, edge_term, group, "CUDA");
  const c10::cuda::OptionalCUDAGuard device_guard(p_src.device());
  const int64_t E = edge_index.size(1), N_src = p_src.size(0), N_dst = p_dst.size(0);
  const int64_t G = weight.size(0), H = weight.size(1);
  const auto dtype = p_src.scalar_type();
  auto grad_term = edge_term ? at::empty({E, H}, p_src.options()) : at::empty({0}, p_src.options());
  if (E == 0) {
    return {at::zeros({N_src, H}, p_src.options()), at::zeros({N_dst, H}, p_src.options()), grad_term,
            at::zeros_like(weight), at::zeros({G}, weight.options())};
  }
  const auto operands = prepare_edge_score(p_src, p_dst, edge_index, weight, edge_term, group);
  const auto go = grad.contiguous();
  const auto opmath_options = p_src.options().dtype(at::toOpMathType(dtype));
  const auto long_options = edge_index.options();

  const auto [src_ptr, src_perm] = csr_order(operands.edge_index[0], N_src);
  const auto [dst_ptr, dst_perm] = csr_order(operands.edge_index[1], N_dst);
  const auto by_src = make_pieces(src_ptr, src_perm, E);
  const auto by_dst = make_pieces(dst_ptr, dst_perm, E);
  const auto by_group = [&] {
    if (!operands.group.defined()) {  // every edge in group 0, in edge order
      return make_pieces(at::cat({at::zeros({1}, long_options), at::full({G}, E, long_options)}), at::Tensor(), E);
    }
    const auto [group_ptr, group_perm] = csr_order(operands.group, G);
    return make_pieces(group_ptr, group_perm, E);
  }();

  auto grad_src = at::empty({N_src, H}, p_src.options());
  auto grad_dst = at::empty({N_dst, H}, p_src.options());
  auto grad_weight_bias = at::empty({G, H + 1}, opmath_options);  // [grad weight | grad bias]
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "edge_score_backward_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto in = operands.inputs<scalar_t>();
    const scalar_t* g = go.const_data_ptr<scalar_t>();
    scalar_t* gt = edge_term ? grad_term.mutable_data_ptr<scalar_t>() : nullptr;
    segmented_sum<Side::kSrc, scalar_t, scalar_t>(in, g, by_src, E, H, gt, grad_src, opmath_options, stream);
    segmented_sum<Side::kDst, scalar_t, scalar_t>(in, g, by_dst, E, H, nullptr, grad_dst, opmath_options, stream);
    segmented_sum<Side::kGroup, scalar_t, opmath_t>(in, g, by_group, E, H + 1, nullptr, grad_weight_bias,
                                                    opmath_options, stream);
  });
  return {grad_src, grad_dst, grad_term, grad_weight_bias.narrow(1, 0, H).to(dtype).contiguous(),
          grad_weight_bias.select(1, H).to(dtype).contiguous()};
}

}  // namespace

}  // namespace refine_fast

TORCH_LIBRARY_IMPL(refine_fast, CUDA, m) {
  m.impl("edge_score", &refine_fast::edge_score_cuda);
  m.impl("edge_score_backward", &refine_fast::edge_score_backward_cuda);
}
