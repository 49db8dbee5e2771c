// CPU back end: log-domain Sinkhorn iterations with at::parallel_for over rows
// (row updates) and over column blocks (column updates).
//
// Each log-sum-exp reads the scaled cost K = -log2(e) C / eps in place, in one
// pass shifted by the previous iteration's value (two passes when that guess
// is off; cpu/loops_impl.h), so an iteration allocates nothing and
// materialises no n x m temporary. The loops are compiled for each
// instruction set (AVX-512, AVX2, baseline/NEON) and picked per call
// (cpu/loops.h: torch's choice, or SINSIM_CPU_CAPABILITY).
#include "core/sinkhorn.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <vector>

#include "cpu/loops.h"

namespace sinsim {
namespace {

using cpu::LoopTable;

// Work (entries of K) below which a loop is not worth splitting across
// threads: 2^16 entries are about 10 us of AVX2 log-sum-exp, a few times the
// cost of a parallel region on an idle machine. On a busy one, a region whose
// thread is descheduled costs a whole scheduler time slice (milliseconds),
// so small problems (n = m = 256) now run their updates on one thread.
constexpr int64_t kParallelWork = 1 << 16;
constexpr int64_t kColumnBlock = 64;

// ------------------------------------------------------------ building blocks

int64_t rows_per_task(int64_t row_len) { return std::max<int64_t>(1, kParallelWork / std::max<int64_t>(row_len, 1)); }

// The operands of the cost for one problem: x (n, d) and y (m, d) as the
// cost reads them (cost_operand: unit rows for the cosine cost), x
// contiguous. y is transposed once so the loops vectorise over columns; its
// rows are padded by 64 bytes so that a panel of them does not map to a
// single L1 set when m * sizeof(T) is a multiple of 4 KiB.
template <typename T>
struct CostOperands {
  at::Tensor xs, yt;
  const T* X;
  const T* Yt;
  int64_t n, m, d, ldy;
  CostKind cost;

  CostOperands(const at::Tensor& x, const at::Tensor& y, CostKind kind) : cost(kind) {
    xs = cost_operand(x, kind).rows.contiguous();
    const at::Tensor ys = cost_operand(y, kind).rows;
    n = xs.size(0);
    m = ys.size(0);
    d = xs.size(1);
    ldy = m + 64 / static_cast<int64_t>(sizeof(T));
    yt = at::empty({d, ldy}, ys.options());
    yt.narrow(1, 0, m).copy_(ys.t());
    X = xs.data_ptr<T>();
    Yt = yt.data_ptr<T>();
  }

  // out (rows, m) = scale * C for the rows [i0, i0 + rows)
  void rows(const LoopTable<T>& loops, int64_t i0, int64_t count, T scale, T* out) const {
    loops.cost_rows(X + i0 * d, count, Yt, ldy, m, d, cost, scale, out);
  }
};

// K = scale * C(x, y) for one problem, stored (n, m).
template <typename T>
void fill_cost(const LoopTable<T>& loops, const CostOperands<T>& ops, T scale, T* K) {
  at::parallel_for(0, ops.n, rows_per_task(ops.m * ops.d), [&](int64_t i0, int64_t i1) {
    ops.rows(loops, i0, i1 - i0, scale, K + i0 * ops.m);
  });
}

template <typename T>
void fill_cost(const LoopTable<T>& loops, const at::Tensor& x, const at::Tensor& y, CostKind cost,
               T scale, T* K) {
  fill_cost<T>(loops, CostOperands<T>(x, y, cost), scale, K);
}

// Where the iterations read the scaled cost K = scale * C: the stored matrix,
// or (online mode) rows recomputed from the points in blocks of kOnlineRows
// whenever a pass needs them, so memory is O((n + m) d) instead of O(n m) at
// the price of d multiply-adds per entry and pass.
constexpr int64_t kOnlineRows = 8;

template <typename T>
struct CostSource {
  const LoopTable<T>& loops;
  const CostOperands<T>& ops;
  T* K;     // stored mode: (n, m); nullptr online
  T scale;  // online mode: the scale of the current stage

