// The pass solver of the CUDA back end: one launch per log-sum-exp pass over
// all problems, the cost either stored (computed once) or recomputed in tiles
// at every pass (the online mode: memory O((n + m) d)). It runs the
// iterations of core/sinkhorn.h with eps-scaling and early stopping decided on the
// device, so a call reads nothing back from the device when it has no tol
// (and, with a tol, one flag per checkpoint of the iterations).
//
// Selected by SINSIM_CUDA_KERNEL (cuda/kernel_choice.h): "online" for
// cost_mode="online", "scaling" for eps-scaled calls in the stored mode.
//
// State per problem, in natural units (carried over unchanged from one
// eps-scaling stage to the next): f (n), g (m), the row update's result
// `fresh` (n) and its error terms (n), the stage count S, a done flag.
// Iteration t runs at eps_t (core/schedule.h: stage_eps) with s_t = log2(e) / eps_t:
//   column pass (asymmetric problems):
//       g_j = -LSE2_i(log2 a_i + s_t f_i - s_t C_ij) / s_t
//   row pass (all problems; symmetric ones read p from g, and b = a):
//       fresh_i = -LSE2_j(log2 b_j + s_t g_j - s_t C_ij) / s_t
//       e_i = a_i |2^(s_t (old_i - fresh_i)) - 1|,  old = f (or p)
//   finish (one block per problem): error = sum_i e_i (fixed order);
//       stop when t = max_iter or (t > S and error < tol);
//       asymmetric: f = fresh; symmetric: f = fresh if stopping, else
//       p = (p + fresh) / 2.
// The first column pass starts from f = 0. A pass skips the problems that
// stopped. In the stored mode the cost is held once, K = -s C at the target
// eps, and a pass at stage t reads it as (s_t / s) K.
#include "cuda/pass_solver.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "cuda/smem.cuh"
#include "cuda/tiles.h"

namespace sinsim {
namespace {

using namespace tiles;

constexpr int kMaxSets = 3;

template <typename T>
struct Exp2Fast;
template <>
struct Exp2Fast<float> {
  // one MUFU.EX2; inputs are <= 0, where flushing subnormal results to zero is harmless
  __device__ float operator()(float v) const {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
  }
};
template <>
struct Exp2Fast<double> {
  __device__ double operator()(double v) const { return ::exp2(v); }
};

// One set of B problems of one shape (ProblemSet), as the kernels see it.
template <typename T>
struct SetState {
  const T* x;      // (B, n, d); unit rows for the cosine cost
  const T* y;      // (B, m, d)
  const T* a;      // (B, n)
  const T* b;      // (B, m)
  const T* K;      // stored mode: (B, n, m) = -s C; nullptr online
  T* f;            // (B, n) natural units
  T* g;            // (B, m); symmetric problems keep p here
  T* fresh;        // (B, n)
  T* err_rows;     // (B, n)
  int* n_iter;     // (B,) with stride n_iter_stride
  T* error;        // (B,) with stride error_stride
  int* stages;     // (B,)
  int* done;       // (B,)
  int n_iter_stride, error_stride;
  int n, m;
  int symmetric;
};

template <typename T>
struct Params {
  SetState<T> set[kMaxSets];
  int row_blocks[kMaxSets];  // blocks per batch element and set in this launch
  int sets;
  int d;
  int t;            // the iteration (1-based)
  int max_iter;
  double eps, scaling, tol;
  T s;              // log2(e) / eps
};

enum class Pass { Rows, Columns, RowMinimum };

// Shared memory of a pass block, in elements of T.
struct PassSmem {
  int ps, qs, ks, kap, total;
};

__host__ __device__ inline PassSmem pass_smem(bool online) {
  PassSmem L;
  int at = 0;
  L.ps = at; at += online ? kChunk * kLdp : 0;
  L.qs = at; at += online ? kChunk * kLdq : 0;
  L.ks = at; at += online ? 0 : kRows * kLdq;
  L.kap = at; at += kCols;
  L.total = at;
  return L;
}

// A pass over every problem: block (batch element, set, row block) reduces
// its 32 rows over all columns. Rows: the rows of x against y; Columns: the
// rows of y against x (asymmetric sets only); RowMinimum: min_j -s C_ij for
// the rows of x (the largest cost, for the stage count), into `fresh`.
template <typename T, bool kOnline, typename Cost, Pass kPass>
__global__ void __launch_bounds__(kThreads) pass_kernel(Params<T> P) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* const base = reinterpret_cast<T*>(smem_raw);
  const PassSmem L = pass_smem(kOnline);
  T* const ps = base + L.ps;
  T* const qs = base + L.qs;
  T* const ks = base + L.ks;
  T* const kap = base + L.kap;
  const int tid = threadIdx.x;
  const Exp2Fast<T> exp2;
  constexpr bool kColumns = kPass == Pass::Columns;

