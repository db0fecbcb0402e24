// CPU kernels of the fused edge-score MLP.
//
// Forward: tasks of 2048 edges; per edge one vectorized pass over the H channels, with the
// randomly gathered p_src / p_dst rows of the edges 8 ahead prefetched.
// Each task first checks its edges' indices (a vectorized pass over data it is about to read); a
// task with an index out of range computes nothing, and the lowest such edge is reported once
// every task has finished.
// Backward, without atomics and without any [E, H] temporary: the edges are grouped by source
// and by target node (two stable counting sorts, O(E + N), run concurrently, which also lay out
// each edge's other node, group and incoming gradient in that order, after one pass checking the
// indices, so that a direct call with bad indices raises instead of writing out of bounds).
// Source-node tasks recompute tanh, accumulate grad p_src in a row buffer and write grad edge_term, plus the task's
// weight/bias partial sums (double for float); target-node tasks do the same for grad p_dst.
// Tasks are ranges of whole nodes balanced by edges + nodes; their number depends only on the
// sizes and partial sums are reduced in task order, so results do not depend on the thread count.
// Threads take tasks one at a time (a descheduled thread does not stall the others).
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "ops/common/edge_score.h"
#include "ops/cpu/first_index.h"
#include "ops/edge_score.h"

// Hot loops are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define REFINE_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define REFINE_CPU_CLONES
#endif

namespace refine_fast {

namespace {

constexpr int64_t kForwardChunk = 2048;        // edges per forward task
constexpr int64_t kEdgesPerChunk = 8192;       // backward chunk size target
constexpr int64_t kMaxChunks = 64;
constexpr int64_t kMaxPartials = INT64_C(1) << 22;  // bound on chunks * G * H weight partials
constexpr int64_t kPrefetchDistance = 8;       // edges: rows are gathered at random, hide the latency

// Requests the cache lines of a row of H values ahead of use.
template <typename scalar_t>
inline void prefetch_row(const scalar_t* row, int64_t H) {
#if defined(__GNUC__)
  const char* p = reinterpret_cast<const char*>(row);
  for (int64_t offset = 0; offset < H * static_cast<int64_t>(sizeof(scalar_t)); offset += 64) {
    __builtin_prefetch(p + offset);
  }
#endif
}

// Runs task(c) for c in [0, num_tasks) on the intra-op threads, handing tasks out one at a
// time: on a shared machine a descheduled thread does not hold up the others.
template <typename F>
void parallel_tasks(int64_t num_tasks, const F& task) {
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(num_tasks, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t c = next++; c < num_tasks; c = next++) task(c);
  });
}

template <typename opmath_t, bool kTerm, typename scalar_t>
inline opmath_t pre_activation(const scalar_t* xs, const scalar_t* xd, const scalar_t* xt, int64_t k) {
  const opmath_t x = static_cast<opmath_t>(xs[k]) + static_cast<opmath_t>(xd[k]);
  if constexpr (kTerm) {
    return x + static_cast<opmath_t>(xt[k]);
  } else {
    return x;
  }
}

// The first edge of [begin, end) whose endpoints or group are out of range, or end: a branch-free
// pass (unsigned compares also catch negative indices), then a scan only when it found one.
template <typename scalar_t>
REFINE_CPU_CLONES int64_t first_out_of_range(const EdgeScoreInputs<scalar_t>& in, int64_t begin, int64_t end) {
  const auto n_src = static_cast<uint64_t>(in.n_src), n_dst = static_cast<uint64_t>(in.n_dst);
  const auto G = static_cast<uint64_t>(in.G);
  const int64_t* group = in.group;
  const auto out_of_range = [&](int64_t e) -> int {
    return (static_cast<uint64_t>(in.src[e]) >= n_src) | (static_cast<uint64_t>(in.dst[e]) >= n_dst) |
           (group != nullptr && static_cast<uint64_t>(group[e]) >= G);
  };
  int any = 0;
#pragma omp simd reduction(| : any)
  for (int64_t e = begin; e < end; ++e) any |= out_of_range(e);
  int64_t e = begin;
  while (any && !out_of_range(e)) ++e;
  return any ? e : end;
}

