// CPU back end: log-domain Sinkhorn iterations with at::parallel_for over rows
// (row updates) and over column blocks (column updates).
//
// Each log-sum-exp is fused: one pass for the maximum, one pass summing
// 2^(v - max), reading the scaled cost K = -log2(e) C / eps in place, so an
// iteration allocates nothing and materialises no n x m temporary. The hot
// loops are compiled for AVX-512, AVX2 and baseline x86-64 (GCC target_clones;
// the loader picks the best one the machine has).
#include "sinkhorn.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "fast_exp2.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && (__GNUC__ >= 11)
#define SINSIM_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SINSIM_SIMD_CLONES
#endif

namespace sinsim {
namespace {

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;
// Work (entries of K) below which a loop is not worth splitting across threads.
constexpr int64_t kParallelWork = 1 << 15;
constexpr int64_t kColumnBlock = 64;

// ---------------------------------------------------------------- hot loops

// max_j v_j and sum_j 2^(v_j - max) for v_j = kappa_j + K_j.
template <typename T>
inline void row_lse_impl(const T* __restrict K, const T* __restrict kappa, int64_t m, T* max_out,
                         T* sum_out) {
  T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < m; ++j) {
    const T v = kappa[j] + K[j];
    mx = v > mx ? v : mx;
  }
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < m; ++j) s += exp2_fast(kappa[j] + K[j] - mx);
  *max_out = mx;
  *sum_out = s;
}

// Per column j of a block of width w: M_j = max_i v_ij, S_j = sum_i 2^(v_ij - M_j)
// for v_ij = alpha_i + K_ij, rows i in [0, n) with leading dimension ld.
template <typename T>
inline void col_lse_impl(const T* __restrict K, int64_t ld, const T* __restrict alpha, int64_t n,
                         int64_t w, T* __restrict M, T* __restrict S) {
  for (int64_t j = 0; j < w; ++j) {
    M[j] = -std::numeric_limits<T>::infinity();
    S[j] = 0;
  }
  for (int64_t i = 0; i < n; ++i) {
    const T ai = alpha[i];
    const T* __restrict Ki = K + i * ld;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) {
      const T v = ai + Ki[j];
      M[j] = v > M[j] ? v : M[j];
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const T ai = alpha[i];
    const T* __restrict Ki = K + i * ld;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j) S[j] += exp2_fast(ai + Ki[j] - M[j]);
  }
}

// out_j = scale * c(x_i, y_j) for one row; rows of Y are contiguous, length d.
// Cosine expects unit-norm rows and computes 1 - <x_i, y_j>.
template <typename T>
inline void cost_row_impl(const T* __restrict xi, const T* __restrict Y, int64_t m, int64_t d,
                          bool cosine, T scale, T* __restrict out) {
  for (int64_t j = 0; j < m; ++j) {
    const T* __restrict yj = Y + j * d;
    T acc = 0;
    if (cosine) {
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < d; ++k) acc += xi[k] * yj[k];
      out[j] = scale * (T(1) - acc);
    } else {
#pragma omp simd reduction(+ : acc)
      for (int64_t k = 0; k < d; ++k) {
        const T t = xi[k] - yj[k];
        acc += t * t;
      }
      out[j] = scale * acc;
    }
  }
}

// P_j = 2^(u + w_j + K_j) in place over a row of K.
template <typename T>
inline void plan_row_impl(T* __restrict K, const T* __restrict w, T u, int64_t m) {
#pragma omp simd
  for (int64_t j = 0; j < m; ++j) K[j] = exp2_fast(u + w[j] + K[j]);
}

SINSIM_SIMD_CLONES void row_lse(const float* K, const float* kappa, int64_t m, float* mx, float* s) {
  row_lse_impl(K, kappa, m, mx, s);
}
void row_lse(const double* K, const double* kappa, int64_t m, double* mx, double* s) {
  row_lse_impl(K, kappa, m, mx, s);
}
SINSIM_SIMD_CLONES void col_lse(const float* K, int64_t ld, const float* alpha, int64_t n, int64_t w,
                                float* M, float* S) {
  col_lse_impl(K, ld, alpha, n, w, M, S);
}
void col_lse(const double* K, int64_t ld, const double* alpha, int64_t n, int64_t w, double* M,
             double* S) {
  col_lse_impl(K, ld, alpha, n, w, M, S);
}
SINSIM_SIMD_CLONES void cost_row(const float* xi, const float* Y, int64_t m, int64_t d, bool cosine,
                                 float scale, float* out) {
  cost_row_impl(xi, Y, m, d, cosine, scale, out);
}
void cost_row(const double* xi, const double* Y, int64_t m, int64_t d, bool cosine, double scale,
              double* out) {
  cost_row_impl(xi, Y, m, d, cosine, scale, out);
}
SINSIM_SIMD_CLONES void plan_row(float* K, const float* w, float u, int64_t m) {
  plan_row_impl(K, w, u, m);
}
void plan_row(double* K, const double* w, double u, int64_t m) { plan_row_impl(K, w, u, m); }