  const BlockSpot spot = locate_block(blockIdx.x, P.row_blocks, P.sets);
  const SetState<T>& S = P.set[spot.task];
  const int b = spot.batch, row0 = spot.row0, d = P.d;
  if (kPass != Pass::RowMinimum && S.done[b]) return;  // uniform over the block
  const int n_p = kColumns ? S.m : S.n, n_q = kColumns ? S.n : S.m;
  const T* p = (kColumns ? S.y : S.x) + static_cast<int64_t>(b) * n_p * d;
  const T* q = (kColumns ? S.x : S.y) + static_cast<int64_t>(b) * n_q * d;
  const T* wq = (kColumns ? S.a : S.b) + static_cast<int64_t>(b) * n_q;
  const T* pot = (kColumns ? S.f : S.g) + static_cast<int64_t>(b) * n_q;
  const T* K = kOnline ? nullptr : S.K + static_cast<int64_t>(b) * S.n * S.m;
  const T st = kPass == Pass::RowMinimum ? P.s : stage_scale<T>(P.t, S.stages[b], P.eps, P.scaling);
  // v = kap_j + scale * X_ij with X the recomputed cost (online) or the stored K
  const T scale = kPass == Pass::RowMinimum ? (kOnline ? -P.s : T(1)) : (kOnline ? -st : st / P.s);

  T mx[kRowReps], sm[kRowReps];
#pragma unroll
  for (int r = 0; r < kRowReps; ++r) {
    mx[r] = kPass == Pass::RowMinimum ? std::numeric_limits<T>::infinity() : minus_infinity<T>();
    sm[r] = T(0);
  }
  for (int j0 = 0; j0 < n_q; j0 += kCols) {
    const int cols = min(kCols, n_q - j0);
    __syncthreads();  // the previous tile's readers are done
    for (int c = tid; c < kCols; c += kThreads)
      kap[c] = c >= cols ? minus_infinity<T>() : kPass == Pass::RowMinimum ? T(0) : ::log2(wq[j0 + c]) + st * pot[j0 + c];
    T acc[kRowReps][kColReps];
#pragma unroll
    for (int r = 0; r < kRowReps; ++r)
#pragma unroll
      for (int c = 0; c < kColReps; ++c) acc[r][c] = T(0);
    if (kOnline) {
      for (int k0 = 0; k0 < d; k0 += kChunk) {
        const int width = min(kChunk, d - k0);
        if (k0 > 0) __syncthreads();
        stage_rows(tid, p, row0, kRows, n_p, k0, width, d, ps, kLdp);
        stage_rows(tid, q, j0, kCols, n_q, k0, width, d, qs, kLdq);
        __syncthreads();
        add_cost<T, Cost>(tid, ps, qs, width, acc);
      }
#pragma unroll
      for (int r = 0; r < kRowReps; ++r)
#pragma unroll
        for (int c = 0; c < kColReps; ++c) acc[r][c] = Cost::finish(acc[r][c]);
    } else {
      if (kColumns) {  // ks[r][c] = K[j0 + c][row0 + r]: consecutive threads read consecutive r
        for (int e = tid; e < kRows * kCols; e += kThreads) {
          const int c = e / kRows, r = e % kRows;
          ks[r * kLdq + c] = (row0 + r < n_p && c < cols) ? K[static_cast<int64_t>(j0 + c) * S.m + row0 + r] : T(0);
        }
      } else {
        for (int e = tid; e < kRows * kCols; e += kThreads) {
          const int r = e / kCols, c = e % kCols;
          ks[r * kLdq + c] = (row0 + r < n_p && c < cols) ? K[static_cast<int64_t>(row0 + r) * S.m + j0 + c] : T(0);
        }
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < kRowReps; ++r)
#pragma unroll
        for (int c = 0; c < kColReps; ++c) acc[r][c] = ks[row_of(tid, r) * kLdq + col_of(tid, c)];
    }
#pragma unroll
    for (int r = 0; r < kRowReps; ++r) {
      T v[kColReps];
#pragma unroll
      for (int c = 0; c < kColReps; ++c) {
        const int col = col_of(tid, c);
        v[c] = col < cols ? kap[col] + scale * acc[r][c] : minus_infinity<T>();
      }
      if (kPass == Pass::RowMinimum) {
#pragma unroll
        for (int c = 0; c < kColReps; ++c)
          if (col_of(tid, c) < cols) mx[r] = v[c] < mx[r] ? v[c] : mx[r];
      } else {
        lse_add(v, mx[r], sm[r], exp2);
      }
    }
  }

