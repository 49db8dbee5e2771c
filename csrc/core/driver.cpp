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

CostKind parse_cost(c10::string_view name) {
  if (name == "sqeuclidean") return CostKind::SqEuclidean;
  if (name == "cosine") return CostKind::Cosine;
  TORCH_CHECK_VALUE(false, "cost must be 'sqeuclidean' or 'cosine', got '", std::string(name), "'");
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

void check_args(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
                double eps) {
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
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0, "eps must be finite and > 0, got ", eps);
}

// value = <P, C(x, y)> with P fixed: its gradient in x and y.
std::tuple<at::Tensor, at::Tensor> plan_gradients(const at::Tensor& P, const at::Tensor& x,
                                                  const at::Tensor& y, CostKind cost) {
  if (cost == CostKind::SqEuclidean) {
    const at::Tensor r = P.sum(2, /*keepdim=*/true);
    const at::Tensor c = P.sum(1).unsqueeze(-1);
    at::Tensor gx = 2.0 * (r * x - at::bmm(P, y));
    at::Tensor gy = 2.0 * (c * y - at::bmm(P.transpose(1, 2), x));
    return {gx, gy};
  }
  // C_ij = 1 - <xh_i, yh_j>:  dC_ij/dx_i = -(I - xh_i xh_i^T) yh_j / |x_i|.
  const at::Tensor nx = x.norm(2, -1, /*keepdim=*/true).clamp_min(1e-30);
  const at::Tensor ny = y.norm(2, -1, /*keepdim=*/true).clamp_min(1e-30);
  const at::Tensor xh = x / nx, yh = y / ny;
  const at::Tensor px = at::bmm(P, yh);
  const at::Tensor py = at::bmm(P.transpose(1, 2), xh);
  at::Tensor gx = -(px - (px * xh).sum(-1, true) * xh) / nx;
  at::Tensor gy = -(py - (py * yh).sum(-1, true) * yh) / ny;
  return {gx, gy};
}

// plan_gradients without the (B, n, m) plan: rows of P in blocks of at most
// kPlanBlockBytes, each giving its rows of grad_x and adding its part of
// P^T x (or P^T xh) and of the column sums.
constexpr int64_t kPlanBlockBytes = 32 << 20;

std::tuple<at::Tensor, at::Tensor> blocked_plan_gradients(const at::Tensor& x, const at::Tensor& y,
                                                          const at::Tensor& a, const at::Tensor& b,
                                                          const at::Tensor& f, const at::Tensor& g,
                                                          const SolverOptions& opt, PlanFn plan) {
  const int64_t B = x.size(0), n = x.size(1), m = y.size(1);
  const int64_t rows = std::max<int64_t>(1, kPlanBlockBytes / (B * m * static_cast<int64_t>(x.element_size())));
  const bool cosine = opt.cost == CostKind::Cosine;
  const at::Tensor nx = x.norm(2, -1, /*keepdim=*/true).clamp_min(1e-30);
  const at::Tensor ny = y.norm(2, -1, /*keepdim=*/true).clamp_min(1e-30);
  const at::Tensor xh = x / nx, yh = y / ny;
  at::Tensor gx = at::empty_like(x);
  at::Tensor col = at::zeros({B, m, 1}, x.options());
  at::Tensor pt = at::zeros_like(y);  // P^T x (sqeuclidean) or P^T xh (cosine)
  for (int64_t i0 = 0; i0 < n; i0 += rows) {
    const int64_t r = std::min(rows, n - i0);
    const at::Tensor xb = x.narrow(1, i0, r).contiguous();
    const at::Tensor P = plan(xb, y, a.narrow(1, i0, r).contiguous(), b, f.narrow(1, i0, r).contiguous(), g, opt);
    if (cosine) {
      const at::Tensor xhb = xh.narrow(1, i0, r), nxb = nx.narrow(1, i0, r);
      const at::Tensor px = at::bmm(P, yh);
      gx.narrow(1, i0, r).copy_(-(px - (px * xhb).sum(-1, true) * xhb) / nxb);
      pt += at::bmm(P.transpose(1, 2), xhb);
    } else {
      gx.narrow(1, i0, r).copy_(2.0 * (P.sum(2, /*keepdim=*/true) * xb - at::bmm(P, y)));
      col += P.sum(1).unsqueeze(-1);
      pt += at::bmm(P.transpose(1, 2), xb);
    }
  }
  if (cosine) return {gx, -(pt - (pt * yh).sum(-1, true) * yh) / ny};
  return {gx, 2.0 * (col * y - pt)};
}

at::Tensor dot_rows(const at::Tensor& w, const at::Tensor& p) { return (w * p).sum(-1); }

}  // namespace

