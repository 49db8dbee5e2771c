// Which of the CUDA back end's newer paths a call may take.
//
// The CUDA kernels verified on a device run by default. The newer paths run
// only when SINSIM_CUDA_KERNEL selects them (read on every call), until their
// tests pass on a device:
//
//   unset, "" or "v1"   the verified kernels only
//   "v2"                backward, online, scaling and graph
//   a comma-separated list of parts:
//     backward   the fused backward (plan, P y, P^T x and the marginals in one
//                launch, no (n, m) temporary)
//     online     cost_mode="online" on CUDA (the cost recomputed in tiles at
//                every pass), and cost_mode="auto" choosing it by memory
//     scaling    eps-scaling on the device (the stages decided and run without
//                host reads) instead of the ATen-generic solver
//     graph      the fused forward writes its problem descriptors to the
//                device by kernel launches instead of a pinned-memory copy,
//                so a CUDA graph can capture the call
//     passes     plain iterations on the stored cost run the pass solver
//                instead of the fused kernel (to compare the two forwards;
//                not part of "v2")
//
// sinsim_ext/_cuda_kernel.py parses the same grammar for cost_mode="auto";
// tests/test_cuda_kernel_choice.py checks that both agree.
#pragma once

#include <c10/util/string_view.h>

#include <string>
#include <vector>

namespace sinsim {

struct CudaKernelChoice {
  bool backward = false;
  bool online = false;
  bool scaling = false;
  bool graph = false;
  bool passes = false;
  bool any() const { return backward || online || scaling || graph || passes; }
};

// Parses a value of SINSIM_CUDA_KERNEL; throws c10::ValueError naming the
// variable and the accepted values otherwise.
CudaKernelChoice parse_cuda_kernel_choice(c10::string_view value);

// The choice in the environment now (SINSIM_CUDA_KERNEL).
CudaKernelChoice cuda_kernel_choice();

// The parts a value selects, sorted, e.g. {"backward", "online"} (the op
// sinsim_ext::cuda_kernel_parts, for the tests and the Python side).
std::vector<std::string> cuda_kernel_parts(c10::string_view value);

}  // namespace sinsim
