// The CPU hot loops on ATen's portable vector type, at::vec::Vectorized<T>.
//
// Included only by cpu/loops_<isa>.cpp, each compiled with its instruction
// set's flags and defining CPU_CAPABILITY and CPU_CAPABILITY_<ISA> first (the
// macros ATen's own per-ISA kernels are compiled with). Everything here
// lives in the namespace sinsim::cpu::CPU_CAPABILITY, so the copies compiled
// for different instruction sets never share a symbol.
//
// Log-sum-exp with a shift: LSE2(v) = c + log2 sum_j 2^(v_j - c) holds for
// any c. c = max v, the textbook choice, costs a first pass over the data;
// Sinkhorn's potentials move little from one iteration to the next, so the
// previous iteration's answer (rounded: lse_shift) is as good a shift and the
// sum takes one pass. When that sum cannot be trusted (sum_is_trusted, in
// cpu/loops.h) the loop redoes it with c = max v (the exact two-pass form).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "cpu/loops.h"

namespace sinsim::cpu {
inline namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// 2^(v - c) lane-wise for float, c an integer with |c| <= 2^21, given
// lo = c - 127, hi = c + 127 and mc = kMagic - c:
//
//   x = clamp(v, lo, hi);  t = x + mc  (rounds: t = kMagic + k, k = round(x - c))
//   r = x - (t - mc) = (x - c) - k in [-1/2, 1/2], exact (Sterbenz)
//   2^(x - c) = 2^k p(r),  2^k from the low bits of t: bits(t) = 0x4B40007F + k,
//   so bits(t) << 23 = (k + 127) << 23, the float 2^k (0 for k = -127).
//
// p is the degree-5 minimax polynomial of 2^r on [-1/2, 1/2] (relative error
// 7.5e-8, half an ulp; Remez in mpmath). NaN propagates (clamp keeps NaN).
constexpr float kMagic = 12582912.0f + 127.0f;  // 1.5 * 2^23 + 127
static_assert(kMaxFloatShift == 2097152.0f, "the magic-number exp2 needs |c| <= 2^21");

inline Vectorized<float> exp2_shifted(const Vectorized<float>& v, const Vectorized<float>& lo,
                                      const Vectorized<float>& hi, const Vectorized<float>& mc) {
  using V = Vectorized<float>;
  const V x = at::vec::clamp(v, lo, hi);
  const V t = x + mc;
  const V r = x - (t - mc);
  V p = at::vec::fmadd(r, V(0.0013276471979316381f), V(0.0096755413342065418f));
  p = at::vec::fmadd(p, r, V(0.055507132735428237f));
  p = at::vec::fmadd(p, r, V(0.24022119723848698f));
  p = at::vec::fmadd(p, r, V(0.69314696706473344f));
  p = at::vec::fmadd(p, r, V(1.0000000716546822f));
  const Vectorized<int32_t> bits = at::vec::cast<int32_t>(t) << Vectorized<int32_t>(23);
  return p * at::vec::cast<float>(bits);
}

// 2^(v - c) for one shift c (from lse_shift, or 0), per dtype.
template <typename T>
struct Exp2Shift;

template <>
struct Exp2Shift<float> {
  using V = Vectorized<float>;
  V lo, hi, mc;
  explicit Exp2Shift(float c) : lo(c - 127.0f), hi(c + 127.0f), mc(kMagic - c) {}
  V operator()(const V& v) const { return exp2_shifted(v, lo, hi, mc); }
};

// float64: the shift is subtracted and ATen's exp2 (Sleef, 1 ulp, on AVX2
// and AVX-512; std::exp2 lane by lane elsewhere) does the rest.
template <>
struct Exp2Shift<double> {
  using V = Vectorized<double>;
  V c;
  explicit Exp2Shift(double c_) : c(c_) {}
  V operator()(const V& v) const { return (v - c).exp2(); }
};

template <typename T>
constexpr T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// The first `count` lanes of p, the rest -inf (so their 2^v adds nothing).
template <typename T>
inline Vectorized<T> load_tail(const T* p, int64_t count) {
  return Vectorized<T>::set(Vectorized<T>(neg_inf<T>()), Vectorized<T>::loadu(p, count), count);
}

template <typename T>
inline T sum_lanes(const Vectorized<T>& v) {
  return at::vec::vec_reduce_all<T>([](const Vectorized<T>& a, const Vectorized<T>& b) { return a + b; }, v);
}

template <typename T>
inline T max_lanes(const Vectorized<T>& v) {  // NaN if any lane is NaN
  return at::vec::vec_reduce_all<T>(
      [](const Vectorized<T>& a, const Vectorized<T>& b) { return at::vec::maximum(a, b); }, v);
}

// ------------------------------------------------------------------ rows

// sum_j 2^(kappa_j + K_j - c), four independent accumulators.
template <typename T>
T row_sum_shifted(const T* K, const T* kappa, int64_t m, T c) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  const Exp2Shift<T> e(c);
  V s0(T(0)), s1(T(0)), s2(T(0)), s3(T(0));
  int64_t j = 0;
  for (; j + 4 * L <= m; j += 4 * L) {
    s0 += e(V::loadu(K + j) + V::loadu(kappa + j));
    s1 += e(V::loadu(K + j + L) + V::loadu(kappa + j + L));
    s2 += e(V::loadu(K + j + 2 * L) + V::loadu(kappa + j + 2 * L));
    s3 += e(V::loadu(K + j + 3 * L) + V::loadu(kappa + j + 3 * L));
  }
  for (; j + L <= m; j += L) s0 += e(V::loadu(K + j) + V::loadu(kappa + j));
  if (j < m) s1 += e(load_tail(K + j, m - j) + load_tail(kappa + j, m - j));
  return sum_lanes((s0 + s1) + (s2 + s3));
}

