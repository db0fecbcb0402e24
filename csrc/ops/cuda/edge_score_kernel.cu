// CUDA kernels of the fused edge-score MLP.
//
// Forward: one warp per edge, lanes over the H channels, warp-shuffle sum. Backward: one warp
// per edge, tanh recomputed, atomicAdd into grad p_src / p_dst (opmath buffers); the weight and
// bias gradients are summed per block in shared memory when [G, H] fits, then added once.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/common/edge_score.h"
#include "ops/edge_score.h"

namespace refine_fast {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarpSize * kWarpsPerBlock;
constexpr int64_t kMaxSharedBytes = 48 * 1024;

template <typename opmath_t, typename scalar_t>
__device__ __forceinline__ opmath_t pre_activation(const EdgeScoreInputs<scalar_t>& in, int64_t e, int64_t s, int64_t d,
                                                   int64_t k) {
  opmath_t x = static_cast<opmath_t>(in.p_src[s * in.src_stride + k]) +
               static_cast<opmath_t>(in.p_dst[d * in.dst_stride + k]);
  if (in.edge_term != nullptr) x += static_cast<opmath_t>(in.edge_term[e * in.term_stride + k]);
  return x;
}

int64_t num_blocks(int64_t E, int64_t per_sm) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  return std::max<int64_t>(1, std::min<int64_t>((E + kWarpsPerBlock - 1) / kWarpsPerBlock, sms * per_sm));
}

template <typename scalar_t>
__global__ void edge_score_forward_kernel(EdgeScoreInputs<scalar_t> in, const scalar_t* bias, scalar_t* out, int64_t E) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize; e < E;
       e += stride) {
    const int64_t s = in.src[e], d = in.dst[e];
    const int64_t g = in.group != nullptr ? in.group[e] : 0;
    const scalar_t* w = in.weight + g * in.H;
    opmath_t acc = 0;
    for (int64_t k = lane; k < in.H; k += kWarpSize) {
      acc += static_cast<opmath_t>(w[k]) * edge_score_activation(pre_activation<opmath_t>(in, e, s, d, k));
    }
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) acc += __shfl_down_sync(0xffffffffu, acc, offset);
    if (lane == 0) out[e] = static_cast<scalar_t>(acc + static_cast<opmath_t>(bias[g]));
  }
}

// kShared: weight/bias gradients summed per block in shared memory ([G, H] + [G] values).
template <typename scalar_t, bool kShared>
__global__ void edge_score_backward_kernel(EdgeScoreInputs<scalar_t> in, const scalar_t* grad, int64_t E, int64_t G,
                                           at::opmath_type<scalar_t>* grad_src, at::opmath_type<scalar_t>* grad_dst,
                                           scalar_t* grad_term, at::opmath_type<scalar_t>* grad_weight,
                                           at::opmath_type<scalar_t>* grad_bias) {
  using opmath_t = at::opmath_type<scalar_t>;
  extern __shared__ unsigned char shared_bytes[];
  opmath_t* shared_weight = reinterpret_cast<opmath_t*>(shared_bytes);
  opmath_t* shared_bias = shared_weight + G * in.H;
  if (kShared) {
    for (int64_t i = threadIdx.x; i < G * in.H + G; i += blockDim.x) shared_weight[i] = 0;
    __syncthreads();
  }
  const int lane = threadIdx.x % kWarpSize;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize; e < E;
       e += stride) {
    const int64_t s = in.src[e], d = in.dst[e];
    const int64_t g = in.group != nullptr ? in.group[e] : 0;
    const scalar_t* w = in.weight + g * in.H;
    const opmath_t go = static_cast<opmath_t>(grad[e]);
    for (int64_t k = lane; k < in.H; k += kWarpSize) {
      const opmath_t t = edge_score_activation(pre_activation<opmath_t>(in, e, s, d, k));
      const opmath_t gp = go * static_cast<opmath_t>(w[k]) * edge_score_activation_grad(t);
      gpuAtomicAdd(grad_src + s * in.H + k, gp);
      gpuAtomicAdd(grad_dst + d * in.H + k, gp);
      if (grad_term != nullptr) grad_term[e * in.H + k] = static_cast<scalar_t>(gp);
      if (kShared) {
        atomicAdd(shared_weight + g * in.H + k, go * t);
      } else {
        gpuAtomicAdd(grad_weight + g * in.H + k, go * t);
      }
    }
    if (lane == 0) {
      if (kShared) {
        atomicAdd(shared_bias + g, go);
      } else {
        gpuAtomicAdd(grad_bias + g, go);
      }
    }
  }
  if (kShared) {
    __syncthreads();
    for (int64_t i = threadIdx.x; i < G * in.H; i += blockDim.x) gpuAtomicAdd(grad_weight + i, shared_weight[i]);
    for (int64_t i = threadIdx.x; i < G; i += blockDim.x) gpuAtomicAdd(grad_bias + i, shared_bias[i]);
  }
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
    edge_score_forward_kernel<scalar_t><<<num_blocks(E, 32), kThreads, 0, stream>>>(
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
  const int64_t E = edge_index.size(1), G = weight.size(0), H = weight.size(1);
  const auto dtype = p_src.scalar_type();
  const auto opmath = p_src.options().dtype(at::toOpMathType(dtype));
  auto grad_src = at::zeros({p_src.size(0), H}, opmath);
  auto grad_dst = at::zeros({p_dst.size(0), H}, opmath);
  auto grad_weight = at::zeros({G, H}, opmath);
  auto grad_bias = at::zeros({G}, opmath);
  auto grad_term = edge_term ? at::empty({E, H}, p_src.options()) : at::empty({0}, p_src.options());
  if (E > 0) {
    const auto operands = prepare_edge_score(p_src, p_dst, edge_index, weight, edge_term, group);
    const auto go = grad.contiguous();
    const auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "edge_score_backward_cuda", [&] {
      using opmath_t = at::opmath_type<scalar_t>;
      const auto in = operands.inputs<scalar_t>();
      const int64_t shared = (G * H + G) * static_cast<int64_t>(sizeof(opmath_t));
      scalar_t* gt = edge_term ? grad_term.mutable_data_ptr<scalar_t>() : nullptr;
      if (shared <= kMaxSharedBytes) {
        edge_score_backward_kernel<scalar_t, true><<<num_blocks(E, 4), kThreads, shared, stream>>>(
            in, go.const_data_ptr<scalar_t>(), E, G, grad_src.mutable_data_ptr<opmath_t>(),
            grad_dst.mutable_data_ptr<opmath_t>(), gt, grad_weight.mutable_data_ptr<opmath_t>(),
            grad_bias.mutable_data_ptr<opmath_t>());
      } else {
        edge_score_backward_kernel<scalar_t, false><<<num_blocks(E, 32), kThreads, 0, stream>>>(
            in, go.const_data_ptr<scalar_t>(), E, G, grad_src.mutable_data_ptr<opmath_t>(),
            grad_dst.mutable_data_ptr<opmath_t>(), gt, grad_weight.mutable_data_ptr<opmath_t>(),
            grad_bias.mutable_data_ptr<opmath_t>());
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_src.to(dtype), grad_dst.to(dtype), grad_term, grad_weight.to(dtype), grad_bias.to(dtype)};
}

}  // namespace

}  // namespace refine_fast

TORCH_LIBRARY_IMPL(refine_fast, CUDA, m) {
  m.impl("edge_score", &refine_fast::edge_score_cuda);
  m.impl("edge_score_backward", &refine_fast::edge_score_backward_cuda);
}
