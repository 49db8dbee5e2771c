// Runs the per-thread steps of the tiled CUDA kernels (csrc/cuda/tiles.h) on
// the CPU, thread by thread, in the order the kernels run them. Built and run
// by tests/test_cuda_tiles.py, in two modes:
//   no arguments: compares the steps with direct double-precision loops;
//     prints one "name max_relative_error" line per check and "stages ..."
//     lines for the eps-scaling schedule;
//   "solve": reads one problem from stdin and runs the pass solver
//     (csrc/cuda/pass_solver.cu) on it: its passes, merges, per-problem finish
//     and stage count, in double; prints n_iter, error, f and g (the test
//     compares them with the CPU kernel).
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <vector>

#include "cuda/tiles.h"

using namespace sinsim;
using namespace sinsim::tiles;
using Vec = std::vector<double>;

// The cost table's entry (csrc/core/cost_table.h) the kernels are instantiated with.
template <bool kCosine>
using CostFor = Cost<kCosine ? CostKind::Cosine : CostKind::SqEuclidean>;

namespace {

struct Exp2Host {
  double operator()(double v) const { return std::exp2(v); }
};

Vec random_vec(std::mt19937_64& rng, int count, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  Vec v(count);
  for (double& e : v) e = u(rng);
  return v;
}

void normalise_rows(Vec& p, int n, int d) {
  for (int i = 0; i < n; ++i) {
    double s = 0;
    for (int k = 0; k < d; ++k) s += p[i * d + k] * p[i * d + k];
    s = std::sqrt(s);
    for (int k = 0; k < d; ++k) p[i * d + k] /= s;
  }
}

double direct_cost(const Vec& p, int i, const Vec& q, int j, int d, bool cosine) {
  double acc = 0;
  for (int k = 0; k < d; ++k) {
    acc += cosine ? p[i * d + k] * q[j * d + k] : (p[i * d + k] - q[j * d + k]) * (p[i * d + k] - q[j * d + k]);
  }
  return cosine ? 1 - acc : acc;
}

double max_rel(const Vec& got, const Vec& want) {
  double top = 0, scale = 1e-300;
  for (size_t e = 0; e < got.size(); ++e) {
    top = std::max(top, std::abs(got[e] - want[e]));
    scale = std::max(scale, std::abs(want[e]));
  }
  return top / scale;
}

// csrc/cuda/fused_backward.cu's block loop for one term, one batch element:
// G_i = 2 (r_i p_i - (P q)_i) or the cosine form, for every row of p.
template <bool kCosine, int DMAX>
Vec emulate_backward(const Vec& p, int n_p, const Vec& q, int n_q, int d, const Vec& u, const Vec& w, double s,
                     const Vec& norms) {
  constexpr int KREPS = DMAX / kSide;
  Vec out(static_cast<size_t>(n_p) * d, std::nan(""));
  Vec ps(d * kLdp), qs(d * kLdq), Ps(kRows * kLdq), us(kRows), ws(kCols);
  for (int row0 = 0; row0 < n_p; row0 += kRows) {
    for (int tid = 0; tid < kThreads; ++tid) stage_rows(tid, p.data(), row0, kRows, n_p, 0, d, d, ps.data(), kLdp);
    for (int r = 0; r < kRows; ++r) us[r] = row0 + r < n_p ? u[row0 + r] : minus_infinity<double>();
    std::vector<double[kRowReps]> rsum(kThreads);
    std::vector<double[kRowReps][KREPS]> prod(kThreads);
    for (int tid = 0; tid < kThreads; ++tid)
      for (int r = 0; r < kRowReps; ++r) {
        rsum[tid][r] = 0;
        for (int k = 0; k < KREPS; ++k) prod[tid][r][k] = 0;
      }
    for (int j0 = 0; j0 < n_q; j0 += kCols) {
      for (int tid = 0; tid < kThreads; ++tid) stage_rows(tid, q.data(), j0, kCols, n_q, 0, d, d, qs.data(), kLdq);
      for (int c = 0; c < kCols; ++c) ws[c] = j0 + c < n_q ? w[j0 + c] : minus_infinity<double>();
      for (int tid = 0; tid < kThreads; ++tid) {
        double acc[kRowReps][kColReps] = {};
        add_cost<double, CostFor<kCosine>>(tid, ps.data(), qs.data(), d, acc);
        plan_tile<double, CostFor<kCosine>>(tid, acc, us.data(), ws.data(), s, Ps.data(), rsum[tid], Exp2Host());
      }
      for (int tid = 0; tid < kThreads; ++tid)
        add_product<double, KREPS>(tid, Ps.data(), qs.data(), std::min(kCols, n_q - j0), d, prod[tid]);
    }
    for (int tid = 0; tid < kThreads; ++tid) {
      for (int r = 0; r < kRowReps; ++r) {
        const int row = row_of(tid, r), i = row0 + row;
        double rs = 0, dot = 0;  // the kernel's sums over the 16 threads of a grid row
        for (int other = 0; other < kThreads; ++other) {
          if (other / kSide != tid / kSide) continue;
          rs += rsum[other][r];
          for (int k = 0; k < KREPS; ++k) {
            const int f = feature_of(other, k);
            if (f < d) dot += prod[other][r][k] * ps[f * kLdp + row];
          }
        }
        if (i >= n_p) continue;
        for (int k = 0; k < KREPS; ++k) {
          const int f = feature_of(tid, k);
          if (f >= d) continue;
          const double pf = ps[f * kLdp + row];
          const double g = kCosine ? -(prod[tid][r][k] - dot * pf) / norms[i] : 2 * (rs * pf - prod[tid][r][k]);
          double& o = out[static_cast<size_t>(i) * d + f];
          if (!std::isnan(o)) {
            std::printf("error: output (%d, %d) written twice\n", i, f);
            return {};
          }
          o = g;
        }
      }
    }
  }
  return out;
}

Vec direct_backward(const Vec& p, int n_p, const Vec& q, int n_q, int d, const Vec& u, const Vec& w, double s,
                    const Vec& norms, bool cosine) {
  Vec out(static_cast<size_t>(n_p) * d, 0.0);
  for (int i = 0; i < n_p; ++i) {
    double r = 0;
    Vec v(d, 0.0);
    for (int j = 0; j < n_q; ++j) {
      const double P = std::exp2(u[i] + w[j] - s * direct_cost(p, i, q, j, d, cosine));
      r += P;
      for (int k = 0; k < d; ++k) v[k] += P * q[j * d + k];
    }
    double dot = 0;
    for (int k = 0; k < d; ++k) dot += v[k] * p[i * d + k];
    for (int k = 0; k < d; ++k)
      out[i * d + k] = cosine ? -(v[k] - dot * p[i * d + k]) / norms[i] : 2 * (r * p[i * d + k] - v[k]);
  }
  return out;
}

// csrc/cuda/pass_solver.cu's online row pass for one problem:
// out_i = -LSE2_j(kap_j + scale * C_ij), the features staged kChunk at a time.
template <bool kCosine>
Vec emulate_lse_pass(const Vec& p, int n_p, const Vec& q, int n_q, int d, const Vec& kap, double scale) {
  Vec out(n_p, std::nan(""));
  Vec ps(kChunk * kLdp), qs(kChunk * kLdq), ks(kCols);
  for (int row0 = 0; row0 < n_p; row0 += kRows) {
    std::vector<double[kRowReps]> mx(kThreads), sm(kThreads);
    for (int tid = 0; tid < kThreads; ++tid)
      for (int r = 0; r < kRowReps; ++r) {
        mx[tid][r] = minus_infinity<double>();
        sm[tid][r] = 0;
      }
    for (int j0 = 0; j0 < n_q; j0 += kCols) {
      const int cols = std::min(kCols, n_q - j0);
      for (int c = 0; c < kCols; ++c) ks[c] = c < cols ? kap[j0 + c] : minus_infinity<double>();
      std::vector<double[kRowReps][kColReps]> acc(kThreads);
      for (int tid = 0; tid < kThreads; ++tid)
        for (int r = 0; r < kRowReps; ++r)
          for (int c = 0; c < kColReps; ++c) acc[tid][r][c] = 0;
      for (int k0 = 0; k0 < d; k0 += kChunk) {
        const int width = std::min(kChunk, d - k0);
        for (int tid = 0; tid < kThreads; ++tid) {
          stage_rows(tid, p.data(), row0, kRows, n_p, k0, width, d, ps.data(), kLdp);
          stage_rows(tid, q.data(), j0, kCols, n_q, k0, width, d, qs.data(), kLdq);
        }
        for (int tid = 0; tid < kThreads; ++tid) add_cost<double, CostFor<kCosine>>(tid, ps.data(), qs.data(), width, acc[tid]);
      }
      for (int tid = 0; tid < kThreads; ++tid)
        for (int r = 0; r < kRowReps; ++r) {
          double v[kColReps];
          for (int c = 0; c < kColReps; ++c) {
            const int col = col_of(tid, c);
            v[c] = col < cols ? ks[col] + scale * CostFor<kCosine>::finish(acc[tid][r][c]) : minus_infinity<double>();
          }
          lse_add(v, mx[tid][r], sm[tid][r], Exp2Host());
        }
    }
    for (int tid = 0; tid < kThreads; tid += kSide)
      for (int r = 0; r < kRowReps; ++r) {
        double m = minus_infinity<double>(), s = 0;
        for (int lane = 0; lane < kSide; ++lane) lse_merge(m, s, mx[tid + lane][r], sm[tid + lane][r], Exp2Host());
        const int i = row0 + row_of(tid, r);
        if (i < n_p) out[i] = -(m + std::log2(s));
      }
  }
  return out;
}

Vec direct_lse(const Vec& p, int n_p, const Vec& q, int n_q, int d, const Vec& kap, double scale, bool cosine) {
  Vec out(n_p);
  for (int i = 0; i < n_p; ++i) {
    double top = -INFINITY;
    Vec v(n_q);
    for (int j = 0; j < n_q; ++j) {
      v[j] = kap[j] + scale * direct_cost(p, i, q, j, d, cosine);
      top = std::max(top, v[j]);
    }
    double s = 0;
    for (int j = 0; j < n_q; ++j) s += std::exp2(v[j] - top);
    out[i] = -(top + std::log2(s));
  }
  return out;
}

template <bool kCosine, int DMAX>
void check_backward(std::mt19937_64& rng, int n_p, int n_q, int d) {
  const double reach = std::sqrt(3.0 / d);  // points of norm about 1: costs of order 1
  Vec p = random_vec(rng, n_p * d, -reach, reach), q = random_vec(rng, n_q * d, -reach, reach);
  Vec norms(n_p, 1.0);
  if (kCosine) {
    for (int i = 0; i < n_p; ++i) {
      double s = 0;
      for (int k = 0; k < d; ++k) s += p[i * d + k] * p[i * d + k];
      norms[i] = std::sqrt(s) * 1.7;  // any positive norms: the raw points' lengths
    }
    normalise_rows(p, n_p, d);
    normalise_rows(q, n_q, d);
  }
  // potentials that give plan entries of both sizes, some weights zero
  const double s = 1.4426950408889634 / 0.3;
  Vec u = random_vec(rng, n_p, -8, -2), w = random_vec(rng, n_q, -8, 2);
  u[n_p / 2] = -INFINITY;
  w[n_q / 3] = -INFINITY;
  const Vec got = emulate_backward<kCosine, DMAX>(p, n_p, q, n_q, d, u, w, s, norms);
  const Vec want = direct_backward(p, n_p, q, n_q, d, u, w, s, norms, kCosine);
  std::printf("backward_%s_n%d_m%d_d%d_dmax%d %.3e\n", kCosine ? "cosine" : "sqeuclidean", n_p, n_q, d, DMAX,
              got.empty() ? 1.0 : max_rel(got, want));
}

template <bool kCosine>
void check_lse_pass(std::mt19937_64& rng, int n_p, int n_q, int d) {
  const double reach = std::sqrt(3.0 / d);
  Vec p = random_vec(rng, n_p * d, -reach, reach), q = random_vec(rng, n_q * d, -reach, reach);
  if (kCosine) {
    normalise_rows(p, n_p, d);
    normalise_rows(q, n_q, d);
  }
  Vec kap = random_vec(rng, n_q, -30, 30);
  kap[n_q - 1] = -INFINITY;
  const double scale = -1.4426950408889634 / 0.05;
  const Vec got = emulate_lse_pass<kCosine>(p, n_p, q, n_q, d, kap, scale);
  const Vec want = direct_lse(p, n_p, q, n_q, d, kap, scale, kCosine);
  std::printf("lse_pass_%s_n%d_m%d_d%d %.3e\n", kCosine ? "cosine" : "sqeuclidean", n_p, n_q, d, max_rel(got, want));
}

void check_block_locations() {
  // every (batch, task, row block) exactly once, in order
  const int row_blocks[3] = {3, 1, 5};
  int expected = 0, bad = 0;
  for (int b = 0; b < 4; ++b)
    for (int t = 0; t < 3; ++t)
      for (int rb = 0; rb < row_blocks[t]; ++rb) {
        const BlockSpot s = locate_block(expected++, row_blocks, 3);
        bad += s.batch != b || s.task != t || s.row0 != rb * kRows;
      }
  std::printf("block_locations %d\n", bad);
}


// ------------------------------------------------------------ the pass solver

// The cost matrix C (n_p x n_q) as the kernels form it: staged tiles, the
// features kChunk at a time, thread by thread.
template <bool kCosine>
Vec tile_costs(const Vec& p, int n_p, const Vec& q, int n_q, int d) {
  Vec C(static_cast<size_t>(n_p) * n_q);
  Vec ps(kChunk * kLdp), qs(kChunk * kLdq);
  for (int row0 = 0; row0 < n_p; row0 += kRows)
    for (int j0 = 0; j0 < n_q; j0 += kCols) {
      std::vector<double[kRowReps][kColReps]> acc(kThreads);
      for (int tid = 0; tid < kThreads; ++tid)
        for (int r = 0; r < kRowReps; ++r)
          for (int c = 0; c < kColReps; ++c) acc[tid][r][c] = 0;
      for (int k0 = 0; k0 < d; k0 += kChunk) {
        const int width = std::min(kChunk, d - k0);
        for (int tid = 0; tid < kThreads; ++tid) {
          stage_rows(tid, p.data(), row0, kRows, n_p, k0, width, d, ps.data(), kLdp);
          stage_rows(tid, q.data(), j0, kCols, n_q, k0, width, d, qs.data(), kLdq);
        }
        for (int tid = 0; tid < kThreads; ++tid) add_cost<double, CostFor<kCosine>>(tid, ps.data(), qs.data(), width, acc[tid]);
      }
      for (int tid = 0; tid < kThreads; ++tid)
        for (int r = 0; r < kRowReps; ++r)
          for (int c = 0; c < kColReps; ++c) {
            const int i = row0 + row_of(tid, r), j = j0 + col_of(tid, c);
            if (i < n_p && j < n_q) C[static_cast<size_t>(i) * n_q + j] = CostFor<kCosine>::finish(acc[tid][r][c]);
          }
    }
  return C;
}

// One pass: for every row i of X (n_p x n_q), the merged (max, sum) of
// kap_j + scale X_ij over the tiles of 64 columns, per thread then over the
// 16 threads of a grid row in the order of the kernel's xor shuffles; with
// `minimum`, min_j (kap_j + scale X_ij) instead.
void emulate_pass(const Vec& X, int n_p, int n_q, const Vec& kap, double scale, bool minimum, Vec& mx_out, Vec& sm_out) {
  mx_out.assign(n_p, 0);
  sm_out.assign(n_p, 0);
  for (int row0 = 0; row0 < n_p; row0 += kRows) {
    std::vector<std::array<double, kRowReps>> mx(kThreads), sm(kThreads);
    for (int tid = 0; tid < kThreads; ++tid)
      for (int r = 0; r < kRowReps; ++r) {
        mx[tid][r] = minimum ? INFINITY : -INFINITY;
        sm[tid][r] = 0;
      }
    for (int j0 = 0; j0 < n_q; j0 += kCols) {
      const int cols = std::min(kCols, n_q - j0);
      for (int tid = 0; tid < kThreads; ++tid)
        for (int r = 0; r < kRowReps; ++r) {
          const int i = row0 + row_of(tid, r);
          double v[kColReps];
          for (int c = 0; c < kColReps; ++c) {
            const int col = col_of(tid, c);
            const double x = (i < n_p && col < cols) ? X[static_cast<size_t>(i) * n_q + j0 + col] : 0.0;
            v[c] = col < cols ? (minimum ? 0.0 : kap[j0 + col]) + scale * x : -INFINITY;
          }
          if (minimum) {
            for (int c = 0; c < kColReps; ++c)
              if (col_of(tid, c) < cols) mx[tid][r] = std::min(mx[tid][r], v[c]);
          } else {
            lse_add(v, mx[tid][r], sm[tid][r], Exp2Host());
          }
        }
    }
    for (int o = kSide / 2; o > 0; o >>= 1) {
      auto mx2 = mx;
      auto sm2 = sm;
      for (int tid = 0; tid < kThreads; ++tid)
        for (int r = 0; r < kRowReps; ++r) {
          const int other = tid ^ o;
          if (minimum) {
            mx2[tid][r] = std::min(mx[tid][r], mx[other][r]);
          } else {
            lse_merge(mx2[tid][r], sm2[tid][r], mx[other][r], sm[other][r], Exp2Host());
          }
        }
      mx = mx2;
      sm = sm2;
    }
    for (int tid = 0; tid < kThreads; tid += kSide)
      for (int r = 0; r < kRowReps; ++r) {
        const int i = row0 + row_of(tid, r);
        if (i < n_p) {
          mx_out[i] = mx[tid][r];
          sm_out[i] = sm[tid][r];
        }
      }
  }
}

Vec transpose(const Vec& X, int rows, int cols) {
  Vec T(X.size());
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) T[static_cast<size_t>(j) * rows + i] = X[static_cast<size_t>(i) * cols + j];
  return T;
}