// ------------------------------------------------------------ building blocks

int64_t rows_per_task(int64_t row_len) { return std::max<int64_t>(1, kParallelWork / std::max<int64_t>(row_len, 1)); }

at::Tensor unit_rows(const at::Tensor& p) {
  return p / p.norm(2, -1, /*keepdim=*/true).clamp_min(1e-30);
}

// K = scale * C(x, y) for one problem: x (n, d), y (m, d) contiguous.
template <typename T>
void fill_cost(const at::Tensor& x, const at::Tensor& y, CostKind cost, T scale, T* K) {
  const bool cosine = cost == CostKind::Cosine;
  const at::Tensor xs = cosine ? unit_rows(x).contiguous() : x;
  const at::Tensor ys = cosine ? unit_rows(y).contiguous() : y;
  const int64_t n = xs.size(0), m = ys.size(0), d = xs.size(1);
  const T* X = xs.data_ptr<T>();
  const T* Y = ys.data_ptr<T>();
  at::parallel_for(0, n, rows_per_task(m * d), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) cost_row(X + i * d, Y, m, d, cosine, scale, K + i * m);
  });
}

// Row update phi_i = -LSE2_j(kappa_j + K_ij) for all rows; returns the
// row-marginal error sum_i a_i |2^(phi_old_i - phi_i) - 1| and overwrites phi.
template <typename T>
T row_update(const T* K, const T* kappa, const T* a, int64_t n, int64_t m, T* phi, T* err_rows) {
  at::parallel_for(0, n, rows_per_task(m), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T mx, s;
      row_lse(K + i * m, kappa, m, &mx, &s);
      const T updated = -(mx + std::log2(s));
      err_rows[i] = a[i] > 0 ? a[i] * std::abs(std::expm1((phi[i] - updated) * T(kLn2))) : T(0);
      phi[i] = updated;
    }
  });
  T err = 0;
  for (int64_t i = 0; i < n; ++i) err += err_rows[i];  // fixed order: deterministic
  return err;
}

// Column update gamma_j = -LSE2_i(alpha_i + K_ij).
template <typename T>
void col_update(const T* K, const T* alpha, int64_t n, int64_t m, T* gamma) {
  const int64_t blocks = (m + kColumnBlock - 1) / kColumnBlock;
  const int64_t grain = std::max<int64_t>(1, kParallelWork / (kColumnBlock * n));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    T M[kColumnBlock], S[kColumnBlock];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = blk * kColumnBlock;
      const int64_t w = std::min(kColumnBlock, m - j0);
      col_lse(K + j0, m, alpha, n, w, M, S);
      for (int64_t j = 0; j < w; ++j) gamma[j0 + j] = -(M[j] + std::log2(S[j]));
    }
  });
}

