// Shared declarations of the SinSim Sinkhorn operator.
//
// Maths (docs/design/maths.md). Points x (n, d), y (m, d), weights a, b on the
// simplex, cost C_ij = c(x_i, y_j), eps > 0. The kernels work in base-2
// scaled units so that every exponential is an exp2:
//
//     s = log2(e) / eps,   K_ij = -s C_ij,   phi = s f,   gamma = s g,
//     la = log2 a,   lb = log2 b
//     row update:     phi_i   = -LSE2_j(lb_j + gamma_j + K_ij)
//     column update:  gamma_j = -LSE2_i(la_i + phi_i + K_ij)
//
// with LSE2(v) = log2 sum 2^v. One iteration is a column update followed by a
// row update (the first column update starts from f = 0), so the returned
// potentials have exact row marginals. The error of an iteration is the L1
// row-marginal violation before its row update,
// sum_i a_i |2^(phi_old_i - phi_i) - 1|, which the row update yields for free.
// Symmetric problems (OT(x, x), used by the debiased divergence) run the
// averaged update p <- (p + T(p)) / 2 and return the pair (T(p), p).
//
// Eps-scaling (SolverOptions::scaling = r in (0, 1); GeomLoss's `scaling`):
// iteration t of T runs at eps_t = eps / r^(S - t + 1) for t <= S and at eps
// afterwards, where S = scaling_stages(max_ij C_ij, ...) is the smallest
// count with eps / r^S >= max C (capped at max_iter - 1). The potentials
// carry over in natural units (f, g), so in scaled units phi, gamma and K are
// multiplied by 1/r at each change of stage. Early stopping on tol is only
// allowed at the target eps. n_iter counts every iteration, stages included.
// core/schedule.h defines the stages and the stopping rule once for every
// solver; core/cost_table.h and core/costs.h define the costs.
//
// This header is plain C++ (no Python): the CMake build uses it to call the
// operator from C++ programs.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>
#include <vector>

#include "core/costs.h"
#include "core/schedule.h"

namespace sinsim {

// The op's options (its schema after the tensors), checked once by
// solver_options().
struct SolverOptions {
  double eps;
  CostKind cost;
  int64_t max_iter;
  double tol;  // <= 0: run exactly max_iter iterations
  double scaling = 0.0;  // eps-scaling ratio in (0, 1); 0: plain iterations
  bool online = false;   // recompute the cost in blocks instead of storing it (CPU; CUDA pass solver)

  // The stages of a problem whose largest cost is cost_max (core/schedule.h).
  int64_t stages(double cost_max) const { return scaling_stages(cost_max, eps, scaling, max_iter); }
  // Whether a problem stops after iteration t (core/schedule.h); read_error() gives its error.
  template <typename ReadError>
  bool stops_after(int64_t t, int64_t stages, ReadError read_error) const {
    return sinsim::stops_after<int64_t>(t, max_iter, stages, tol, read_error);
  }
};

// The options from the op's arguments; throws c10::ValueError for a bad one.
SolverOptions solver_options(double eps, c10::string_view cost, int64_t max_iter, double tol, double scaling,
                             bool online);

// B problems of one shape, solved together.
struct ProblemSet {
  at::Tensor x, y;      // (B, n, d), (B, m, d), contiguous, float32 or float64
  at::Tensor a, b;      // (B, n), (B, m) weights
  bool symmetric;       // x is y and a is b: averaged update
  at::Tensor f, g;      // outputs (B, n), (B, m)
  at::Tensor n_iter;    // output (B,) int32
  at::Tensor error;     // output (B,)
};

// Device back ends: solve every set in place; form the plan
// P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps) as a (B, n, m) tensor.
void solve_cpu(std::vector<ProblemSet>& sets, const SolverOptions& opt);
at::Tensor plan_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g,
                    const SolverOptions& opt);
// Device-generic solver written with ATen tensor operations (one kernel
// launch per operation, any device): the eps-scaling path of the CUDA back
// end (core/generic.cpp). SINSIM_SOLVER=generic forces it on the CPU too.
void solve_generic(std::vector<ProblemSet>& sets, const SolverOptions& opt);
#ifdef SINSIM_WITH_CUDA
void solve_cuda(std::vector<ProblemSet>& sets, const SolverOptions& opt);
at::Tensor plan_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                     const at::Tensor& b, const at::Tensor& f, const at::Tensor& g,
                     const SolverOptions& opt);
#endif

using SolveFn = void (*)(std::vector<ProblemSet>&, const SolverOptions&);
using PlanFn = at::Tensor (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              const SolverOptions&);

// (value, f, g, f_xx, g_xx, f_yy, g_yy, n_iter, error). value = <a,f> + <b,g>,
// or with debias the divergence OT(x,y) - OT(x,x)/2 - OT(y,y)/2. The symmetric
// potentials are empty tensors without debias; n_iter and error are
// (P, B) with P = 3 with debias (rows: xy, xx, yy), else 1.
using ForwardResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                 at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

ForwardResult sinkhorn_value_forward(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                                     const at::Tensor& b, const SolverOptions& opt, bool debias, SolveFn solve);

// Envelope-theorem gradient of the value with respect to x and y, from the
// potentials saved by the forward (one pass over C, no iterations; with
// `online`, in blocks of rows of the plan so memory stays O((n + m) d)): the
// gradient of <P, C(x, y)> with the plan P held fixed (cost_pullback,
// core/costs.h), and with debias the same of the two symmetric problems.
std::tuple<at::Tensor, at::Tensor> sinkhorn_value_backward(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx,
    const at::Tensor& g_xx, const at::Tensor& f_yy, const at::Tensor& g_yy, const SolverOptions& opt,
    bool debias, PlanFn plan);

// Typed entry points, one per registered back end (core/ops.cpp registers them).
ForwardResult sinkhorn_value_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                                 const at::Tensor& b, double eps, c10::string_view cost,
                                 int64_t max_iter, double tol, bool debias, double scaling,
                                 bool online);
std::tuple<at::Tensor, at::Tensor> sinkhorn_value_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx,
    const at::Tensor& g_xx, const at::Tensor& f_yy, const at::Tensor& g_yy, double eps,
    c10::string_view cost, bool debias, bool online);
#ifdef SINSIM_WITH_CUDA
ForwardResult sinkhorn_value_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                                  const at::Tensor& b, double eps, c10::string_view cost,
                                  int64_t max_iter, double tol, bool debias, double scaling,
                                  bool online);
std::tuple<at::Tensor, at::Tensor> sinkhorn_value_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx,
    const at::Tensor& g_xx, const at::Tensor& f_yy, const at::Tensor& g_yy, double eps,
    c10::string_view cost, bool debias, bool online);
#endif

// Names of the back ends compiled into this build, e.g. {"cpu", "cuda"}.
std::vector<std::string> compiled_backends();

// The instruction set of the CPU loops a call would use now ("default",
// "avx2", "avx512"), and every one this build and CPU can run (cpu/loops.h).
std::string cpu_capability();
std::vector<std::string> cpu_capabilities();

}  // namespace sinsim
