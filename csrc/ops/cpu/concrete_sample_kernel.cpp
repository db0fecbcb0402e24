// CPU kernels of uniform, concrete_sample and concrete_sample_backward: one
// counter-based draw per edge, parallel over edges; concrete_sample draws a chunk of
// uniforms with the vectorized generator, then transforms it.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/common/concrete.h"
#include "ops/common/philox.h"
#include "ops/concrete_sample.h"

namespace refine_fast {

namespace {

constexpr int64_t kGrain = 4096;
constexpr int64_t kChunk = 512;

at::Tensor uniform_cpu(const at::Tensor& key, int64_t seed, int64_t step, at::ScalarType dtype) {
  check_uniform(key, step, dtype, "CPU");
  const auto key_c = key.contiguous();
  auto out = at::empty({key.numel()}, key.options().dtype(dtype));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(dtype, "uniform_cpu", [&] {
    const int64_t* k = key_c.data_ptr<int64_t>();
    scalar_t* u = out.data_ptr<scalar_t>();
    at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
      philox_uniform_batch<scalar_t>(k + begin, end - begin, seed, step, kConcreteStream, u + begin);
    });
  });
  return out;
}

at::Tensor concrete_sample_cpu(const at::Tensor& logits, const at::Tensor& key, int64_t seed, int64_t step,
                               double temperature) {
  check_concrete_sample(logits, key, step, temperature, "CPU");
  const auto logits_c = logits.contiguous();
  const auto key_c = key.contiguous();
  auto out = at::empty_like(logits_c);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "concrete_sample_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* l = logits_c.data_ptr<scalar_t>();
    const int64_t* k = key_c.data_ptr<int64_t>();
    scalar_t* m = out.data_ptr<scalar_t>();
    const opmath_t inv_t = static_cast<opmath_t>(1.0 / temperature);
    at::parallel_for(0, out.numel(), kGrain, [&](int64_t begin, int64_t end) {
      opmath_t u[kChunk];
      for (int64_t chunk = begin; chunk < end; chunk += kChunk) {
        const int64_t n = std::min(kChunk, end - chunk);
        philox_uniform_batch<opmath_t>(k + chunk, n, seed, step, kConcreteStream, u);
        for (int64_t i = 0; i < n; ++i) {
          m[chunk + i] =
              static_cast<scalar_t>(concrete_forward<opmath_t>(u[i], static_cast<opmath_t>(l[chunk + i]), inv_t));
        }
      }
    });
  });
  return out;
}

at::Tensor concrete_sample_backward_cpu(const at::Tensor& grad, const at::Tensor& output, double temperature) {
  check_concrete_sample_backward(grad, output, temperature, "CPU");
  const auto grad_c = grad.contiguous();
  const auto out_c = output.contiguous();
  auto grad_logits = at::empty_like(out_c);
  if (grad_logits.numel() == 0) return grad_logits;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, output.scalar_type(), "concrete_sample_backward_cpu",
                                  [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grad_c.data_ptr<scalar_t>();
    const scalar_t* m = out_c.data_ptr<scalar_t>();
    scalar_t* gl = grad_logits.data_ptr<scalar_t>();
    const opmath_t inv_t = static_cast<opmath_t>(1.0 / temperature);
    at::parallel_for(0, grad_logits.numel(), kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t e = begin; e < end; ++e) {
        gl[e] = static_cast<scalar_t>(
            concrete_backward<opmath_t>(static_cast<opmath_t>(g[e]), static_cast<opmath_t>(m[e]), inv_t));
      }
    });
  });
  return grad_logits;
}

}  // namespace

}  // namespace refine_fast

TORCH_LIBRARY_IMPL(refine_fast, CPU, m) {
  m.impl("uniform", &refine_fast::uniform_cpu);
  m.impl("concrete_sample", &refine_fast::concrete_sample_cpu);
  m.impl("concrete_sample_backward", &refine_fast::concrete_sample_backward_cpu);
}