  // merge over the 16 threads of a grid row, then one thread per row writes
  const T* a_rows = S.a + static_cast<int64_t>(b) * S.n;
#pragma unroll
  for (int r = 0; r < kRowReps; ++r) {
#pragma unroll
    for (int o = kSide / 2; o > 0; o >>= 1) {
      const T omx = __shfl_xor_sync(0xffffffffu, mx[r], o);
      const T osm = __shfl_xor_sync(0xffffffffu, sm[r], o);
      if (kPass == Pass::RowMinimum) {
        mx[r] = omx < mx[r] ? omx : mx[r];
      } else {
        lse_merge(mx[r], sm[r], omx, osm, exp2);
      }
    }
    const int i = row0 + row_of(tid, r);
    if (tid % kSide != 0 || i >= n_p) continue;
    const int64_t at = static_cast<int64_t>(b) * n_p + i;
    if (kPass == Pass::RowMinimum) {
      S.fresh[at] = mx[r];
    } else if (kColumns) {
      S.g[at] = column_result(mx[r], sm[r], st);
    } else {
      const T old = S.symmetric ? S.g[static_cast<int64_t>(b) * S.m + i] : S.f[at];
      row_result(mx[r], sm[r], st, old, a_rows[i], S.fresh[at], S.err_rows[at]);
    }
  }
}

// Block-wide sum in a fixed order (thread 0 holds the result).
template <typename T>
__device__ T block_sum(T v, T* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  T total = T(0);
  if (threadIdx.x == 0)
    for (int w = 0; w < kThreads / 32; ++w) total += red[w];
  return total;
}

// One block per problem (set, batch element): the end of iteration P.t.
template <typename T>
__global__ void __launch_bounds__(kThreads) finish_kernel(Params<T> P, int B) {
  __shared__ T red[kThreads / 32];
  __shared__ int stop_flag;
  const int set = blockIdx.x / B, b = blockIdx.x % B;
  const SetState<T>& S = P.set[set];
  if (S.done[b]) return;
  const int n = S.n, tid = threadIdx.x;
  const int64_t row = static_cast<int64_t>(b) * n;
  T part = T(0);
  for (int i = tid; i < n; i += kThreads) part += S.err_rows[row + i];
  const T err = block_sum(part, red);
  if (tid == 0) {
    stop_flag = stops_after_with(P.t, P.max_iter, S.stages[b], P.tol, static_cast<double>(err)) ? 1 : 0;
    S.n_iter[b * S.n_iter_stride] = P.t;
    S.error[b * S.error_stride] = err;
  }
  __syncthreads();
  const bool stop = stop_flag != 0;
  finish_rows(tid, kThreads, n, S.symmetric != 0, stop, S.fresh + row, S.f + row, S.g + row);
  if (tid == 0 && stop) S.done[b] = 1;
}

// The stage count of every problem from its row minima of -s C (in `fresh`).
template <typename T>
__global__ void __launch_bounds__(kThreads) stages_kernel(Params<T> P, int B) {
  __shared__ T red[kThreads];
  const int set = blockIdx.x / B, b = blockIdx.x % B;
  const SetState<T>& S = P.set[set];
  const int64_t row = static_cast<int64_t>(b) * S.n;
  T low = std::numeric_limits<T>::infinity();
  for (int i = threadIdx.x; i < S.n; i += kThreads) low = fmin(low, S.fresh[row + i]);
  red[threadIdx.x] = low;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int e = 1; e < kThreads; ++e) low = fmin(low, red[e]);
    const double cost_max = -static_cast<double>(low) / static_cast<double>(P.s);
    S.stages[b] = static_cast<int>(scaling_stages(cost_max, P.eps, P.scaling, P.max_iter));
  }
}