template <typename T>
T row_max(const T* K, const T* kappa, int64_t m) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  V m0(neg_inf<T>()), m1(neg_inf<T>());
  int64_t j = 0;
  for (; j + 2 * L <= m; j += 2 * L) {
    m0 = at::vec::maximum(m0, V::loadu(K + j) + V::loadu(kappa + j));
    m1 = at::vec::maximum(m1, V::loadu(K + j + L) + V::loadu(kappa + j + L));
  }
  for (; j + L <= m; j += L) m0 = at::vec::maximum(m0, V::loadu(K + j) + V::loadu(kappa + j));
  if (j < m) m1 = at::vec::maximum(m1, load_tail(K + j, m - j) + load_tail(kappa + j, m - j));
  return max_lanes(at::vec::maximum(m0, m1));
}

// Exact two-pass LSE2: c = max, then sum_j 2^(v_j - c) (shift 0 after the
// subtraction, so any magnitude of c works).
template <typename T>
T row_lse2_exact(const T* K, const T* kappa, int64_t m) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  const T mx = row_max(K, kappa, m);
  if (!std::isfinite(mx)) return mx;  // NaN, or -inf when every term is 0
  const Exp2Shift<T> e(T(0));
  const V c(mx);
  V s0(T(0)), s1(T(0));
  int64_t j = 0;
  for (; j + 2 * L <= m; j += 2 * L) {
    s0 += e(V::loadu(K + j) + V::loadu(kappa + j) - c);
    s1 += e(V::loadu(K + j + L) + V::loadu(kappa + j + L) - c);
  }
  for (; j + L <= m; j += L) s0 += e(V::loadu(K + j) + V::loadu(kappa + j) - c);
  if (j < m) s1 += e(load_tail(K + j, m - j) + load_tail(kappa + j, m - j) - c);
  return mx + std::log2(sum_lanes(s0 + s1));
}

template <typename T>
T row_lse2(const T* K, const T* kappa, int64_t m, T hint) {
  const T c = lse_shift(hint);
  if (!std::isnan(c)) {
    const T s = row_sum_shifted(K, kappa, m, c);
    if (sum_is_trusted(s)) return c + std::log2(s);
  }
  return row_lse2_exact(K, kappa, m);
}

// --------------------------------------------------------------- columns

// s_j += sum_{i < n} 2^(alpha_i + K_ij - c_j) for j < m, streaming K row by
// row (the partial sums of a block of rows; every c_j from lse_shift). For
// float the clamp bounds and magic constants of a chunk of columns are set up
// once, so the inner loop loads them instead of computing them.
constexpr int64_t kColChunk = 256;

