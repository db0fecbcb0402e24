#pragma once

// Marks per-element math shared by the CPU and CUDA kernels.
#ifdef __CUDACC__
#define REFINE_HOST_DEVICE __host__ __device__
#else
#define REFINE_HOST_DEVICE
#endif
