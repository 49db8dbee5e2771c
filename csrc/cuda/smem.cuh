// Raising a kernel's dynamic shared-memory limit once per device and size.
//
// cudaFuncSetAttribute is a host call outside stream order; doing it once per
// (kernel, device) keeps it out of the steady state, so a CUDA graph captured
// after a warm-up call records launches only.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <utility>

namespace sinsim {

template <typename Kernel>
void ensure_dynamic_smem(Kernel kernel, size_t bytes) {
  static std::mutex lock;
  static std::map<std::pair<const void*, int>, size_t> raised;
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> guard(lock);
  size_t& have = raised[{reinterpret_cast<const void*>(kernel), device}];
  if (bytes > have) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
    have = bytes;
  }
}

}  // namespace sinsim