// K = -s C for every problem of a set (the stored mode), tile by tile.
template <typename T, typename Cost>
__global__ void __launch_bounds__(kThreads) cost_kernel(const T* x, const T* y, int n, int m, int d, T scale, T* K) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const PassSmem L = pass_smem(true);
  T* const ps = reinterpret_cast<T*>(smem_raw) + L.ps;
  T* const qs = reinterpret_cast<T*>(smem_raw) + L.qs;
  const int col_tiles = ceil_div(m, kCols), row_blocks = ceil_div(n, kRows);
  const int b = blockIdx.x / (row_blocks * col_tiles);
  const int rest = blockIdx.x % (row_blocks * col_tiles);
  const int row0 = (rest / col_tiles) * kRows, j0 = (rest % col_tiles) * kCols;
  const int tid = threadIdx.x;
  x += static_cast<int64_t>(b) * n * d;
  y += static_cast<int64_t>(b) * m * d;
  K += static_cast<int64_t>(b) * n * m;
  T acc[kRowReps][kColReps];
#pragma unroll
  for (int r = 0; r < kRowReps; ++r)
#pragma unroll
    for (int c = 0; c < kColReps; ++c) acc[r][c] = T(0);
  for (int k0 = 0; k0 < d; k0 += kChunk) {
    const int width = min(kChunk, d - k0);
    if (k0 > 0) __syncthreads();
    stage_rows(tid, x, row0, kRows, n, k0, width, d, ps, kLdp);
    stage_rows(tid, y, j0, kCols, m, k0, width, d, qs, kLdq);
    __syncthreads();
    add_cost<T, Cost>(tid, ps, qs, width, acc);
  }
#pragma unroll
  for (int r = 0; r < kRowReps; ++r)
#pragma unroll
    for (int c = 0; c < kColReps; ++c) {
      const int i = row0 + row_of(tid, r), j = j0 + col_of(tid, c);
      if (i < n && j < m) K[static_cast<int64_t>(i) * m + j] = scale * Cost::finish(acc[r][c]);
    }
}