ForwardResult sinkhorn_value_forward(const at::Tensor& x_in, const at::Tensor& y_in,
                                     const at::Tensor& a_in, const at::Tensor& b_in, double eps,
                                     c10::string_view cost, int64_t max_iter, double tol,
                                     bool debias, double scaling, bool online, SolveFn solve) {
  check_args(x_in, y_in, a_in, b_in, eps);
  TORCH_CHECK_VALUE(max_iter >= 1, "max_iter must be >= 1, got ", max_iter);
  TORCH_CHECK_VALUE(std::isfinite(tol), "tol must be finite, got ", tol);
  TORCH_CHECK_VALUE(scaling == 0.0 || (scaling > 0.0 && scaling < 1.0),
                    "scaling must be 0 (no eps-scaling) or strictly between 0 and 1, got ", scaling);
  const SolverOptions opt{eps, parse_cost(cost), max_iter, tol, scaling, online};
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
  if (debias) {
    value = value - 0.5 * (dot_rows(a, f_xx + g_xx) + dot_rows(b, f_yy + g_yy));
  }
  return {value, f, g, f_xx, g_xx, f_yy, g_yy, n_iter, error};
}

namespace {

void check_backward_args(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                         const at::Tensor& b, double eps) {
  check_args(x, y, a, b, eps);
  TORCH_CHECK_VALUE(grad.dim() == 1 && grad.size(0) == x.size(0), "grad must have shape (",
                    x.size(0), ",), got ", grad.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> sinkhorn_value_backward(
    const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& a_in,
    const at::Tensor& b_in, const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx,
    const at::Tensor& g_xx, const at::Tensor& f_yy, const at::Tensor& g_yy, double eps,
    c10::string_view cost, bool debias, bool online, PlanFn plan) {
  check_backward_args(grad, x_in, y_in, a_in, b_in, eps);
  const SolverOptions opt{eps, parse_cost(cost), 1, 0.0};
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();

  const auto grads = [&](const at::Tensor& p, const at::Tensor& q, const at::Tensor& wp,
                         const at::Tensor& wq, const at::Tensor& fp, const at::Tensor& gq) {
    return online ? blocked_plan_gradients(p, q, wp, wq, fp.contiguous(), gq.contiguous(), opt, plan)
                  : plan_gradients(plan(p, q, wp, wq, fp.contiguous(), gq.contiguous(), opt), p, q, opt.cost);
  };
  auto [gx, gy] = grads(x, y, a, b, f, g);
  if (debias) {
    auto [gx1, gx2] = grads(x, x, a, a, f_xx, g_xx);
    auto [gy1, gy2] = grads(y, y, b, b, f_yy, g_yy);
    gx = gx - 0.5 * (gx1 + gx2);
    gy = gy - 0.5 * (gy1 + gy2);
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
  return sinkhorn_value_forward(x, y, a, b, eps, cost, max_iter, tol, debias, scaling, online,
                                generic ? &solve_generic : &solve_cpu);
}

std::tuple<at::Tensor, at::Tensor> sinkhorn_value_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx,
    const at::Tensor& g_xx, const at::Tensor& f_yy, const at::Tensor& g_yy, double eps,
    c10::string_view cost, bool debias, bool online) {
  return sinkhorn_value_backward(grad, x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy, eps, cost, debias,
                                 online, &plan_cpu);
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
  // device-generic solver (checked on an H200 by tests/test_sinkhorn_cuda.py;
  // about 9x slower per iteration than the fused kernel, docs/performance/gpu.md), or
  // the pass solver when selected; the online mode is the pass solver's, and
  // plain iterations take it too when `passes` is selected.
  SolveFn solve = choice.passes ? &solve_cuda_passes : &solve_cuda;
  if (online) {
    solve = &solve_cuda_passes;
  } else if (scaling > 0.0) {
    solve = choice.scaling ? &solve_cuda_passes : &solve_generic;
  }
  return sinkhorn_value_forward(x, y, a, b, eps, cost, max_iter, tol, debias, scaling, online, solve);
}

std::tuple<at::Tensor, at::Tensor> sinkhorn_value_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx,
    const at::Tensor& g_xx, const at::Tensor& f_yy, const at::Tensor& g_yy, double eps,
    c10::string_view cost, bool debias, bool online) {
  if (cuda_kernel_choice().backward) {
    check_backward_args(grad, x, y, a, b, eps);
    const CostKind kind = parse_cost(cost);
    const at::Tensor xc = x.contiguous();
    if (fused_backward_supported(xc)) {
      const auto c = [](const at::Tensor& t) { return t.contiguous(); };
      return fused_backward_cuda(grad, xc, c(y), c(a), c(b), c(f), c(g), c(f_xx), c(g_xx), c(f_yy), c(g_yy), eps,
                                 kind, debias);
    }
  }
  return sinkhorn_value_backward(grad, x, y, a, b, f, g, f_xx, g_xx, f_yy, g_yy, eps, cost, debias,
                                 online, &plan_cuda);
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