  bool online() const { return K == nullptr; }
  // Rows [i0, i0 + count) of K, count <= kOnlineRows when online (computed into buf).
  const T* rows(int64_t i0, int64_t count, T* buf) const {
    if (!online()) return K + i0 * ops.m;
    ops.rows(loops, i0, count, scale, buf);
    return buf;
  }
};

// Row update phi_i = -LSE2_j(kappa_j + K_ij) for all rows (the old phi_i is
// the guess of the shift); returns the row-marginal error
// sum_i a_i |2^(phi_old_i - phi_i) - 1| and overwrites phi.
template <typename T>
T row_update(const CostSource<T>& K, const T* kappa, const T* a, int64_t n, int64_t m, T* phi,
             T* err_rows) {
  at::parallel_for(0, n, rows_per_task(K.online() ? m * K.ops.d : m), [&](int64_t i0, int64_t i1) {
    std::vector<T> buf(K.online() ? kOnlineRows * m : 0);
    for (int64_t r0 = i0; r0 < i1; r0 += kOnlineRows) {
      const int64_t count = std::min(kOnlineRows, i1 - r0);
      const T* rows = K.rows(r0, count, buf.data());
      for (int64_t i = r0; i < r0 + count; ++i) {
        const T updated = -K.loops.row_lse2(rows + (i - r0) * m, kappa, m, -phi[i]);
        err_rows[i] = a[i] > 0 ? a[i] * std::abs(std::expm1((phi[i] - updated) * T(kLn2))) : T(0);
        phi[i] = updated;
      }
    }
  });
  T err = 0;
  for (int64_t i = 0; i < n; ++i) err += err_rows[i];  // fixed order: deterministic
  return err;
}

// Rows per block of the column update's partial sums: a function of n alone,
// so the partial sums add up in the same order for any number of threads.
int64_t col_block_rows(int64_t n) { return std::max<int64_t>(32, (n + 63) / 64); }

// Scratch of the column update, allocated once per problem.
template <typename T>
struct ColumnScratch {
  int64_t block_rows, blocks;
  std::vector<T> partial;  // (blocks, m) partial sums
  std::vector<T> shift;    // (m,) c_j
  std::vector<char> redo;  // (m,) columns for the exact form

