// Device-independent glue of the operator: argument checks, output
// allocation, the value <a,f> + <b,g> (and the debiased divergence), and the
// envelope-theorem backward composed from the plan and two batched products.
// The device back ends (solve_*, plan_*) do the heavy work.
#include "core/sinkhorn.h"

#include "cuda/kernel_choice.h"
#ifdef SINSIM_WITH_CUDA
#include "cuda/fused_backward.h"
#include "cuda/pass_solver.h"
#endif

#include <cmath>
#include <cstdlib>
#include <string>

namespace sinsim {

SolverOptions solver_options(double eps, c10::string_view cost, int64_t max_iter, double tol, double scaling,
                             bool online) {
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0, "eps must be finite and > 0, got ", eps);
  TORCH_CHECK_VALUE(max_iter >= 1, "max_iter must be >= 1, got ", max_iter);
  TORCH_CHECK_VALUE(std::isfinite(tol), "tol must be finite, got ", tol);
  TORCH_CHECK_VALUE(scaling == 0.0 || (scaling > 0.0 && scaling < 1.0),
                    "scaling must be 0 (no eps-scaling) or strictly between 0 and 1, got ", scaling);
  return SolverOptions{eps, parse_cost(cost), max_iter, tol, scaling, online};
}

namespace {

void check_points(const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.dim() == 3, name, " must have shape (B, n, d), got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
                   " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.size(0) > 0, name, " holds an empty batch");
  TORCH_CHECK_VALUE(t.size(1) > 0, name, " is an empty point set");
  TORCH_CHECK_VALUE(t.size(2) > 0, name, " has no features (d = 0)");
}

void check_weights(const char* name, const at::Tensor& w, const at::Tensor& points) {
  TORCH_CHECK_VALUE(w.dim() == 2 && w.size(0) == points.size(0) && w.size(1) == points.size(1),
                    name, " must have shape (", points.size(0), ", ", points.size(1), "), got ",
                    w.sizes());
  TORCH_CHECK_TYPE(w.scalar_type() == points.scalar_type(), name, " must have dtype ",
                   points.scalar_type(), ", got ", w.scalar_type());
  TORCH_CHECK_VALUE(w.device() == points.device(), name, " must be on ", points.device(),
                    ", got ", w.device());
}

void check_args(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b) {
  check_points("x", x);
  check_points("y", y);
  TORCH_CHECK_VALUE(x.device() == y.device(), "x and y must be on the same device, got ",
                    x.device(), " and ", y.device());
  TORCH_CHECK_TYPE(x.scalar_type() == y.scalar_type(), "x and y must have the same dtype, got ",
                   x.scalar_type(), " and ", y.scalar_type());
  TORCH_CHECK_VALUE(x.size(0) == y.size(0), "x and y must have the same batch size, got ",
                    x.size(0), " and ", y.size(0));
  TORCH_CHECK_VALUE(x.size(2) == y.size(2), "x and y must have the same feature dimension, got ",
                    x.size(2), " and ", y.size(2));
  check_weights("a", a, x);
  check_weights("b", b, y);
}

// The gradient of <P, C(x, y)> in x and y with the plan P (B, n, m) held fixed.
std::tuple<at::Tensor, at::Tensor> plan_gradients(const at::Tensor& P, const at::Tensor& x, const at::Tensor& y,
                                                  CostKind cost) {
  const CostOperand ox = cost_operand(x, cost), oy = cost_operand(y, cost);
  const bool sums = cost_needs_row_sums(cost);
  const at::Tensor Pt = P.transpose(1, 2);
  at::Tensor gx = cost_pullback(cost, ox, sums ? P.sum(2, /*keepdim=*/true) : at::Tensor(), at::bmm(P, oy.rows));
  at::Tensor gy = cost_pullback(cost, oy, sums ? P.sum(1).unsqueeze(-1) : at::Tensor(), at::bmm(Pt, ox.rows));
  return {gx, gy};
}

// plan_gradients without the (B, n, m) plan: rows of P in blocks of at most
// kPlanBlockBytes, each giving its rows of grad_x and adding its part of
// the column sums and of P^T operand(x), from which grad_y follows.
constexpr int64_t kPlanBlockBytes = 32 << 20;

std::tuple<at::Tensor, at::Tensor> blocked_plan_gradients(const at::Tensor& x, const at::Tensor& y,
                                                          const at::Tensor& a, const at::Tensor& b,
                                                          const at::Tensor& f, const at::Tensor& g,
                                                          const SolverOptions& opt, PlanFn plan) {
  const int64_t B = x.size(0), n = x.size(1), m = y.size(1);
  const int64_t rows = std::max<int64_t>(1, kPlanBlockBytes / (B * m * static_cast<int64_t>(x.element_size())));
  const CostOperand ox = cost_operand(x, opt.cost), oy = cost_operand(y, opt.cost);
  const bool sums = cost_needs_row_sums(opt.cost);
  at::Tensor gx = at::empty_like(x);
  at::Tensor col = sums ? at::zeros({B, m, 1}, x.options()) : at::Tensor();
  at::Tensor pt = at::zeros_like(y);  // P^T operand(x)
  for (int64_t i0 = 0; i0 < n; i0 += rows) {
    const int64_t r = std::min(rows, n - i0);
    const CostOperand xb = ox.narrow(i0, r);
    const at::Tensor P = plan(xb.points, y, a.narrow(1, i0, r).contiguous(), b, f.narrow(1, i0, r).contiguous(), g, opt);
    gx.narrow(1, i0, r).copy_(cost_pullback(opt.cost, xb, sums ? P.sum(2, /*keepdim=*/true) : at::Tensor(),
                                            at::bmm(P, oy.rows)));
    if (sums) col += P.sum(1).unsqueeze(-1);
    pt += at::bmm(P.transpose(1, 2), xb.rows);
  }
  return {gx, cost_pullback(opt.cost, oy, col, pt)};
}

// The Sinkhorn divergence's combination, S = cross - (first + second) / 2:
// of the three values, and of their gradients.
at::Tensor debiased(const at::Tensor& cross, const at::Tensor& first, const at::Tensor& second) {
  return cross - 0.5 * (first + second);
}

at::Tensor dot_rows(const at::Tensor& w, const at::Tensor& p) { return (w * p).sum(-1); }

}  // namespace

