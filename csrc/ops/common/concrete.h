#pragma once

// The binary concrete (relaxed Bernoulli) reparameterization of ReFine:
//   m = sigmoid((log u - log(1 - u) + logit) / temperature),  u ~ U(0, 1).

#include <cmath>

#include "ops/common/macros.h"

namespace refine_fast {

template <typename T>
REFINE_HOST_DEVICE inline T concrete_forward(T u, T logit, T inv_temperature) {
  const T z = (std::log(u / (T(1) - u)) + logit) * inv_temperature;  // log u - log(1 - u), one log
  return T(1) / (T(1) + std::exp(-z));
}

// d m / d logit = m (1 - m) / temperature, from the saved output m.
template <typename T>
REFINE_HOST_DEVICE inline T concrete_backward(T grad, T m, T inv_temperature) {
  return grad * m * (T(1) - m) * inv_temperature;
}

}  // namespace refine_fast