  ColumnScratch(int64_t n, int64_t m)
      : block_rows(col_block_rows(n)),
        blocks((n + block_rows - 1) / block_rows),
        partial(blocks * m),
        shift(m),
        redo(m) {}
};

// Column update gamma_j = -LSE2_i(alpha_i + K_ij), shifted by c_j = the old
// -gamma_j (rounded): blocks of rows add their terms 2^(alpha_i + K_ij - c_j)
// into their own partial sums, streaming K row by row; the partial sums are
// added in block order, and the columns whose guess or sum cannot be trusted
// are redone in the exact two-pass form.
template <typename T>
void col_update(const CostSource<T>& K, const T* alpha, int64_t n, int64_t m, T* gamma,
                ColumnScratch<T>& w) {
  const LoopTable<T>& loops = K.loops;
  T* c = w.shift.data();
  char* redo = w.redo.data();
  for (int64_t j = 0; j < m; ++j) {
    c[j] = cpu::lse_shift(-gamma[j]);
    redo[j] = std::isnan(c[j]);
    if (redo[j]) c[j] = T(0);
  }
  T* partial = w.partial.data();
  std::fill(w.partial.begin(), w.partial.end(), T(0));
  const int64_t R = w.block_rows;
  const int64_t work = K.online() ? R * m * K.ops.d : R * m;
  at::parallel_for(0, w.blocks, std::max<int64_t>(1, kParallelWork / work), [&](int64_t b0, int64_t b1) {
    std::vector<T> buf(K.online() ? kOnlineRows * m : 0);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * R, rows = std::min(R, n - i0);
      const int64_t step = K.online() ? kOnlineRows : rows;  // stored: the whole block at once
      for (int64_t r0 = i0; r0 < i0 + rows; r0 += step) {
        const int64_t count = std::min(step, i0 + rows - r0);
        loops.col_sums(K.rows(r0, count, buf.data()), m, alpha + r0, count, m, c, partial + b * m);
      }
    }
  });
  at::parallel_for(0, m, std::max<int64_t>(1, kParallelWork / w.blocks), [&](int64_t j0, int64_t j1) {
    for (int64_t b = 1; b < w.blocks; ++b) {
      const T* pb = partial + b * m;
      for (int64_t j = j0; j < j1; ++j) partial[j] += pb[j];
    }
    for (int64_t j = j0; j < j1; ++j) {
      if (!redo[j] && cpu::sum_is_trusted(partial[j])) {
        gamma[j] = -(c[j] + std::log2(partial[j]));
      } else {
        redo[j] = 1;
      }
    }
  });
  if (std::none_of(redo, redo + m, [](char r) { return r != 0; })) return;
  const int64_t col_blocks = (m + kColumnBlock - 1) / kColumnBlock;
  if (!K.online()) {
    at::parallel_for(0, col_blocks, std::max<int64_t>(1, kParallelWork / (kColumnBlock * n)),
                     [&](int64_t b0, int64_t b1) {
                       T lse[kColumnBlock];
                       for (int64_t blk = b0; blk < b1; ++blk) {
                         const int64_t j0 = blk * kColumnBlock;
                         const int64_t wj = std::min(kColumnBlock, m - j0);
                         if (std::none_of(redo + j0, redo + j0 + wj, [](char r) { return r != 0; })) continue;
                         loops.col_lse2_exact(K.K + j0, m, alpha, n, wj, lse);
                         for (int64_t j = 0; j < wj; ++j) gamma[j0 + j] = -lse[j];
                       }
                     });
    return;
  }
  // Online: the exact form per block of rows, merged across blocks,
  // LSE2(u, v) = max + log2(2^(u - max) + 2^(v - max)) (the rare path).
  std::vector<T> total(m, -std::numeric_limits<T>::infinity()), buf(kOnlineRows * m);
  T lse[kColumnBlock];
  for (int64_t r0 = 0; r0 < n; r0 += kOnlineRows) {
    const int64_t count = std::min(kOnlineRows, n - r0);
    const T* rows = K.rows(r0, count, buf.data());
    for (int64_t blk = 0; blk < col_blocks; ++blk) {
      const int64_t j0 = blk * kColumnBlock;
      const int64_t wj = std::min(kColumnBlock, m - j0);
      if (std::none_of(redo + j0, redo + j0 + wj, [](char r) { return r != 0; })) continue;
      loops.col_lse2_exact(rows + j0, m, alpha + r0, count, wj, lse);
      for (int64_t j = 0; j < wj; ++j) {
        T& t = total[j0 + j];
        const T top = std::max(t, lse[j]);
        if (std::isnan(lse[j]) || std::isnan(t)) {
          t = std::numeric_limits<T>::quiet_NaN();
        } else if (top != -std::numeric_limits<T>::infinity()) {
          t = top + std::log2(std::exp2(t - top) + std::exp2(lse[j] - top));
        }
      }
    }
  }
  for (int64_t j = 0; j < m; ++j)
    if (redo[j]) gamma[j] = -total[j];
}

// Largest cost of a problem, max_ij C_ij = -min_ij K_ij / s (K at scale -s).
template <typename T>
double cost_max(const CostSource<T>& K, int64_t n, int64_t m, T s) {
  const T lowest = at::parallel_reduce(
      0, n, rows_per_task(K.online() ? m * K.ops.d : m), std::numeric_limits<T>::infinity(),
      [&](int64_t i0, int64_t i1, T low) {
        std::vector<T> buf(K.online() ? kOnlineRows * m : 0);
        for (int64_t r0 = i0; r0 < i1; r0 += kOnlineRows) {
          const int64_t count = std::min(kOnlineRows, i1 - r0);
          const T* rows = K.rows(r0, count, buf.data());
          for (int64_t e = 0; e < count * m; ++e) low = std::min(low, rows[e]);
        }
        return low;
      },
      [](T u, T v) { return std::min(u, v); });
  return -static_cast<double>(lowest) / static_cast<double>(s);
}

// K <- factor * K in place (a change of eps-scaling stage, stored mode).
template <typename T>
void scale_in_place(T* K, int64_t count, T factor) {
  at::parallel_for(0, count, kParallelWork, [&](int64_t e0, int64_t e1) {
    for (int64_t e = e0; e < e1; ++e) K[e] *= factor;
  });
}

// One problem of a set, in scaled units; writes f, g, n_iter, error at index bi.
// With eps-scaling (core/sinkhorn.h) the first `stages` iterations run at larger
// eps: K, phi and gamma are held in the units of the current stage.
template <typename T>
void solve_one(const LoopTable<T>& loops, const ProblemSet& set, int64_t bi,
               const SolverOptions& opt) {
  const at::Tensor x = set.x[bi], y = set.y[bi];
  const int64_t n = x.size(0), m = y.size(0);
  const T s = static_cast<T>(kLog2e / opt.eps);

  const CostOperands<T> ops(x, y, opt.cost);
  at::Tensor K_t;
  CostSource<T> K{loops, ops, nullptr, -s};
  if (!opt.online) {
    K_t = at::empty({n, m}, x.options());
    K.K = K_t.data_ptr<T>();
    fill_cost<T>(loops, ops, -s, K.K);
  }
  const int64_t stages = opt.scaling > 0 ? opt.stages(cost_max(K, n, m, s)) : 0;
  const T up = stages > 0 ? static_cast<T>(1.0 / opt.scaling) : T(1);
  if (stages > 0) {
    const T first = static_cast<T>(std::pow(opt.scaling, static_cast<double>(stages)));
    if (K.online()) {
      K.scale = -s * first;
    } else {
      scale_in_place(K.K, n * m, first);
    }
  }
  // After iteration t <= stages: the next one runs at eps * scaling^-(stages - t),
  // so everything in scaled units grows by 1/scaling; the last change refills
  // K at eps exactly instead of accumulating the rescaling's rounding.
  auto next_stage = [&](int64_t t, T* p1, int64_t n1, T* p2, int64_t n2) {
    if (t > stages) return;
    if (K.online()) {
      K.scale = t == stages ? -s : K.scale * up;
    } else if (t == stages) {
      fill_cost<T>(loops, ops, -s, K.K);
    } else {
      scale_in_place(K.K, n * m, up);
    }
    for (int64_t i = 0; i < n1; ++i) p1[i] *= up;
    for (int64_t j = 0; j < n2; ++j) p2[j] *= up;
  };

  at::Tensor la_t = set.a[bi].log2(), lb_t = set.b[bi].log2();
  const T* la = la_t.data_ptr<T>();
  const T* lb = lb_t.data_ptr<T>();
  const T* a = set.a[bi].data_ptr<T>();
  std::vector<T> phi(n, T(0)), gamma(m, T(0)), shifted(std::max(n, m)), err_rows(n);
  std::optional<ColumnScratch<T>> scratch;  // the symmetric update has no column update
  if (!set.symmetric) scratch.emplace(n, m);

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
      if (opt.stops_after(t, stages, KnownError<T>{err})) break;
      for (int64_t j = 0; j < m; ++j) gamma[j] = T(0.5) * (gamma[j] + phi[j]);
      next_stage(t, gamma.data(), m, nullptr, 0);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) shifted[i] = la[i];  // alpha = la + phi, phi = 0
    col_update(K, shifted.data(), n, m, gamma.data(), *scratch);
    for (int64_t t = 1; t <= opt.max_iter; ++t) {
      for (int64_t j = 0; j < m; ++j) shifted[j] = lb[j] + gamma[j];
      err = row_update(K, shifted.data(), a, n, m, phi.data(), err_rows.data());
      iters = t;
      if (opt.stops_after(t, stages, KnownError<T>{err})) break;
      next_stage(t, phi.data(), n, gamma.data(), m);
      for (int64_t i = 0; i < n; ++i) shifted[i] = la[i] + phi[i];
      col_update(K, shifted.data(), n, m, gamma.data(), *scratch);
    }
  }
  for (int64_t i = 0; i < n; ++i) f_out[i] = phi[i] / s;
  for (int64_t j = 0; j < m; ++j) g_out[j] = gamma[j] / s;
  set.n_iter.data_ptr<int32_t>()[bi * set.n_iter.stride(0)] = static_cast<int32_t>(iters);
  set.error.data_ptr<T>()[bi * set.error.stride(0)] = err;
}