ForwardResult sinkhorn_value_forward(const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& a_in,
                                     const at::Tensor& b_in, const SolverOptions& opt, bool debias, SolveFn solve) {
  check_args(x_in, y_in, a_in, b_in);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t B = x.size(0), n = x.size(1), m = y.size(1);
  const int64_t P = debias ? 3 : 1;

  at::Tensor n_iter = at::zeros({P, B}, x.options().dtype(at::kInt));
  at::Tensor error = at::zeros({P, B}, x.options());
  at::Tensor f = at::empty({B, n}, x.options());
  at::Tensor g = at::empty({B, m}, x.options());
  at::Tensor f_xx = at::empty({0}, x.options()), g_xx = at::empty({0}, x.options());
  at::Tensor f_yy = at::empty({0}, x.options()), g_yy = at::empty({0}, x.options());
  std::vector<ProblemSet> sets{{x, y, a, b, false, f, g, n_iter[0], error[0]}};
  if (debias) {
    f_xx = at::empty({B, n}, x.options());
    g_xx = at::empty({B, n}, x.options());
    f_yy = at::empty({B, m}, x.options());
    g_yy = at::empty({B, m}, x.options());
    sets.push_back({x, x, a, a, true, f_xx, g_xx, n_iter[1], error[1]});
    sets.push_back({y, y, b, b, true, f_yy, g_yy, n_iter[2], error[2]});
  }
  solve(sets, opt);

  at::Tensor value = dot_rows(a, f) + dot_rows(b, g);
  if (debias) value = debiased(value, dot_rows(a, f_xx + g_xx), dot_rows(b, f_yy + g_yy));
  return {value, f, g, f_xx, g_xx, f_yy, g_yy, n_iter, error};
}

