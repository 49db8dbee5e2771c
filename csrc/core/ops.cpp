// Operator schemas (TORCH_LIBRARY) and their CPU / CUDA kernels
// (TORCH_LIBRARY_IMPL). Autograd and the fake (meta) kernels that
// torch.compile needs are registered from Python in sinsim_ext/ops.py.
#include <torch/library.h>

#include "cuda/kernel_choice.h"
#include "core/sinkhorn.h"

TORCH_LIBRARY(sinsim_ext, m) {
  m.def(
      "sinkhorn_value(Tensor x, Tensor y, Tensor a, Tensor b, float eps, str cost, int max_iter, "
      "float tol, bool debias, float scaling=0.0, bool online=False) -> (Tensor value, Tensor f, Tensor g, Tensor f_xx, Tensor g_xx, "
      "Tensor f_yy, Tensor g_yy, Tensor n_iter, Tensor error)");
  m.def(
      "sinkhorn_value_backward(Tensor grad, Tensor x, Tensor y, Tensor a, Tensor b, Tensor f, "
      "Tensor g, Tensor f_xx, Tensor g_xx, Tensor f_yy, Tensor g_yy, float eps, str cost, "
      "bool debias, bool online=False) -> (Tensor grad_x, Tensor grad_y)");
  m.def("compiled_backends() -> str[]", &sinsim::compiled_backends);
  m.def("cpu_capability() -> str", &sinsim::cpu_capability);
  m.def("cpu_capabilities() -> str[]", &sinsim::cpu_capabilities);
  m.def("cuda_kernel_parts(str value) -> str[]", &sinsim::cuda_kernel_parts);
}

TORCH_LIBRARY_IMPL(sinsim_ext, CPU, m) {
  m.impl("sinkhorn_value", &sinsim::sinkhorn_value_cpu);
  m.impl("sinkhorn_value_backward", &sinsim::sinkhorn_value_backward_cpu);
}

#ifdef SINSIM_WITH_CUDA
TORCH_LIBRARY_IMPL(sinsim_ext, CUDA, m) {
  m.impl("sinkhorn_value", &sinsim::sinkhorn_value_cuda);
  m.impl("sinkhorn_value_backward", &sinsim::sinkhorn_value_backward_cuda);
}
#endif