template <typename T>
void solve_set(const LoopTable<T>& loops, const ProblemSet& set, const SolverOptions& opt) {
  const int64_t B = set.x.size(0), n = set.x.size(1), m = set.y.size(1);
  // Many small problems: one thread per problem (nested parallel_for runs inline).
  const bool across_batch = B > 1 && n * m <= kParallelWork * 2;
  if (across_batch) {
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; ++bi) solve_one<T>(loops, set, bi, opt);
    });
  } else {
    for (int64_t bi = 0; bi < B; ++bi) solve_one<T>(loops, set, bi, opt);
  }
}

void check_cpu(const ProblemSet& set) {
  TORCH_CHECK_VALUE(set.x.device().is_cpu() && set.y.device().is_cpu(),
                    "the CPU back end got tensors on ", set.x.device());
}

}  // namespace

void solve_cpu(std::vector<ProblemSet>& sets, const SolverOptions& opt) {
  const cpu::Loops& loops = cpu::active_loops();
  for (const ProblemSet& set : sets) {
    check_cpu(set);
    AT_DISPATCH_FLOATING_TYPES(set.x.scalar_type(), "sinkhorn_solve_cpu",
                               [&] { solve_set<scalar_t>(loops.get<scalar_t>(), set, opt); });
  }
}