inline void col_sums_f32(const float* K, int64_t ld, const float* alpha, int64_t n, int64_t m,
                         const float* c, float* s) {
  using V = Vectorized<float>;
  constexpr int64_t L = V::size();
  alignas(64) float lo[kColChunk], hi[kColChunk], mc[kColChunk];
  for (int64_t j0 = 0; j0 < m; j0 += kColChunk) {
    const int64_t w = std::min(kColChunk, m - j0), wv = w - w % L;
    for (int64_t j = 0; j < w; ++j) {
      lo[j] = c[j0 + j] - 127.0f;
      hi[j] = c[j0 + j] + 127.0f;
      mc[j] = kMagic - c[j0 + j];
    }
    float* sj = s + j0;
    for (int64_t i = 0; i < n; ++i) {
      const V a(alpha[i]);
      const float* Ki = K + i * ld + j0;
      int64_t j = 0;
      for (; j < wv; j += L) {
        const V e = exp2_shifted(V::loadu(Ki + j) + a, V::loadu(lo + j), V::loadu(hi + j), V::loadu(mc + j));
        (V::loadu(sj + j) + e).store(sj + j);
      }
      if (j < w) {
        const int64_t r = w - j;
        const V e = exp2_shifted(V::loadu(Ki + j, r) + a, V::loadu(lo + j, r), V::loadu(hi + j, r),
                                 V::loadu(mc + j, r));
        (V::loadu(sj + j, r) + e).store(sj + j, r);
      }
    }
  }
}

inline void col_sums_f64(const double* K, int64_t ld, const double* alpha, int64_t n, int64_t m,
                         const double* c, double* s) {
  using V = Vectorized<double>;
  constexpr int64_t L = V::size();
  const int64_t mv = m - m % L;
  for (int64_t i = 0; i < n; ++i) {
    const V a(alpha[i]);
    const double* Ki = K + i * ld;
    int64_t j = 0;
    for (; j < mv; j += L) (V::loadu(s + j) + (V::loadu(Ki + j) + a - V::loadu(c + j)).exp2()).store(s + j);
    if (j < m) {
      const int64_t r = m - j;
      (V::loadu(s + j, r) + (V::loadu(Ki + j, r) + a - V::loadu(c + j, r)).exp2()).store(s + j, r);
    }
  }
}

template <typename T>
void col_sums(const T* K, int64_t ld, const T* alpha, int64_t n, int64_t m, const T* c, T* s) {
  if constexpr (std::is_same_v<T, float>) {
    col_sums_f32(K, ld, alpha, n, m, c, s);
  } else {
    col_sums_f64(K, ld, alpha, n, m, c, s);
  }
}

// Exact two-pass form for a block of w columns: out_j = LSE2_i(alpha_i + K_ij)
// (maximum, then the sum shifted by it), two vectors of columns at a time.
template <typename T>
inline void load_pair(const T* p, int64_t w, Vectorized<T>& v0, Vectorized<T>& v1) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  if (w >= 2 * L) {
    v0 = V::loadu(p);
    v1 = V::loadu(p + L);
  } else {
    v0 = load_tail(p, std::min(w, L));
    v1 = w > L ? load_tail(p + L, w - L) : V(neg_inf<T>());
  }
}

template <typename T>
void col_lse2_exact_sweep(const T* K, int64_t ld, const T* alpha, int64_t n, int64_t w, T* out) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  V m0(neg_inf<T>()), m1(neg_inf<T>());
  for (int64_t i = 0; i < n; ++i) {
    V k0, k1;
    load_pair(K + i * ld, w, k0, k1);
    const V a(alpha[i]);
    m0 = at::vec::maximum(m0, k0 + a);
    m1 = at::vec::maximum(m1, k1 + a);
  }
  alignas(64) T mx[2 * L];
  m0.store(mx);
  m1.store(mx + L);
  // finite shifts for the sum; columns whose maximum is NaN or -inf keep it
  alignas(64) T c[2 * L];
  for (int64_t j = 0; j < 2 * L; ++j) c[j] = std::isfinite(mx[j]) ? mx[j] : T(0);
  const V c0 = V::loadu(c), c1 = V::loadu(c + L);
  const Exp2Shift<T> e(T(0));
  V s0(T(0)), s1(T(0));
  for (int64_t i = 0; i < n; ++i) {
    V k0, k1;
    load_pair(K + i * ld, w, k0, k1);
    const V a(alpha[i]);
    s0 += e(k0 + a - c0);
    s1 += e(k1 + a - c1);
  }
  alignas(64) T s[2 * L];
  s0.store(s);
  s1.store(s + L);
  for (int64_t j = 0; j < std::min(w, 2 * L); ++j) {
    out[j] = std::isfinite(mx[j]) ? mx[j] + std::log2(s[j]) : mx[j];
  }
}