template <typename scalar_t, bool kTerm>
REFINE_CPU_CLONES void forward_edges(const EdgeScoreInputs<scalar_t>& in, const scalar_t* bias, scalar_t* out,
                                     int64_t begin, int64_t end) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t H = in.H;
  for (int64_t e = begin; e < end; ++e) {
    if (e + kPrefetchDistance < end) {
      prefetch_row(in.p_src + in.src[e + kPrefetchDistance] * in.src_stride, H);
      prefetch_row(in.p_dst + in.dst[e + kPrefetchDistance] * in.dst_stride, H);
    }
    const scalar_t* xs = in.p_src + in.src[e] * in.src_stride;
    const scalar_t* xd = in.p_dst + in.dst[e] * in.dst_stride;
    const scalar_t* xt = kTerm ? in.edge_term + e * in.term_stride : nullptr;
    const int64_t g = in.group ? in.group[e] : 0;
    const scalar_t* w = in.weight + g * H;
    opmath_t acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t k = 0; k < H; ++k) {
      acc += static_cast<opmath_t>(w[k]) * edge_score_activation(pre_activation<opmath_t, kTerm>(xs, xd, xt, k));
    }
    out[e] = static_cast<scalar_t>(acc + static_cast<opmath_t>(bias[g]));
  }
}

// Edges grouped by the node at one side ("own"), in increasing edge order within a node:
// entries ptr[n]:ptr[n+1] belong to node n and hold, per edge, the node at the other end, its
// group, its incoming gradient and (for the edge_term rows) its id, so that the backward passes
// read them sequentially.
struct SideEdges {
  at::Tensor ptr;    // [N + 1] int64
  at::Tensor other;  // [E] int64
  at::Tensor group;  // [E] int64, undefined when every edge is in group 0
  at::Tensor grad;   // [E] opmath
  at::Tensor edge;   // [E] int64, undefined without edge_term
};

// Stable counting sort of the edges by own[e] (O(E + N), one thread; indices checked before).
template <typename scalar_t>
SideEdges sort_side(const EdgeScoreInputs<scalar_t>& in, bool first, const scalar_t* grad, int64_t E) {
  const int64_t* own = first ? in.src : in.dst;
  const int64_t* other = first ? in.dst : in.src;
  const int64_t* group = in.group;
  const bool with_edge = in.edge_term != nullptr;
  const int64_t N = first ? in.n_src : in.n_dst;
  using opmath_t = at::opmath_type<scalar_t>;
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  SideEdges out{at::zeros({N + 1}, long_opts), at::empty({E}, long_opts),
                group ? at::empty({E}, long_opts) : at::Tensor(),
                at::empty({E}, long_opts.dtype(c10::CppTypeToScalarType<opmath_t>::value)),
                with_edge ? at::empty({E}, long_opts) : at::Tensor()};
  int64_t* ptr = out.ptr.mutable_data_ptr<int64_t>();
  for (int64_t e = 0; e < E; ++e) ++ptr[own[e] + 1];
  for (int64_t n = 0; n < N; ++n) ptr[n + 1] += ptr[n];
  std::vector<int64_t> cursor(ptr, ptr + N);
  int64_t* oth = out.other.mutable_data_ptr<int64_t>();
  int64_t* grp = group ? out.group.mutable_data_ptr<int64_t>() : nullptr;
  opmath_t* gr = out.grad.mutable_data_ptr<opmath_t>();
  int64_t* edge = with_edge ? out.edge.mutable_data_ptr<int64_t>() : nullptr;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t j = cursor[own[e]]++;
    oth[j] = other[e];
    gr[j] = static_cast<opmath_t>(grad[e]);
    if (grp) grp[j] = group[e];
    if (edge) edge[j] = e;
  }
  return out;
}

