// The pass solver of the CUDA back end (cuda/pass_solver.cu): the
// iterations of core/sinkhorn.h one launch per pass, the cost stored or (with
// SolverOptions::online) recomputed in tiles, eps-scaling and early stopping
// decided on the device.
#pragma once

#include <vector>

#include "core/sinkhorn.h"

namespace sinsim {

void solve_cuda_passes(std::vector<ProblemSet>& sets, const SolverOptions& opt);

}  // namespace sinsim
