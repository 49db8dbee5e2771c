// Calls the Sinkhorn operator from C++ without Python, through the C++ API of
// csrc/core/sinkhorn.h and through the PyTorch dispatcher (as TorchScript or any
// libtorch program would), and prints both values and the convergence report.
//
//   ./sinkhorn_demo [n] [m] [d]      (defaults 64 48 16)
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <cstdlib>
#include <iomanip>
#include <iostream>

#include "core/sinkhorn.h"

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 64;
  const int64_t m = argc > 2 ? std::atoll(argv[2]) : 48;
  const int64_t d = argc > 3 ? std::atoll(argv[3]) : 16;
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  const torch::Tensor x = torch::randn({1, n, d}, opts);
  const torch::Tensor y = torch::randn({1, m, d}, opts);
  const torch::Tensor a = torch::full({1, n}, 1.0 / n, opts);
  const torch::Tensor b = torch::full({1, m}, 1.0 / m, opts);

  const auto direct = sinsim::sinkhorn_value_cpu(x, y, a, b, 0.5, "sqeuclidean", 10000, 1e-12, false, 0.0, false);

  const auto op = c10::Dispatcher::singleton()
                      .findSchemaOrThrow("sinsim_ext::sinkhorn_value", "")
                      .typed<sinsim::ForwardResult(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                   const at::Tensor&, double, c10::string_view, int64_t,
                                                   double, bool, double, bool)>();
  const auto dispatched = op.call(x, y, a, b, 0.5, "sqeuclidean", 10000, 1e-12, false, 0.0, false);

  std::cout << std::setprecision(17) << "value " << std::get<0>(direct).item<double>() << "\n"
            << "dispatched " << std::get<0>(dispatched).item<double>() << "\n"
            << "iterations " << std::get<7>(direct).item<int>() << "\n"
            << "error " << std::get<8>(direct).item<double>() << "\n";
  return 0;
}