// Nodes [node_begin, node_end) of one side (kFirst: the source side):
// grad_rows[n] = sum over the node's edges of grad_e * weight[g_e] * (1 - t_e^2). With kFirst also
// the grad edge_term rows and this chunk's weight/bias partial sums gw [G, H], gb [G], accumulated
// in acc_t (double for float: they sum over thousands of edges).
template <typename scalar_t, bool kTerm, bool kFirst>
REFINE_CPU_CLONES void backward_nodes(const EdgeScoreInputs<scalar_t>& in, const int64_t* ptr, const int64_t* edge,
                                      const int64_t* other, const int64_t* group,
                                      const at::opmath_type<scalar_t>* grad, int64_t node_begin, int64_t node_end,
                                      at::opmath_type<scalar_t>* row, scalar_t* grad_rows, scalar_t* grad_term,
                                      at::acc_type<scalar_t, false>* gw, at::acc_type<scalar_t, false>* gb) {
  using opmath_t = at::opmath_type<scalar_t>;
  using acc_t = at::acc_type<scalar_t, false>;
  const int64_t H = in.H;
  const scalar_t* own_base = kFirst ? in.p_src : in.p_dst;
  const int64_t own_stride = kFirst ? in.src_stride : in.dst_stride;
  const scalar_t* other_base = kFirst ? in.p_dst : in.p_src;
  const int64_t other_stride = kFirst ? in.dst_stride : in.src_stride;
  const int64_t last = ptr[node_end];
  for (int64_t n = node_begin; n < node_end; ++n) {
    std::fill(row, row + H, opmath_t(0));
    const scalar_t* xo = own_base + n * own_stride;
    for (int64_t j = ptr[n]; j < ptr[n + 1]; ++j) {
      if (j + kPrefetchDistance < last) {
        const int64_t ahead = j + kPrefetchDistance;
        prefetch_row(other_base + other[ahead] * other_stride, H);
        if constexpr (kTerm) prefetch_row(in.edge_term + edge[ahead] * in.term_stride, H);
        if constexpr (kTerm && kFirst) prefetch_row(grad_term + edge[ahead] * H, H);
      }
      const scalar_t* xp = other_base + other[j] * other_stride;
      const scalar_t* xt = kTerm ? in.edge_term + edge[j] * in.term_stride : nullptr;
      const int64_t g = group ? group[j] : 0;
      const scalar_t* w = in.weight + g * H;
      const opmath_t go = grad[j];
      if constexpr (kFirst) {
        acc_t* gwg = gw + g * H;
        scalar_t* gt = kTerm ? grad_term + edge[j] * H : nullptr;
        gb[g] += go;
#pragma omp simd
        for (int64_t k = 0; k < H; ++k) {
          const opmath_t t = edge_score_activation(pre_activation<opmath_t, kTerm>(xo, xp, xt, k));
          const opmath_t gp = go * static_cast<opmath_t>(w[k]) * edge_score_activation_grad(t);
          gwg[k] += static_cast<acc_t>(go * t);
          row[k] += gp;
          if constexpr (kTerm) gt[k] = static_cast<scalar_t>(gp);
        }
      } else {
#pragma omp simd
        for (int64_t k = 0; k < H; ++k) {
          const opmath_t t = edge_score_activation(pre_activation<opmath_t, kTerm>(xo, xp, xt, k));
          row[k] += go * static_cast<opmath_t>(w[k]) * edge_score_activation_grad(t);
        }
      }
    }
    scalar_t* out = grad_rows + n * H;
    for (int64_t k = 0; k < H; ++k) out[k] = static_cast<scalar_t>(row[k]);
  }
}

// Node boundaries [C + 1] splitting the nodes into C ranges of about equal edges + nodes.
std::vector<int64_t> chunk_bounds(const int64_t* ptr, int64_t N, int64_t num_chunks) {
  const int64_t total = ptr[N] + N;
  std::vector<int64_t> bounds(num_chunks + 1, N);
  bounds[0] = 0;
  for (int64_t c = 1; c < num_chunks; ++c) {
    const int64_t target = total * c / num_chunks;
    int64_t lo = bounds[c - 1], hi = N;  // first n with ptr[n] + n >= target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (ptr[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    bounds[c] = lo;
  }
  return bounds;
}

int64_t num_chunks(int64_t E, int64_t G, int64_t H) {
  int64_t chunks = std::clamp<int64_t>((E + kEdgesPerChunk - 1) / kEdgesPerChunk, 1, kMaxChunks);
  const int64_t per_chunk = std::max<int64_t>(G * H, 1);
  return std::max<int64_t>(1, std::min(chunks, kMaxPartials / per_chunk));
}

