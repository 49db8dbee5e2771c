// Device-generic Sinkhorn solver: the iterations of core/sinkhorn.h written with
// ATen tensor operations in natural units (f, g, C; at::logsumexp), so it
// runs on any device torch supports, one kernel launch per operation.
//
// It is the eps-scaling path of the CUDA back end (the fused CUDA kernel
// runs plain iterations only) and runs on the CPU when SINSIM_SOLVER=generic,
// which is how the tests check it on machines without a GPU. It reads one
// host value per problem (the largest cost, for the number of stages) and,
// with a tol, the error of every iteration at the target eps (on a GPU each
// read is a device synchronisation).
#include "core/sinkhorn.h"

#include <cmath>

namespace sinsim {
namespace {

// f_i = -e LSE_j(log b_j + (g_j - C_ij) / e)
at::Tensor row_update(const at::Tensor& C, const at::Tensor& g, const at::Tensor& lb, double e) {
  return -e * at::logsumexp(lb.unsqueeze(0) + (g.unsqueeze(0) - C) / e, {1});
}

// g_j = -e LSE_i(log a_i + (f_i - C_ij) / e)
at::Tensor col_update(const at::Tensor& C, const at::Tensor& f, const at::Tensor& la, double e) {
  return -e * at::logsumexp(la.unsqueeze(1) + (f.unsqueeze(1) - C) / e, {0});
}

// sum_i a_i |exp((f_old_i - f_new_i) / e) - 1| over a_i > 0
at::Tensor row_error(const at::Tensor& a, const at::Tensor& f_old, const at::Tensor& f_new, double e) {
  const at::Tensor terms = a * at::expm1((f_old - f_new) / e).abs();
  return at::where(a > 0, terms, at::zeros_like(terms)).sum();
}

void solve_problem(const ProblemSet& set, int64_t bi, const SolverOptions& opt) {
  const at::Tensor C = cost_matrix(set.x[bi], set.y[bi], opt.cost);
  const at::Tensor a = set.a[bi], la = a.log(), lb = set.b[bi].log();
  const int64_t stages = opt.scaling > 0 ? opt.stages(C.max().item<double>()) : 0;
  const auto eps_at = [&](int64_t t) { return stage_eps(t, stages, opt.eps, opt.scaling); };
  int64_t iters = 0;
  at::Tensor err, f, g;
  if (set.symmetric) {
    at::Tensor p = at::zeros_like(a);
    for (int64_t t = 1; t <= opt.max_iter; ++t) {
      const double e = eps_at(t);
      f = row_update(C, p, la, e);
      err = row_error(a, p, f, e);
      iters = t;
      if (opt.stops_after(t, stages, [&] { return err.item<double>(); })) break;
      p = 0.5 * (p + f);
    }
    g = p;
  } else {
    f = at::zeros_like(a);
    g = col_update(C, f, la, eps_at(1));
    for (int64_t t = 1; t <= opt.max_iter; ++t) {
      const double e = eps_at(t);
      const at::Tensor f_new = row_update(C, g, lb, e);
      err = row_error(a, f, f_new, e);
      f = f_new;
      iters = t;
      if (opt.stops_after(t, stages, [&] { return err.item<double>(); })) break;
      g = col_update(C, f, la, eps_at(t + 1));
    }
  }
  set.f[bi].copy_(f);
  set.g[bi].copy_(g);
  set.error[bi].copy_(err);
  set.n_iter[bi].fill_(iters);
}

}  // namespace

void solve_generic(std::vector<ProblemSet>& sets, const SolverOptions& opt) {
  for (const ProblemSet& set : sets) {
    for (int64_t bi = 0; bi < set.x.size(0); ++bi) solve_problem(set, bi, opt);
  }
}

}  // namespace sinsim