// csrc/cuda/pass_solver.cu's run() for one problem, in double.
template <bool kCosine>
int solve_mode() {
  int n, m, d, max_iter, symmetric, online;
  double eps, scaling, tol;
  std::cin >> n >> m >> d >> eps >> scaling >> tol >> max_iter >> symmetric >> online;
  Vec x(static_cast<size_t>(n) * d), y(static_cast<size_t>(m) * d), a(n), b(m);
  for (double& v : x) std::cin >> v;
  for (double& v : y) std::cin >> v;
  for (double& v : a) std::cin >> v;
  for (double& v : b) std::cin >> v;
  if (kCosine) {
    normalise_rows(x, n, d);
    normalise_rows(y, m, d);
  }
  const double s = kLog2e / eps;
  const Vec C = tile_costs<kCosine>(x, n, y, m, d);  // what an online pass recomputes
  Vec K(C.size());                                    // the stored mode's -s C
  for (size_t e = 0; e < C.size(); ++e) K[e] = -s * C[e];
  const Vec Ct = transpose(C, n, m), Kt = transpose(K, n, m);
  Vec f(n, 0.0), g(m, 0.0), fresh(n), err_rows(n), mx, sm;
  int stages = 0;
  if (scaling > 0) {
    emulate_pass(online ? C : K, n, m, Vec(m, 0.0), online ? -s : 1.0, true, mx, sm);
    double low = INFINITY;
    for (int i = 0; i < n; ++i) low = std::min(low, mx[i]);
    stages = static_cast<int>(scaling_stages(-low / s, eps, scaling, max_iter));
  }
  int n_iter = 0;
  double error = 0;
  for (int t = 1; t <= max_iter; ++t) {
    const double st = stage_scale<double>(t, stages, eps, scaling);
    if (!symmetric) {  // column pass: rows of y against x
      Vec kap(n);
      for (int i = 0; i < n; ++i) kap[i] = std::log2(a[i]) + st * f[i];
      emulate_pass(online ? Ct : Kt, m, n, kap, online ? -st : st / s, false, mx, sm);
      for (int j = 0; j < m; ++j) g[j] = column_result(mx[j], sm[j], st);
    }
    Vec kap(m);
    for (int j = 0; j < m; ++j) kap[j] = std::log2(b[j]) + st * g[j];
    emulate_pass(online ? C : K, n, m, kap, online ? -st : st / s, false, mx, sm);
    for (int i = 0; i < n; ++i) row_result(mx[i], sm[i], st, symmetric ? g[i] : f[i], a[i], fresh[i], err_rows[i]);
    double err = 0;
    for (int i = 0; i < n; ++i) err += err_rows[i];
    const bool stop = stops_after_with(t, max_iter, stages, tol, err);
    n_iter = t;
    error = err;
    finish_rows(0, 1, n, symmetric != 0, stop, fresh.data(), f.data(), g.data());
    if (stop) break;
  }
  std::printf("%d %.17g\n", n_iter, error);
  for (double v : f) std::printf("%.17g ", v);
  std::printf("\n");
  for (double v : g) std::printf("%.17g ", v);
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "solve") == 0) return solve_mode<false>();
  if (argc > 1 && std::strcmp(argv[1], "solve-cosine") == 0) return solve_mode<true>();
  std::mt19937_64 rng(7);
  check_backward<false, 128>(rng, 45, 70, 37);
  check_backward<true, 128>(rng, 45, 70, 37);
  check_backward<false, 256>(rng, 33, 129, 130);
  check_backward<true, 256>(rng, 1, 1, 1);
  check_backward<false, 128>(rng, 64, 64, 128);
  check_lse_pass<false>(rng, 45, 70, 37);
  check_lse_pass<true>(rng, 33, 129, 130);
  check_lse_pass<false>(rng, 1, 1, 1);
  check_block_locations();
  const double cases[][4] = {{4.0, 0.05, 0.9, 100}, {4.0, 0.05, 0.5, 3}, {0.01, 0.05, 0.9, 100},
                             {1e4, 1e-3, 0.95, 1000}, {2.0, 1e-3, 0.7, 2}, {INFINITY, 0.1, 0.9, 50}};
  for (const auto& c : cases)
    std::printf("stages %.17g %.17g %.17g %d %d\n", c[0], c[1], c[2], static_cast<int>(c[3]),
                static_cast<int>(scaling_stages(c[0], c[1], c[2], static_cast<int>(c[3]))));
  return 0;
}