at::Tensor plan_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a,
                    const at::Tensor& b, const at::Tensor& f, const at::Tensor& g,
                    const SolverOptions& opt) {
  const int64_t B = x.size(0), n = x.size(1), m = y.size(1);
  at::Tensor P = at::empty({B, n, m}, x.options());
  const cpu::Loops& all_loops = cpu::active_loops();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sinkhorn_plan_cpu", [&] {
    using T = scalar_t;
    const LoopTable<T>& loops = all_loops.get<T>();
    const T s = static_cast<T>(kLog2e / opt.eps);
    // P_ij = 2^(u_i + w_j - s C_ij), u = log2 a + s f, w = log2 b + s g.
    const at::Tensor u_t = (a.log2() + f * s).contiguous();
    const at::Tensor w_t = (b.log2() + g * s).contiguous();
    for (int64_t bi = 0; bi < B; ++bi) {
      T* Pb = P.data_ptr<T>() + bi * n * m;
      fill_cost<T>(loops, x[bi], y[bi], opt.cost, -s, Pb);
      const T* u = u_t.data_ptr<T>() + bi * n;
      const T* w = w_t.data_ptr<T>() + bi * m;
      at::parallel_for(0, n, rows_per_task(m), [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) loops.plan_row(Pb + i * m, w, u[i], m);
      });
    }
  });
  return P;
}

}  // namespace sinsim
