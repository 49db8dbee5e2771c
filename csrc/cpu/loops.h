// The CPU back end's hot loops, compiled once per instruction set.
//
// cpu/loops_impl.h holds one implementation written on ATen's portable
// vector type at::vec::Vectorized<T>; loops_default.cpp, loops_avx2.cpp
// and loops_avx512.cpp compile it for baseline
// hardware (NEON on aarch64, SSE2 on x86-64), AVX2+FMA and AVX-512, the way
// ATen compiles its own kernels (CPU_CAPABILITY, and per-file -m flags set
// by setup.py and CMakeLists.txt on x86-64). loops_dispatch.cpp picks
// the table for each call:
//
//   SINSIM_CPU_CAPABILITY = default | avx2 | avx512   (read at every call;
//                                                      an error if this build
//                                                      or this CPU lacks it)
//   otherwise torch's choice, at::get_cpu_capability(), which honours
//   ATEN_CPU_CAPABILITY and the CPU's features.
//
// All exponentials are base 2 (the scaled units of core/sinkhorn.h).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/cost_table.h"

namespace sinsim::cpu {

// Shifted log-sum-exp (cpu/loops_impl.h). `static` helpers: every
// translation unit, whatever its instruction set, keeps its own copy.
//
// The shift used for a guess `hint` of LSE2: an integer of magnitude <= 2^21
// for float (what the fast exp2 needs), hint itself for double; NaN when the
// guess cannot be used (then the exact two-pass form runs).
constexpr float kMaxFloatShift = 2097152.0f;  // 2^21
static inline float lse_shift(float hint) {
  const float c = std::nearbyint(hint);
  return std::abs(c) <= kMaxFloatShift ? c : std::numeric_limits<float>::quiet_NaN();
}
static inline double lse_shift(double hint) {
  return std::isfinite(hint) ? hint : std::numeric_limits<double>::quiet_NaN();
}
// A shifted sum s = sum_j 2^(v_j - c) gives LSE2 = c + log2 s when it lies in
// [2^-60, 2^60]: no term overflowed (each is <= s), and the terms the
// exponential flushes to zero (v_j < c - 126.5) are each below 2^-66 s.
template <typename T>
static inline bool sum_is_trusted(T s) {
  return s >= T(0x1p-60) && s <= T(0x1p60);  // false for NaN
}

template <typename T>
struct LoopTable {
  // LSE2_j(kappa_j + K_j) over j < m. `hint` is a guess of the answer (the
  // previous iteration's): when it is within 60 of it, one pass over K
  // suffices; otherwise (or when not finite) the loop falls back to the
  // exact two-pass form (maximum, then sum). NaN in, NaN out.
  T (*row_lse2)(const T* K, const T* kappa, int64_t m, T hint);
  // Column sums of a block of rows, streamed row by row: for j < m,
  // s_j += sum_{i < n} 2^(alpha_i + K_ij - c_j), K row-major with leading
  // dimension ld, every c_j a lse_shift() value (not NaN).
  void (*col_sums)(const T* K, int64_t ld, const T* alpha, int64_t n, int64_t m, const T* c, T* s);
  // Exact two-pass form for the columns j < w of K: out_j = LSE2_i(alpha_i + K_ij).
  void (*col_lse2_exact)(const T* K, int64_t ld, const T* alpha, int64_t n, int64_t w, T* out);
  // out_ij = scale * c(x_i, y_j) for i < n, j < m (row-major, leading
  // dimension m); X is (n, d) row-major, Yt is Y transposed, (d, m) with
  // leading dimension ldy, both the cost's operands (core/cost_table.h: unit
  // rows for the cosine cost).
  void (*cost_rows)(const T* X, int64_t n, const T* Yt, int64_t ldy, int64_t m, int64_t d,
                    CostKind cost, T scale, T* out);
  // K_j <- 2^(u + w_j + K_j) in place, j < m.
  void (*plan_row)(T* K, const T* w, T u, int64_t m);
};

struct Loops {
  const char* name;  // "default", "avx2" or "avx512"
  LoopTable<float> f32;
  LoopTable<double> f64;

  template <typename T>
  const LoopTable<T>& get() const;
};

template <>
inline const LoopTable<float>& Loops::get<float>() const {
  return f32;
}
template <>
inline const LoopTable<double>& Loops::get<double>() const {
  return f64;
}

// One table per translation unit; the AVX2 and AVX-512 ones are nullptr when
// the build did not compile them (non-x86 targets, or no per-file flags).
// Only the dispatcher calls these, the AVX ones after checking the CPU.
const Loops* loops_default();
const Loops* loops_avx2();
const Loops* loops_avx512();

// The table this call uses (see the top of this file); throws
// c10::ValueError for a bad SINSIM_CPU_CAPABILITY.
const Loops& active_loops();

// Names of the tables this build holds and this CPU can run, best last.
std::vector<std::string> runnable_cpu_capabilities();

}  // namespace sinsim::cpu