// One problem of a set, in scaled units; writes f, g, n_iter, error at index bi.
template <typename T>
void solve_one(const ProblemSet& set, int64_t bi, const SolverOptions& opt) {
  const at::Tensor x = set.x[bi], y = set.y[bi];
  const int64_t n = x.size(0), m = y.size(0);
  const T s = static_cast<T>(kLog2e / opt.eps);
  const bool stop_on_tol = opt.tol > 0;

  at::Tensor K_t = at::empty({n, m}, x.options());
  T* K = K_t.data_ptr<T>();
  fill_cost<T>(x, y, opt.cost, -s, K);

  at::Tensor la_t = set.a[bi].log2(), lb_t = set.b[bi].log2();
  const T* la = la_t.data_ptr<T>();
  const T* lb = lb_t.data_ptr<T>();
  const T* a = set.a[bi].data_ptr<T>();
  std::vector<T> phi(n, T(0)), gamma(m, T(0)), shifted(std::max(n, m)), err_rows(n);

  T* f_out = set.f.data_ptr<T>() + bi * n;
  T* g_out = set.g.data_ptr<T>() + bi * m;
  int64_t iters = 0;
  T err = std::numeric_limits<T>::infinity();

  if (set.symmetric) {
    // p lives in gamma (the column potential); the row update gives T(p) in phi.
    for (int64_t t = 1; t <= opt.max_iter; ++t) {
      for (int64_t j = 0; j < m; ++j) shifted[j] = la[j] + gamma[j];
      std::copy(gamma.begin(), gamma.end(), phi.begin());  // phi_old = p for the error
      err = row_update(K, shifted.data(), a, n, m, phi.data(), err_rows.data());
      iters = t;
      if (t == opt.max_iter || (stop_on_tol && err < opt.tol)) break;
      for (int64_t j = 0; j < m; ++j) gamma[j] = T(0.5) * (gamma[j] + phi[j]);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) shifted[i] = la[i];  // alpha = la + phi, phi = 0
    col_update(K, shifted.data(), n, m, gamma.data());
    for (int64_t t = 1; t <= opt.max_iter; ++t) {
      for (int64_t j = 0; j < m; ++j) shifted[j] = lb[j] + gamma[j];
      err = row_update(K, shifted.data(), a, n, m, phi.data(), err_rows.data());
      iters = t;
      if (t == opt.max_iter || (stop_on_tol && err < opt.tol)) break;
      for (int64_t i = 0; i < n; ++i) shifted[i] = la[i] + phi[i];
      col_update(K, shifted.data(), n, m, gamma.data());
    }
  }
  for (int64_t i = 0; i < n; ++i) f_out[i] = phi[i] / s;
  for (int64_t j = 0; j < m; ++j) g_out[j] = gamma[j] / s;
  set.n_iter.data_ptr<int32_t>()[bi * set.n_iter.stride(0)] = static_cast<int32_t>(iters);
  set.error.data_ptr<T>()[bi * set.error.stride(0)] = err;
}

template <typename T>
void solve_set(const ProblemSet& set, const SolverOptions& opt) {
  const int64_t B = set.x.size(0), n = set.x.size(1), m = set.y.size(1);
  // Many small problems: one thread per problem (nested parallel_for runs inline).
  const bool across_batch = B > 1 && n * m <= kParallelWork * 2;
  if (across_batch) {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; ++bi) solve_one<T>(set, bi, opt);
    });
  } else {
    for (int64_t bi = 0; bi < B; ++bi) solve_one<T>(set, bi, opt);
  }
}

void check_cpu(const ProblemSet& set) {
  TORCH_CHECK_VALUE(set.x.device().is_cpu() && set.y.device().is_cpu(),
                    "the CPU back end got tensors on ", set.x.device());
}

}  // namespace

void solve_cpu(std::vector<ProblemSet>& sets, const SolverOptions& opt) {
  for (const ProblemSet& set : sets) {
    check_cpu(set);
    AT_DISPATCH_FLOATING_TYPES(set.x.scalar_type(), "sinkhorn_solve_cpu",
                               [&] { solve_set<scalar_t>(set, opt); });
  }
}

at::Tensor plan_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g,
                    const SolverOptions& opt) {
  const int64_t B = x.size(0), n = x.size(1), m = y.size(1);
  at::Tensor P = at::empty({B, n, m}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sinkhorn_plan_cpu", [&] {
    using T = scalar_t;
    const T s = static_cast<T>(kLog2e / opt.eps);
    // P_ij = 2^(u_i + w_j - s C_ij), u = log2 a + s f, w = log2 b + s g.
    const at::Tensor u_t = (a.log2() + f * s).contiguous();
    const at::Tensor w_t = (b.log2() + g * s).contiguous();
    for (int64_t bi = 0; bi < B; ++bi) {
      T* Pb = P.data_ptr<T>() + bi * n * m;
      fill_cost<T>(x[bi], y[bi], opt.cost, -s, Pb);
      const T* u = u_t.data_ptr<T>() + bi * n;
      const T* w = w_t.data_ptr<T>() + bi * m;
      at::parallel_for(0, n, rows_per_task(m), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) plan_row(Pb + i * m, w, u[i], m);
      });
    }
  });
  return P;
}

}  // namespace sinsim