template <typename T, bool kOnline, typename Cost, Pass kPass>
void launch_pass(Params<T> P, int B, cudaStream_t stream) {
  int per_batch = 0;
  for (int s = 0; s < P.sets; ++s) {
    const SetState<T>& S = P.set[s];
    P.row_blocks[s] = kPass == Pass::Columns ? (S.symmetric ? 0 : ceil_div(S.m, kRows)) : ceil_div(S.n, kRows);
    per_batch += P.row_blocks[s];
  }
  if (per_batch == 0) return;
  auto kernel = pass_kernel<T, kOnline, Cost, kPass>;
  const size_t smem = static_cast<size_t>(pass_smem(kOnline).total) * sizeof(T);
  ensure_dynamic_smem(kernel, smem);
  kernel<<<B * per_batch, kThreads, smem, stream>>>(P);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, bool kOnline, typename Cost>
void run(std::vector<ProblemSet>& sets, const SolverOptions& opt) {
  const at::Tensor& ref = sets.front().x;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int B = static_cast<int>(ref.size(0)), d = static_cast<int>(ref.size(2));
  const T s = static_cast<T>(kLog2e / opt.eps);
  std::vector<at::Tensor> keep;
  Params<T> P{};
  P.sets = static_cast<int>(sets.size());
  P.d = d;
  P.max_iter = static_cast<int>(opt.max_iter);
  P.eps = opt.eps;
  P.scaling = opt.scaling;
  P.tol = opt.tol;
  P.s = s;
  at::Tensor flags = at::zeros({P.sets, 2, B}, ref.options().dtype(at::kInt));  // stages, done
  for (int si = 0; si < P.sets; ++si) {
    ProblemSet& set = sets[si];
    SetState<T>& S = P.set[si];
    const at::Tensor xs = cost_operand(set.x, opt.cost).rows.contiguous();
    const at::Tensor ys = set.symmetric ? xs : cost_operand(set.y, opt.cost).rows.contiguous();
    const int n = static_cast<int>(set.x.size(1)), m = static_cast<int>(set.y.size(1));
    at::Tensor fresh = at::empty({B, n}, ref.options()), err_rows = at::empty({B, n}, ref.options());
    set.f.zero_();
    set.g.zero_();
    keep.insert(keep.end(), {xs, ys, fresh, err_rows});
    S.x = xs.data_ptr<T>();
    S.y = ys.data_ptr<T>();
    S.a = set.a.data_ptr<T>();
    S.b = set.b.data_ptr<T>();
    S.K = nullptr;
    if (!kOnline) {
      at::Tensor K = at::empty({B, n, m}, ref.options());
      const int blocks = B * ceil_div(n, kRows) * ceil_div(m, kCols);
      const size_t smem = static_cast<size_t>(pass_smem(true).total) * sizeof(T);
      ensure_dynamic_smem(cost_kernel<T, Cost>, smem);
      cost_kernel<T, Cost><<<blocks, kThreads, smem, stream>>>(S.x, S.y, n, m, d, -s, K.data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      keep.push_back(K);
      S.K = K.data_ptr<T>();
    }
    S.f = set.f.data_ptr<T>();
    S.g = set.g.data_ptr<T>();
    S.fresh = fresh.data_ptr<T>();
    S.err_rows = err_rows.data_ptr<T>();
    S.n_iter = set.n_iter.data_ptr<int>();
    S.n_iter_stride = static_cast<int>(set.n_iter.stride(0));
    S.error = set.error.data_ptr<T>();
    S.error_stride = static_cast<int>(set.error.stride(0));
    S.stages = flags.data_ptr<int>() + (si * 2) * B;
    S.done = flags.data_ptr<int>() + (si * 2 + 1) * B;
    S.n = n;
    S.m = m;
    S.symmetric = set.symmetric ? 1 : 0;
  }
  const int problems = P.sets * B;  // the per-problem kernels: block = set * B + batch element

  if (opt.scaling > 0.0) {
    launch_pass<T, kOnline, Cost, Pass::RowMinimum>(P, B, stream);
    stages_kernel<T><<<problems, kThreads, 0, stream>>>(P, B);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const bool any_asymmetric = std::any_of(sets.begin(), sets.end(), [](const ProblemSet& st) { return !st.symmetric; });
  for (int t = 1; t <= P.max_iter; ++t) {
    P.t = t;
    if (any_asymmetric) launch_pass<T, kOnline, Cost, Pass::Columns>(P, B, stream);
    launch_pass<T, kOnline, Cost, Pass::Rows>(P, B, stream);
    finish_kernel<T><<<problems, kThreads, 0, stream>>>(P, B);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // with a tol, look at the done flags now and then: at t = 1, 2, 4, ..., 32, then every 32
    const bool checkpoint = opt.tol > 0 && t < P.max_iter && (t >= 32 ? t % 32 == 0 : (t & (t - 1)) == 0);
    if (checkpoint && flags.select(1, 1).all().item<bool>()) break;
  }
}

template <typename T>
void solve_typed(std::vector<ProblemSet>& sets, const SolverOptions& opt) {
  dispatch_cost(opt.cost, [&](auto cost) {
    using Cost = decltype(cost);
    opt.online ? run<T, true, Cost>(sets, opt) : run<T, false, Cost>(sets, opt);
  });
}

}  // namespace

void solve_cuda_passes(std::vector<ProblemSet>& sets, const SolverOptions& opt) {
  for (const ProblemSet& set : sets)
    TORCH_CHECK_VALUE(set.x.is_cuda() && set.y.is_cuda(), "the CUDA back end got tensors on ", set.x.device());
  const c10::cuda::CUDAGuard guard(sets.front().x.device());
  AT_DISPATCH_FLOATING_TYPES(sets.front().x.scalar_type(), "sinkhorn_solve_cuda_passes",
                             [&] { solve_typed<scalar_t>(sets, opt); });
}

}  // namespace sinsim
