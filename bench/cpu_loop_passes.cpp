// Single-thread cost of the CPU loops per code path, per pass over K:
// the one-pass (shifted) and exact two-pass row and column log-sum-exp, and
// the cost matrix. Built and run by bench/cpu_loop_passes.py against the
// objects of the last in-place build; thread CPU time, best of the repeats.
//
//   cpu_loop_passes [n]   (n = m, d = 128; K drawn like eps = 0.05 on unit vectors)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <random>
#include <vector>

#include "cpu/loops.h"

using namespace sinsim::cpu;

namespace {

double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double best_of(int repeats, const std::function<void()>& fn) {
  fn();  // warm-up
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = thread_seconds();
    fn();
    best = std::min(best, thread_seconds() - t0);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 1024, m = n, d = 128, block = 32;
  std::mt19937 gen(0);
  std::normal_distribution<float> normal;
  // K = -log2(e)/eps * C with eps = 0.05 and C ~ 2 +- 0.6 (unit vectors): K in [-115, 0]
  std::vector<float> K(size_t(n) * m), kappa(m, -10.0f), alpha(n, -10.0f);
  for (float& k : K) k = -28.85f * std::max(0.0f, 2.0f + 0.3f * normal(gen));
  std::vector<float> X(size_t(n) * d), Yt(size_t(d) * (m + 16)), C(size_t(n) * m);
  for (float& v : X) v = 0.09f * normal(gen);
  for (float& v : Yt) v = 0.09f * normal(gen);

  std::printf("%-8s %12s %12s %12s %12s %14s   (ns per entry per pass; cost in ms)\n", "path", "row 1-pass",
              "row exact", "col 1-pass", "col exact", "cost d=128");
  for (const Loops* loops : {loops_default(), loops_avx2(), loops_avx512()}) {
    if (loops == nullptr) continue;
    if ((loops == loops_avx2() && !__builtin_cpu_supports("avx2")) ||
        (loops == loops_avx512() && !__builtin_cpu_supports("avx512f")))
      continue;
    const LoopTable<float>& t = loops->f32;
    std::vector<float> lse(std::max(n, m)), shift(m), partial(size_t((n + block - 1) / block) * m);
    for (int i = 0; i < n; ++i) lse[i] = t.row_lse2(&K[size_t(i) * m], kappa.data(), m, NAN);
    const double row_fast = best_of(20, [&] {
      for (int i = 0; i < n; ++i) lse[i] = t.row_lse2(&K[size_t(i) * m], kappa.data(), m, lse[i]);
    });
    const double row_exact = best_of(10, [&] {
      for (int i = 0; i < n; ++i) lse[i] = t.row_lse2(&K[size_t(i) * m], kappa.data(), m, NAN);
    });
    t.col_lse2_exact(K.data(), m, alpha.data(), n, m, lse.data());
    for (int j = 0; j < m; ++j) shift[j] = std::nearbyint(lse[j]);
    const double col_fast = best_of(20, [&] {
      std::fill(partial.begin(), partial.end(), 0.0f);
      for (int b = 0; b * block < n; ++b)
        t.col_sums(&K[size_t(b) * block * m], m, &alpha[b * block], std::min(block, n - b * block), m,
                   shift.data(), &partial[size_t(b) * m]);
    });
    const double col_exact = best_of(10, [&] { t.col_lse2_exact(K.data(), m, alpha.data(), n, m, lse.data()); });
    const double cost = best_of(5, [&] { t.cost_rows(X.data(), n, Yt.data(), m + 16, m, d, false, -28.85f, C.data()); });
    const double per = 1e9 / (double(n) * m);
    std::printf("%-8s %12.3f %12.3f %12.3f %12.3f %14.2f\n", loops->name, row_fast * per, row_exact * per,
                col_fast * per, col_exact * per, cost * 1e3);
  }
}
