// Parsing of SINSIM_CUDA_KERNEL (cuda/kernel_choice.h).
#include "cuda/kernel_choice.h"

#include <c10/util/Exception.h>

#include <cstdlib>

namespace sinsim {
namespace {

constexpr const char* kAccepted =
    "'v1' (the verified kernels, the default), 'v2' (backward, online, scaling and graph) or a "
    "comma-separated list of backward, online, scaling, graph, passes";

std::string trimmed(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  const auto last = s.find_last_not_of(" \t");
  return s.substr(first, last - first + 1);
}

}  // namespace

CudaKernelChoice parse_cuda_kernel_choice(c10::string_view value) {
  const std::string all = trimmed(std::string(value));
  CudaKernelChoice choice;
  if (all.empty() || all == "v1") return choice;
  if (all == "v2") return CudaKernelChoice{true, true, true, true, false};
  size_t start = 0;
  while (start <= all.size()) {
    const size_t comma = all.find(',', start);
    const std::string part = trimmed(all.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (part == "backward") {
      choice.backward = true;
    } else if (part == "online") {
      choice.online = true;
    } else if (part == "scaling") {
      choice.scaling = true;
    } else if (part == "graph") {
      choice.graph = true;
    } else if (part == "passes") {
      choice.passes = true;
    } else {
      TORCH_CHECK_VALUE(false, "SINSIM_CUDA_KERNEL must be ", kAccepted, "; got '", all, "' ('", part,
                        "' is not one of them)");
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return choice;
}

CudaKernelChoice cuda_kernel_choice() {
  const char* env = std::getenv("SINSIM_CUDA_KERNEL");
  return parse_cuda_kernel_choice(env == nullptr ? "" : env);
}

std::vector<std::string> cuda_kernel_parts(c10::string_view value) {
  const CudaKernelChoice c = parse_cuda_kernel_choice(value);
  std::vector<std::string> parts;
  if (c.backward) parts.emplace_back("backward");
  if (c.online) parts.emplace_back("online");
  if (c.graph) parts.emplace_back("graph");
  if (c.passes) parts.emplace_back("passes");
  if (c.scaling) parts.emplace_back("scaling");
  return parts;
}

}  // namespace sinsim