template <typename T>
void col_lse2_exact(const T* K, int64_t ld, const T* alpha, int64_t n, int64_t w, T* out) {
  constexpr int64_t W = 2 * Vectorized<T>::size();
  for (int64_t j0 = 0; j0 < w; j0 += W) col_lse2_exact_sweep(K + j0, ld, alpha, n, w - j0, out + j0);
}

// ------------------------------------------------------------ cost, plan

// A tile of R rows x NV vectors of columns of the cost, accumulated over k
// with x_ik broadcast and a row of Y^T (leading dimension ldy): no horizontal
// sums, and each (i, j) entry is summed in the same order (k = 0, 1, ...)
// whatever the tiling. `count` < L limits the last vector (tail columns).
// Cost is an entry of core/cost_table.h.
template <typename T, typename Cost, int R, int NV>
inline void cost_tile(const T* X, int64_t d, const T* Yt, int64_t ldy, T scale, int64_t count,
                      T* out, int64_t ldo) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V(T(0));
  for (int64_t k = 0; k < d; ++k) {
    const T* yk = Yt + k * ldy;
    V yv[NV];
    for (int v = 0; v < NV; ++v) yv[v] = count < L ? V::loadu(yk + v * L, count) : V::loadu(yk + v * L);
    for (int r = 0; r < R; ++r) {
      const V xr(X[r * d + k]);
      for (int v = 0; v < NV; ++v) {
        V p, q;
        Cost::factors(xr, yv[v], p, q);
        acc[r][v] = at::vec::fmadd(p, q, acc[r][v]);
      }
    }
  }
  const V sv(scale);
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < NV; ++v) {
      const V c = sv * Cost::finish(acc[r][v]);
      if (count < L) {
        c.store(out + r * ldo + v * L, count);
      } else {
        c.store(out + r * ldo + v * L);
      }
    }
  }
}

// The rows [0, n) of one panel of columns (NV vectors wide, `count` lanes in
// the last): the panel of Y^T stays in L1 while the rows stream past it.
template <typename T, typename Cost, int NV>
inline void cost_panel(const T* X, int64_t n, int64_t d, const T* Yt, int64_t ldy, T scale,
                       int64_t count, T* out, int64_t ldo) {
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) cost_tile<T, Cost, 2, NV>(X + i * d, d, Yt, ldy, scale, count, out + i * ldo, ldo);
  if (i < n) cost_tile<T, Cost, 1, NV>(X + i * d, d, Yt, ldy, scale, count, out + i * ldo, ldo);
}

template <typename T>
void cost_rows(const T* X, int64_t n, const T* Yt, int64_t ldy, int64_t m, int64_t d, CostKind kind,
               T scale, T* out) {
  constexpr int64_t L = Vectorized<T>::size();
  dispatch_cost(kind, [&](auto cost) {
    using Cost = decltype(cost);
    int64_t j = 0;
    for (; j + 4 * L <= m; j += 4 * L) cost_panel<T, Cost, 4>(X, n, d, Yt + j, ldy, scale, L, out + j, m);
    for (; j < m; j += L) cost_panel<T, Cost, 1>(X, n, d, Yt + j, ldy, scale, std::min(L, m - j), out + j, m);
  });
}

template <typename T>
void plan_row(T* K, const T* w, T u, int64_t m) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  const Exp2Shift<T> e(T(0));
  const V uv(u);
  int64_t j = 0;
  for (; j + L <= m; j += L) e(uv + V::loadu(w + j) + V::loadu(K + j)).store(K + j);
  if (j < m) e(uv + V::loadu(w + j, m - j) + V::loadu(K + j, m - j)).store(K + j, m - j);
}

}  // namespace

// Constant-initialised (no code runs before the dispatcher has checked that
// the CPU can execute this instruction set).
constexpr Loops kLoops{
    CPU_LOOPS_NAME,
    {&row_lse2<float>, &col_sums<float>, &col_lse2_exact<float>, &cost_rows<float>, &plan_row<float>},
    {&row_lse2<double>, &col_sums<double>, &col_lse2_exact<double>, &cost_rows<double>,
     &plan_row<double>},
};

}  // namespace CPU_CAPABILITY
}  // namespace sinsim::cpu