at::Tensor edge_score_cpu(const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
                          const at::Tensor& weight, const at::Tensor& bias,
                          const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group) {
  check_edge_score(p_src, p_dst, edge_index, weight, bias, edge_term, group, "CPU");
  const int64_t E = edge_index.size(1);
  auto out = at::empty({E}, p_src.options());
  if (E == 0) return out;
  const auto operands = prepare_edge_score(p_src, p_dst, edge_index, weight, edge_term, group);
  const auto b = bias.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p_src.scalar_type(), "edge_score_cpu", [&] {
    const auto in = operands.inputs<scalar_t>();
    const scalar_t* bias_ptr = b.const_data_ptr<scalar_t>();
    scalar_t* out_ptr = out.mutable_data_ptr<scalar_t>();
    FirstIndex bad(E);
    parallel_tasks((E + kForwardChunk - 1) / kForwardChunk, [&](int64_t c) {
      const int64_t begin = c * kForwardChunk, end = std::min(begin + kForwardChunk, E);
      const int64_t first_bad = first_out_of_range(in, begin, end);
      if (first_bad < end) {
        bad.report(first_bad);
      } else if (in.edge_term) {
        forward_edges<scalar_t, true>(in, bias_ptr, out_ptr, begin, end);
      } else {
        forward_edges<scalar_t, false>(in, bias_ptr, out_ptr, begin, end);
      }
    });
    if (bad.found()) {
      fail_edge_score_range("edge_score", "CPU", in.src, in.dst, in.group, in.n_src, in.n_dst, in.G, bad.get());
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> edge_score_backward_cpu(
    const at::Tensor& grad, const at::Tensor& p_src, const at::Tensor& p_dst, const at::Tensor& edge_index,
    const at::Tensor& weight, const std::optional<at::Tensor>& edge_term, const std::optional<at::Tensor>& group) {
  check_edge_score_backward(grad, p_src, p_dst, edge_index, weight, edge_term, group, "CPU");
  const int64_t E = edge_index.size(1), N_src = p_src.size(0), N_dst = p_dst.size(0);
  const int64_t G = weight.size(0), H = weight.size(1);
  auto grad_src = at::empty({N_src, H}, p_src.options());
  auto grad_dst = at::empty({N_dst, H}, p_src.options());
  auto grad_term = edge_term ? at::empty({E, H}, p_src.options()) : at::empty({0}, p_src.options());
  if (E == 0) {
    grad_src.zero_();
    grad_dst.zero_();
    return {grad_src, grad_dst, grad_term, at::zeros_like(weight), at::zeros({G}, weight.options())};
  }
  const auto operands = prepare_edge_score(p_src, p_dst, edge_index, weight, edge_term, group);
  const auto go = grad.contiguous();

  const int64_t C = num_chunks(E, G, H);
  const auto acc = at::toAccumulateType(p_src.scalar_type(), /*is_cuda=*/false);
  auto gw_partial = at::zeros({C, G, H}, weight.options().dtype(acc));
  auto gb_partial = at::zeros({C, G}, weight.options().dtype(acc));

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p_src.scalar_type(), "edge_score_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto in = operands.inputs<scalar_t>();
    const scalar_t* grad_ptr = go.const_data_ptr<scalar_t>();
    const int64_t bad = first_out_of_range(in, 0, E);
    if (bad < E) {
      fail_edge_score_range("edge_score_backward", "CPU", in.src, in.dst, in.group, in.n_src, in.n_dst, in.G, bad);
    }
    SideEdges by_src, by_dst;  // sorted concurrently
    at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t end) {
      for (int64_t side = begin; side < end; ++side) {
        if (side == 0) {
          by_src = sort_side(in, true, grad_ptr, E);
        } else {
          by_dst = sort_side(in, false, grad_ptr, E);
        }
      }
    });
    const auto src_bounds = chunk_bounds(by_src.ptr.const_data_ptr<int64_t>(), N_src, C);
    const auto dst_bounds = chunk_bounds(by_dst.ptr.const_data_ptr<int64_t>(), N_dst, C);
    scalar_t* gs = grad_src.mutable_data_ptr<scalar_t>();
    scalar_t* gd = grad_dst.mutable_data_ptr<scalar_t>();
    scalar_t* gt = edge_term ? grad_term.mutable_data_ptr<scalar_t>() : nullptr;
    using acc_t = at::acc_type<scalar_t, false>;
    acc_t* gw = gw_partial.mutable_data_ptr<acc_t>();
    acc_t* gb = gb_partial.mutable_data_ptr<acc_t>();
    // Even tasks: source-node chunks, odd tasks: target-node chunks.
    parallel_tasks(2 * C, [&](int64_t task) {
      const int64_t c = task / 2;
      const bool first = task % 2 == 0;
      const auto& side = first ? by_src : by_dst;
      const auto& bounds = first ? src_bounds : dst_bounds;
      const int64_t* ptr = side.ptr.const_data_ptr<int64_t>();
      const int64_t* edge = side.edge.defined() ? side.edge.const_data_ptr<int64_t>() : nullptr;
      const int64_t* other = side.other.const_data_ptr<int64_t>();
      const int64_t* group = side.group.defined() ? side.group.const_data_ptr<int64_t>() : nullptr;
      const opmath_t* grad_sorted = side.grad.const_data_ptr<opmath_t>();
      std::vector<opmath_t> row(H);
      const auto run = [&](auto term, auto is_first) {
        backward_nodes<scalar_t, decltype(term)::value, decltype(is_first)::value>(
            in, ptr, edge, other, group, grad_sorted, bounds[c], bounds[c + 1], row.data(), first ? gs : gd, gt,
            gw + c * G * H, gb + c * G);
      };
      if (in.edge_term) {
        first ? run(std::true_type(), std::true_type()) : run(std::true_type(), std::false_type());
      } else {
        first ? run(std::false_type(), std::true_type()) : run(std::false_type(), std::false_type());
      }
    });
  });
  return {grad_src, grad_dst, grad_term, gw_partial.sum(0).to(weight.scalar_type()),
          gb_partial.sum(0).to(weight.scalar_type())};
}

}  // namespace

}  // namespace refine_fast

TORCH_LIBRARY_IMPL(refine_fast, CPU, m) {
  m.impl("edge_score", &refine_fast::edge_score_cpu);
  m.impl("edge_score_backward", &refine_fast::edge_score_backward_cpu);
}
