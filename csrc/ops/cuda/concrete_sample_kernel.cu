// CUDA kernels of uniform, concrete_sample and concrete_sample_backward: one thread
// per edge (grid-stride), the same counter-based draws as the CPU kernels.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/common/concrete.h"
#include "ops/common/philox.h"
#include "ops/concrete_sample.h"

namespace refine_fast {

namespace {

constexpr int kThreads = 256;

int num_blocks(int64_t n) {
  const int64_t max_blocks = at::cuda::getCurrentDeviceProperties()->multiProcessorCount * 32;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, max_blocks)));
}

template <typename scalar_t>
__global__ void uniform_kernel(const int64_t* __restrict__ key, int64_t seed, int64_t step, int64_t n,
                               scalar_t* __restrict__ u) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    u[e] = philox_uniform<scalar_t>(philox_draw(seed, key[e], step, kConcreteStream));
  }
}

template <typename scalar_t, typename opmath_t>
__global__ void concrete_sample_kernel(const scalar_t* __restrict__ logits, const int64_t* __restrict__ key,
                                       int64_t seed, int64_t step, opmath_t inv_temperature, int64_t n,
                                       scalar_t* __restrict__ m) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const opmath_t u = philox_uniform<opmath_t>(philox_draw(seed, key[e], step, kConcreteStream));
    m[e] = static_cast<scalar_t>(concrete_forward<opmath_t>(u, static_cast<opmath_t>(logits[e]), inv_temperature));
  }
}

template <typename scalar_t, typename opmath_t>
__global__ void concrete_sample_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ m,
                                                opmath_t inv_temperature, int64_t n,
                                                scalar_t* __restrict__ grad_logits) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    grad_logits[e] = static_cast<scalar_t>(concrete_backward<opmath_t>(
        static_cast<opmath_t>(grad[e]), static_cast<opmath_t>(m[e]), inv_temperature));
  }
}

at::Tensor uniform_cuda(const at::Tensor& key, int64_t seed, int64_t step, at::ScalarType dtype) {
  check_uniform(key, step, dtype, "CUDA");
  const c10::cuda::OptionalCUDAGuard guard(key.device());
  const auto key_c = key.contiguous();
  auto out = at::empty({key.numel()}, key.options().dtype(dtype));
  const int64_t n = out.numel();
  if (n == 0) return out;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(dtype, "uniform_cuda", [&] {
    uniform_kernel<scalar_t><<<num_blocks(n), kThreads, 0, stream>>>(key_c.data_ptr<int64_t>(), seed, step, n,
                                                                     out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor concrete_sample_cuda(const at::Tensor& logits, const at::Tensor& key, int64_t seed, int64_t step,
                                double temperature) {
  check_concrete_sample(logits, key, step, temperature, "CUDA");
  const c10::cuda::OptionalCUDAGuard guard(logits.device());
  const auto logits_c = logits.contiguous();
  const auto key_c = key.contiguous();
  auto out = at::empty_like(logits_c);
  const int64_t n = out.numel();
  if (n == 0) return out;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "concrete_sample_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    concrete_sample_kernel<scalar_t, opmath_t><<<num_blocks(n), kThreads, 0, stream>>>(
        logits_c.data_ptr<scalar_t>(), key_c.data_ptr<int64_t>(), seed, step,
        static_cast<opmath_t>(1.0 / temperature), n, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor concrete_sample_backward_cuda(const at::Tensor& grad, const at::Tensor& output, double temperature) {
  check_concrete_sample_backward(grad, output, temperature, "CUDA");
  const c10::cuda::OptionalCUDAGuard guard(output.device());
  const auto grad_c = grad.contiguous();
  const auto out_c = output.contiguous();
  auto grad_logits = at::empty_like(out_c);
  const int64_t n = grad_logits.numel();
  if (n == 0) return grad_logits;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "concrete_sample_backward_cuda",
                                  [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    concrete_sample_backward_kernel<scalar_t, opmath_t><<<num_blocks(n), kThreads, 0, stream>>>(
        grad_c.data_ptr<scalar_t>(), out_c.data_ptr<scalar_t>(), static_cast<opmath_t>(1.0 / temperature), n,
        grad_logits.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_logits;
}

}  // namespace

}  // namespace refine_fast

TORCH_LIBRARY_IMPL(refine_fast, CUDA, m) {
  m.impl("uniform", &refine_fast::uniform_cuda);
  m.impl("concrete_sample", &refine_fast::concrete_sample_cuda);
  m.impl("concrete_sample_backward", &refine_fast::concrete_sample_backward_cuda);
}
