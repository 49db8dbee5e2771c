// The pass solver of the CUDA back end (sinkhorn_cuda_passes.cu): the
// iterations of sinkhorn.h one launch per pass, the cost stored or (with
// SolverOptions::online) recomputed in tiles, eps-scaling and early stopping
// decided on the device.
#pragma once

#include <vector>

#include "sinkhorn.h"

namespace sinsim {

void solve_cuda_passes(std::vector<ProblemSet>& sets, const SolverOptions& opt);

}  // namespace sinsim
