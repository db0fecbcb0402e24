// Declares the refine_fast operator namespace. Each op adds its schema with
// TORCH_LIBRARY_FRAGMENT in csrc/ops/<op>.cpp.
#include <torch/library.h>

TORCH_LIBRARY(refine_fast, m) {}
