// Tile geometry and per-thread steps of the tiled CUDA kernels (the fused
// backward, cuda/fused_backward.cu, and the pass solver,
// cuda/pass_solver.cu), written as plain C++ that compiles for the host
// too, so tests/cuda_tiles_emulation.cpp runs the same steps thread by thread
// on the CPU.
//
// A block of kThreads = 256 threads is a 16 x 16 grid. It owns kRows = 32 rows
// of a point set p and walks the other set q in tiles of kCols = 64 rows.
// Thread t works on the block rows row_of(t, r), r < kRowReps, the tile
// columns col_of(t, c), c < kColReps, and the features feature_of(t, k).
// Staged operands live in shared memory feature-major: element (row, k) of a
// staged p block at ps[k * ldp + row] with ldp = kRows + 1, of a q tile at
// qs[k * ldq + col] with ldq = kCols + 1; the odd strides keep the reads of
// both the cost step (a feature, 16 consecutive columns) and the product step
// (a column, 16 features) free of bank conflicts.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/cost_table.h"
#include "core/device.h"
#include "core/schedule.h"

namespace sinsim {
namespace tiles {

constexpr int kThreads = 256;
constexpr int kSide = 16;
constexpr int kRows = 32;
constexpr int kCols = 64;
constexpr int kRowReps = kRows / kSide;
constexpr int kColReps = kCols / kSide;
constexpr int kLdp = kRows + 1;
constexpr int kLdq = kCols + 1;
constexpr int kChunk = 64;  // features staged at a time by the pass kernels

SINSIM_HD int ceil_div(int a, int b) { return (a + b - 1) / b; }
SINSIM_HD int row_of(int tid, int r) { return tid / kSide + kSide * r; }
SINSIM_HD int col_of(int tid, int c) { return tid % kSide + kSide * c; }
SINSIM_HD int feature_of(int tid, int k) { return tid % kSide + kSide * k; }

template <typename T>
SINSIM_HD T minus_infinity() {
  return -std::numeric_limits<T>::infinity();
}

// Where block `block` of a 1-d grid works: per batch element, the tasks
// 0..tasks-1 take row_blocks[task] consecutive blocks each.
struct BlockSpot {
  int batch, task, row0;
};

SINSIM_HD BlockSpot locate_block(int block, const int* row_blocks, int tasks) {
  int per_batch = 0;
  for (int t = 0; t < tasks; ++t) per_batch += row_blocks[t];
  BlockSpot spot;
  spot.batch = block / per_batch;
  int rest = block % per_batch;
  spot.task = 0;
  while (rest >= row_blocks[spot.task]) {
    rest -= row_blocks[spot.task];
    ++spot.task;
  }
  spot.row0 = rest * kRows;
  return spot;
}

// dst[k * ld + r] = src[(r0 + r) * d + k0 + k] for r < rows, k < width, and
// zero where r0 + r >= n or k0 + k >= d. A warp of 32 consecutive threads
// takes a row, its lanes consecutive features (coalesced reads, and with ld
// odd, stores to distinct banks); no division by the runtime width.
template <typename T>
SINSIM_HD void stage_rows(int tid, const T* src, int r0, int rows, int n, int k0, int width, int d, T* dst, int ld) {
  constexpr int kLanes = 32;
  for (int r = tid / kLanes; r < rows; r += kThreads / kLanes) {
    const bool row_ok = r0 + r < n;
    const T* row = row_ok ? src + static_cast<int64_t>(r0 + r) * d + k0 : src;
    for (int k = tid % kLanes; k < width; k += kLanes) dst[k * ld + r] = (row_ok && k0 + k < d) ? row[k] : T(0);
  }
}

// acc[r][c] += the cost's terms (Cost, an entry of core/cost_table.h) of
// features [0, width) between block row row_of(r) and tile column col_of(c);
// the cost is Cost::finish(acc) once every feature is in.
template <typename T, typename Cost>
SINSIM_HD void add_cost(int tid, const T* ps, const T* qs, int width, T (&acc)[kRowReps][kColReps]) {
  for (int k = 0; k < width; ++k) {
    T pv[kRowReps], qv[kColReps];
#pragma unroll
    for (int r = 0; r < kRowReps; ++r) pv[r] = ps[k * kLdp + row_of(tid, r)];
#pragma unroll
    for (int c = 0; c < kColReps; ++c) qv[c] = qs[k * kLdq + col_of(tid, c)];
#pragma unroll
    for (int r = 0; r < kRowReps; ++r)
#pragma unroll
      for (int c = 0; c < kColReps; ++c) {
        T u, v;
        Cost::factors(pv[r], qv[c], u, v);
        acc[r][c] += u * v;
      }
  }
}

// The plan on a tile: P[row][col] = 2^(u_row + w_col - s C), stored at
// Ps[row * kLdq + col]; rsum[r] += this thread's part of the row sums.
template <typename T, typename Cost, typename Exp2>
SINSIM_HD void plan_tile(int tid, const T (&acc)[kRowReps][kColReps], const T* us, const T* ws, T s, T* Ps,
                         T (&rsum)[kRowReps], Exp2 exp2) {
#pragma unroll
  for (int r = 0; r < kRowReps; ++r)
#pragma unroll
    for (int c = 0; c < kColReps; ++c) {
      const int row = row_of(tid, r), col = col_of(tid, c);
      const T p = exp2(us[row] + ws[col] - s * Cost::finish(acc[r][c]));
      Ps[row * kLdq + col] = p;
      rsum[r] += p;
    }
}

// out[r][k] += sum_{j < cols} P[row_of(r)][j] q[j][feature_of(k)], the
// features below d (KREPS = DMAX / kSide covers every feature up to DMAX).
template <typename T, int KREPS>
SINSIM_HD void add_product(int tid, const T* Ps, const T* qs, int cols, int d, T (&out)[kRowReps][KREPS]) {
  for (int j = 0; j < cols; ++j) {
    T pr[kRowReps];
#pragma unroll
    for (int r = 0; r < kRowReps; ++r) pr[r] = Ps[row_of(tid, r) * kLdq + j];
#pragma unroll
    for (int k = 0; k < KREPS; ++k) {
      const int f = feature_of(tid, k);
      if (f < d) {
        const T qv = qs[f * kLdq + j];
#pragma unroll
        for (int r = 0; r < kRowReps; ++r) out[r][k] += pr[r] * qv;
      }
    }
  }
}

// Adds the values v[c] (minus_infinity for none) to the running base-2
// log-sum-exp (mx, sm) = mx + log2(sm): the tile's maximum first, so the sum
// is rescaled at most once per tile.
template <typename T, typename Exp2>
SINSIM_HD void lse_add(const T (&v)[kColReps], T& mx, T& sm, Exp2 exp2) {
  T top = mx;
#pragma unroll
  for (int c = 0; c < kColReps; ++c) top = v[c] > top ? v[c] : top;
  if (top == minus_infinity<T>()) return;
  if (top > mx) {
    sm = mx == minus_infinity<T>() ? T(0) : sm * exp2(mx - top);
    mx = top;
  }
#pragma unroll
  for (int c = 0; c < kColReps; ++c)
    if (v[c] != minus_infinity<T>()) sm += exp2(v[c] - mx);
}

// Merges two running log-sum-exps (either may be empty: mx = minus_infinity).
template <typename T, typename Exp2>
SINSIM_HD void lse_merge(T& mx, T& sm, T other_mx, T other_sm, Exp2 exp2) {
  const T top = other_mx > mx ? other_mx : mx;
  if (top == minus_infinity<T>()) return;
  const T a = mx == minus_infinity<T>() ? T(0) : sm * exp2(mx - top);
  const T b = other_mx == minus_infinity<T>() ? T(0) : other_sm * exp2(other_mx - top);
  mx = top;
  sm = a + b;
}

// ------------------------------------------------- the pass solver's steps
// (cuda/pass_solver.cu; natural units f, g carried across stages; the
// eps-scaling stages and the stopping rule are core/schedule.h's)

// A row of the row pass from its merged log-sum-exp (mx, sm) at stage scale
// st = log2(e) / eps_t: the new potential (natural units) and the row's term
// of the marginal error, a_i |2^(st (old - new)) - 1|.
template <typename T>
SINSIM_HD void row_result(T mx, T sm, T st, T old, T a, T& fresh, T& err) {
  using std::expm1;
  using std::fabs;
  using std::log2;
  const T updated = -(mx + log2(sm));
  err = a > T(0) ? a * fabs(expm1((st * old - updated) * T(kLn2))) : T(0);
  fresh = updated / st;
}

// A column of the column pass: the new potential (natural units).
template <typename T>
SINSIM_HD T column_result(T mx, T sm, T st) {
  using std::log2;
  return -(mx + log2(sm)) / st;
}

// The new state after iteration t, rows [i0, n) step `stride`: asymmetric
// problems take the row update; symmetric ones (p kept in g) average it in,
// or, when stopping, return it as f (and p as g).
template <typename T>
SINSIM_HD void finish_rows(int i0, int stride, int n, bool symmetric, bool stop, const T* fresh, T* f, T* g) {
  for (int i = i0; i < n; i += stride) {
    if (!symmetric || stop) {
      f[i] = fresh[i];
    } else {
      g[i] = T(0.5) * (g[i] + fresh[i]);
    }
  }
}

}  // namespace tiles
}  // namespace sinsim
