// SINSIM_HD marks the functions that host code and the CUDA kernels share
// (the schedule, the cost table's per-coordinate terms, the tiles' steps):
// __host__ __device__ under nvcc, plain inline functions for a C++ compiler.
#pragma once

#if defined(__CUDACC__)
#define SINSIM_HD __host__ __device__ __forceinline__
#else
#define SINSIM_HD inline
#endif
