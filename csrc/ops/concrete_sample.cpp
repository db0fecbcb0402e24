// Schemas and argument checks of the counter-based uniform draw and the concrete
// (relaxed Bernoulli) edge sampling.
#include "ops/concrete_sample.h"

#include <torch/library.h>

namespace refine_fast {

namespace {

void check_key(const char* op, const char* backend, const at::Tensor& key) {
  TORCH_CHECK(key.scalar_type() == at::kLong && key.dim() == 1, op, " (", backend,
              "): key must be a 1-D int64 tensor, got ", key.scalar_type(), " of shape ", key.sizes());
}

void check_step(const char* op, const char* backend, int64_t step) {
  TORCH_CHECK(step >= 0 && step <= INT64_C(0xFFFFFFFF), op, " (", backend, "): step must be in [0, 2^32), got ",
              step);
}

}  // namespace

void check_uniform(const at::Tensor& key, int64_t step, at::ScalarType dtype, const char* backend) {
  check_key("uniform", backend, key);
  check_step("uniform", backend, step);
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "uniform (", backend,
              "): dtype must be float32 or float64, got ", dtype);
}

void check_concrete_sample(const at::Tensor& logits, const at::Tensor& key, int64_t step, double temperature,
                           const char* backend) {
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()) && logits.dim() == 1, "concrete_sample (", backend,
              "): logits must be a 1-D floating tensor, got ", logits.scalar_type(), " of shape ", logits.sizes());
  check_key("concrete_sample", backend, key);
  TORCH_CHECK(key.numel() == logits.numel(), "concrete_sample (", backend, "): key must have shape [E] = [",
              logits.numel(), "] like logits, got ", key.sizes());
  TORCH_CHECK(key.device() == logits.device(), "concrete_sample (", backend,
              "): key must be on the device of logits (", logits.device(), "), got ", key.device());
  check_step("concrete_sample", backend, step);
  TORCH_CHECK(temperature > 0, "concrete_sample (", backend, "): temperature must be > 0, got ", temperature);
}

void check_concrete_sample_backward(const at::Tensor& grad, const at::Tensor& output, double temperature,
                                    const char* backend) {
  TORCH_CHECK(output.dim() == 1 && grad.sizes() == output.sizes(), "concrete_sample_backward (", backend,
              "): grad must have the shape of output [E], got ", grad.sizes(), " and ", output.sizes());
  TORCH_CHECK(grad.scalar_type() == output.scalar_type() && grad.device() == output.device(),
              "concrete_sample_backward (", backend, "): grad must match output in dtype and device, got ",
              grad.scalar_type(), "/", grad.device(), " and ", output.scalar_type(), "/", output.device());
  TORCH_CHECK(temperature > 0, "concrete_sample_backward (", backend, "): temperature must be > 0, got ",
              temperature);
}

}  // namespace refine_fast

TORCH_LIBRARY_FRAGMENT(refine_fast, m) {
  m.def("uniform(Tensor key, int seed, int step, ScalarType dtype) -> Tensor");
  m.def("concrete_sample(Tensor logits, Tensor key, int seed, int step, float temperature) -> Tensor");
  m.def("concrete_sample_backward(Tensor grad, Tensor output, float temperature) -> Tensor");
}