namespace {

void check_backward_args(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                         const at::Tensor& b) {
  check_args(x, y, a, b);
  TORCH_CHECK_VALUE(grad.dim() == 1 && grad.size(0) == x.size(0), "grad must have shape (",
                    x.size(0), ",), got ", grad.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> sinkhorn_value_backward(
    const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& a_in,
    const at::Tensor& b_in, const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx,
    const at::Tensor& g_xx, const at::Tensor& f_yy, const at::Tensor& g_yy, const SolverOptions& opt,
    bool debias, PlanFn plan) {
  check_backward_args(grad, x_in, y_in, a_in, b_in);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();

  const auto grads = [&](const at::Tensor& p, const at::Tensor& q, const at::Tensor& wp,
                         const at::Tensor& wq, const at::Tensor& fp, const at::Tensor& gq) {
    return opt.online ? blocked_plan_gradients(p, q, wp, wq, fp.contiguous(), gq.contiguous(), opt, plan)
                  : plan_gradients(plan(p, q, wp, wq, fp.contiguous(), gq.contiguous(), opt), p, q, opt.cost);
  };
  auto [gx, gy] = grads(x, y, a, b, f, g);
  if (debias) {
    auto [gx1, gx2] = grads(x, x, a, a, f_xx, g_xx);
    auto [gy1, gy2] = grads(y, y, b, b, f_yy, g_yy);
    gx = debiased(gx, gx1, gx2);
    gy = debiased(gy, gy1, gy2);
  }
  const at::Tensor scale = grad.to(x.scalar_type()).view({-1, 1, 1});
  return {gx * scale, gy * scale};
}

ForwardResult sinkhorn_value_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                                 const at::Tensor& b, double eps, c10::string_view cost,
                                 int64_t max_iter, double tol, bool debias, double scaling,
                                 bool online) {
  const char* solver = std::getenv("SINSIM_SOLVER");
  const bool generic = solver != nullptr && std::string(solver) == "generic";
  TORCH_CHECK_VALUE(solver == nullptr || generic || std::string(solver) == "kernel",
                    "SINSIM_SOLVER must be 'kernel' or 'generic', got '", solver, "'");
  TORCH_CHECK_VALUE(!(online && generic), "the online cost mode runs in the CPU kernel only; unset SINSIM_SOLVER");
  return sinkhorn_value_forward(x, y, a, b, solver_options(eps, cost, max_iter, tol, scaling, online), debias,
                                generic ? &solve_generic : &solve_cpu);
}

std::tuple<at::Tensor, at::Tensor> sinkhorn_value_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx,
    const at::Tensor& g_xx, const at::Tensor& f_yy, const at::Tensor& g_yy, double eps,
    c10::string_view cost, bool debias, bool online) {
  return sinkhorn_value_backward(grad, x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy,
                                 solver_options(eps, cost, 1, 0.0, 0.0, online), debias, &plan_cpu);
}

#ifdef SINSIM_WITH_CUDA
ForwardResult sinkhorn_value_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                                  const at::Tensor& b, double eps, c10::string_view cost,
                                  int64_t max_iter, double tol, bool debias, double scaling,
                                  bool online) {
  const CudaKernelChoice choice = cuda_kernel_choice();
  TORCH_CHECK_NOT_IMPLEMENTED(!online || choice.online,
                              "the online cost mode (cost_mode='online') on CUDA runs only when selected with "
                              "SINSIM_CUDA_KERNEL=online (or v2): it awaits its tests on a device; use "
                              "cost_mode='stored' on CUDA, or the CPU");
  // The fused kernel runs plain iterations only. Eps-scaling takes the
  // device-generic solver (about 9x slower per iteration than the fused
  // kernel, docs/performance/gpu.md), or the pass solver when selected; the
  // online mode is the pass solver's, and plain iterations take it too when
  // `passes` is selected.
  SolveFn solve = choice.passes ? &solve_cuda_passes : &solve_cuda;
  if (online) {
    solve = &solve_cuda_passes;
  } else if (scaling > 0.0) {
    solve = choice.scaling ? &solve_cuda_passes : &solve_generic;
  }
  return sinkhorn_value_forward(x, y, a, b, solver_options(eps, cost, max_iter, tol, scaling, online), debias, solve);
}

std::tuple<at::Tensor, at::Tensor> sinkhorn_value_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx,
    const at::Tensor& g_xx, const at::Tensor& f_yy, const at::Tensor& g_yy, double eps,
    c10::string_view cost, bool debias, bool online) {
  const SolverOptions opt = solver_options(eps, cost, 1, 0.0, 0.0, online);
  if (cuda_kernel_choice().backward) {
    check_backward_args(grad, x, y, a, b);
    const at::Tensor xc = x.contiguous();
    if (fused_backward_supported(xc)) {
      const auto c = [](const at::Tensor& t) { return t.contiguous(); };
      return fused_backward_cuda(grad, xc, c(y), c(a), c(b), c(f), c(g), c(f_xx), c(g_xx), c(f_yy), c(g_yy), eps,
                                 opt.cost, debias);
    }
  }
  return sinkhorn_value_backward(grad, x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy, opt, debias, &plan_cuda);
}
#endif

std::vector<std::string> compiled_backends() {
#ifdef SINSIM_WITH_CUDA
  return {"cpu", "cuda"};
#else
  return {"cpu"};
#endif
}

}  // namespace sinsim
