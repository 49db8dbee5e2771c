// The fused backward of the CUDA back end (cuda/fused_backward.cu).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "core/sinkhorn.h"

namespace sinsim {

// Whether the fused kernel takes points like x (B, n, d) on its device:
// features up to 256 (float32) or 128 (float64), and the tiles of those
// features in the device's shared memory.
bool fused_backward_supported(const at::Tensor& x);

// The gradient of the value in x and y (the driver's composed backward,
// core/driver.cpp, in one launch): inputs contiguous, on one CUDA device.
std::tuple<at::Tensor, at::Tensor> fused_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx, const at::Tensor& g_xx, const at::Tensor& f_yy,
    const at::Tensor& g_yy, double eps, CostKind cost, bool debias);

}  // namespace sinsim
