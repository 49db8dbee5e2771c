// Fused envelope-theorem backward of the CUDA back end (SINSIM_CUDA_KERNEL
// part "backward"): the gradient of the value in x and y in ONE launch, with
// no (n, m) temporary.
//
// For a plan P_ij = 2^(u_i + w_j - s C(p_i, q_j)) (u = log2 a + s f,
// w = log2 b + s g, s = log2(e) / eps) the gradient of <P, C> in the points p
// of its rows is, row by row, the cost's pullback (core/cost_table.h) of
// r = P 1 and v = P q~ (q~ the operands of q: unit rows for the cosine cost):
//     squared Euclidean:  G_i = 2 (r_i p_i - v_i)
//     cosine:             G_i = -(v_i - <v_i, ph_i> ph_i) / |p_i|
// The gradient in the column points is the same formula for the
// transposed plan P^T, whose rows are the columns of P: swap (p, a, f) with
// (q, b, g). So every output row block is one kind of task: a block owns 32
// rows of p, walks q in tiles of 64 rows, recomputes the cost of each tile
// (the forward's arithmetic: squared differences summed directly), forms the
// plan tile in shared memory, and accumulates r and P q in registers.
//
// An output takes the sum of up to three such terms, each with a weight:
//     grad_x = G(P_xy; x) - 1/2 G(P_xx; x) - 1/2 G(P_xx^T; x)   (debias)
// and likewise for grad_y, all scaled by the incoming gradient of the batch
// element. One block computes every term of its rows in a fixed order, so the
// result is deterministic (no atomics). The grid covers the row blocks of
// grad_x and of grad_y of every batch element. Features up to kMaxFeatures
// (the product accumulators live in registers); wider problems take the
// composed backward (plan + batched products).
#include "cuda/fused_backward.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <cmath>

#include "cuda/smem.cuh"
#include "cuda/tiles.h"

namespace sinsim {
namespace {

using namespace tiles;


template <typename T>
struct Exp2Fast;
template <>
struct Exp2Fast<float> {
  // one MUFU.EX2; inputs are <= 0 up to rounding, where flushing subnormal
  // results to zero is harmless
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

template <typename T>
__device__ __forceinline__ T log2_of(T v) {
  return ::log2(v);
}

constexpr int kMaxTerms = 3;
constexpr int kMaxTasks = 2;

// A plan whose rows are the task's points p: the points q of its columns,
// the weights and potentials of both sides (natural units) and the term's
// weight in the output.
template <typename T>
struct Term {
  const T* q;   // (B, n_q, d), the cost's operands
  const T* wp;  // weights of the rows (B, n_p)
  const T* fp;  // potential of the rows (B, n_p)
  const T* wq;  // weights of the columns (B, n_q)
  const T* fq;  // potential of the columns (B, n_q)
  int n_q;
  T weight;
};

template <typename T>
struct Task {
  const T* p;      // (B, n_p, d), the cost's operands
  const T* norms;  // unit-row costs: |p_i| of the raw points (B, n_p); unused otherwise
  T* out;          // (B, n_p, d)
  int n_p;
  int terms;
  Term<T> term[kMaxTerms];
};

template <typename T>
struct Params {
  Task<T> task[kMaxTasks];
  int row_blocks[kMaxTasks];
  int tasks;
  int d;
  T s;             // log2(e) / eps
  const T* grad;   // (B,) incoming gradient of the value
};

// Shared memory of a block, in elements of T.
struct Smem {
  int ps, qs, plan, us, ws, total;
};

__host__ __device__ inline Smem smem_layout(int d) {
  Smem L;
  int at = 0;
  L.ps = at; at += d * kLdp;
  L.qs = at; at += d * kLdq;
  L.plan = at; at += kRows * kLdq;
  L.us = at; at += kRows;
  L.ws = at; at += kCols;
  L.total = at;
  return L;
}

// Sum over the 16 threads of a row of the thread grid (consecutive lanes).
template <typename T>
__device__ __forceinline__ T row_sum(T v) {
#pragma unroll
  for (int o = kSide / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T, typename Cost, int DMAX>
__global__ void __launch_bounds__(kThreads) fused_backward_kernel(Params<T> P) {
  constexpr int KREPS = DMAX / kSide;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* const base = reinterpret_cast<T*>(smem_raw);
  const int d = P.d;
  const Smem L = smem_layout(d);
  T* const ps = base + L.ps;
  T* const qs = base + L.qs;
  T* const Ps = base + L.plan;
  T* const us = base + L.us;
  T* const ws = base + L.ws;
  const int tid = threadIdx.x;
  const Exp2Fast<T> exp2;

  const BlockSpot spot = locate_block(blockIdx.x, P.row_blocks, P.tasks);
  const Task<T>& task = P.task[spot.task];
  const int b = spot.batch, n_p = task.n_p, row0 = spot.row0;
  const T* p = task.p + static_cast<int64_t>(b) * n_p * d;
  T* out = task.out + static_cast<int64_t>(b) * n_p * d;
  const T scale = P.grad[b];

  stage_rows(tid, p, row0, kRows, n_p, 0, d, d, ps, kLdp);

  for (int t = 0; t < task.terms; ++t) {
    const Term<T>& term = task.term[t];
    const int n_q = term.n_q;
    const T* q = term.q + static_cast<int64_t>(b) * n_q * d;
    const T* wq = term.wq + static_cast<int64_t>(b) * n_q;
    const T* fq = term.fq + static_cast<int64_t>(b) * n_q;
    for (int r = tid; r < kRows; r += kThreads) {
      const int i = row0 + r;
      us[r] = i < n_p ? log2_of(term.wp[static_cast<int64_t>(b) * n_p + i]) + P.s * term.fp[static_cast<int64_t>(b) * n_p + i]
                      : minus_infinity<T>();
    }
    T rsum[kRowReps];
    T prod[kRowReps][KREPS];
#pragma unroll
    for (int r = 0; r < kRowReps; ++r) {
      rsum[r] = T(0);
#pragma unroll
      for (int k = 0; k < KREPS; ++k) prod[r][k] = T(0);
    }
    for (int j0 = 0; j0 < n_q; j0 += kCols) {
      __syncthreads();  // the previous tile's readers are done
      stage_rows(tid, q, j0, kCols, n_q, 0, d, d, qs, kLdq);
      for (int c = tid; c < kCols; c += kThreads) {
        const int j = j0 + c;
        ws[c] = j < n_q ? log2_of(wq[j]) + P.s * fq[j] : minus_infinity<T>();
      }
      __syncthreads();
      T acc[kRowReps][kColReps];
#pragma unroll
      for (int r = 0; r < kRowReps; ++r)
#pragma unroll
        for (int c = 0; c < kColReps; ++c) acc[r][c] = T(0);
      add_cost<T, Cost>(tid, ps, qs, d, acc);
      plan_tile<T, Cost>(tid, acc, us, ws, P.s, Ps, rsum, exp2);
      __syncthreads();
      add_product<T, KREPS>(tid, Ps, qs, min(kCols, n_q - j0), d, prod);
    }

    // epilogue: this term's gradient rows, weighted, into the output
    const T w = scale * term.weight;
#pragma unroll
    for (int r = 0; r < kRowReps; ++r) {
      const int row = row_of(tid, r), i = row0 + row;
      const T rs = row_sum(rsum[r]);
      T dot = T(0);
      if (Cost::kUnitRows) {
#pragma unroll
        for (int k = 0; k < KREPS; ++k) {
          const int f = feature_of(tid, k);
          if (f < d) dot += prod[r][k] * ps[f * kLdp + row];
        }
        dot = row_sum(dot);
      }
      if (i >= n_p) continue;
      const T norm = Cost::kUnitRows ? task.norms[static_cast<int64_t>(b) * n_p + i] : T(1);
#pragma unroll
      for (int k = 0; k < KREPS; ++k) {
        const int f = feature_of(tid, k);
        if (f >= d) continue;
        const T pf = ps[f * kLdp + row];
        const T g = Cost::pullback(rs, prod[r][k], pf, dot, norm);
        T* o = out + static_cast<int64_t>(i) * d + f;
        *o = t == 0 ? w * g : *o + w * g;
      }
    }
  }
}

template <typename T, typename Cost, int DMAX>
void launch(const Params<T>& P, int blocks, size_t smem_bytes, cudaStream_t stream) {
  auto kernel = fused_backward_kernel<T, Cost, DMAX>;
  ensure_dynamic_smem(kernel, smem_bytes);
  kernel<<<blocks, kThreads, smem_bytes, stream>>>(P);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
int max_features() {
  return sizeof(T) == 4 ? 256 : 128;
}

template <typename T>
size_t smem_bytes_for(int d) {
  return static_cast<size_t>(smem_layout(d).total) * sizeof(T);
}

int smem_optin(int device) {
  int bytes = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return bytes;
}

template <typename T>
Term<T> term(const at::Tensor& q, const at::Tensor& wp, const at::Tensor& fp, const at::Tensor& wq,
             const at::Tensor& fq, double weight) {
  return Term<T>{q.data_ptr<T>(), wp.data_ptr<T>(), fp.data_ptr<T>(), wq.data_ptr<T>(), fq.data_ptr<T>(),
                 static_cast<int>(q.size(1)), static_cast<T>(weight)};
}

}  // namespace

bool fused_backward_supported(const at::Tensor& x) {
  const int d = static_cast<int>(x.size(2));
  const bool fits_registers = x.scalar_type() == at::kFloat ? d <= max_features<float>() : d <= max_features<double>();
  if (!fits_registers) return false;
  const size_t need = x.scalar_type() == at::kFloat ? smem_bytes_for<float>(d) : smem_bytes_for<double>(d);
  return need <= static_cast<size_t>(smem_optin(x.get_device()));
}

std::tuple<at::Tensor, at::Tensor> fused_backward_cuda(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
    const at::Tensor& f, const at::Tensor& g, const at::Tensor& f_xx, const at::Tensor& g_xx, const at::Tensor& f_yy,
    const at::Tensor& g_yy, double eps, CostKind cost, bool debias) {
  const c10::cuda::CUDAGuard guard(x.device());
  // the cost's operands, and for unit-row costs the raw norms (unread otherwise)
  const CostOperand ox = cost_operand(x, cost), oy = cost_operand(y, cost);
  const at::Tensor xs = ox.rows.contiguous(), ys = oy.rows.contiguous();
  const at::Tensor nx = ox.norms.defined() ? ox.norms.contiguous() : x;
  const at::Tensor ny = oy.norms.defined() ? oy.norms.contiguous() : y;
  const at::Tensor grad_t = grad.to(x.scalar_type()).contiguous();
  at::Tensor gx = at::empty_like(x), gy = at::empty_like(y);
  const int B = static_cast<int>(x.size(0)), n = static_cast<int>(x.size(1)), m = static_cast<int>(y.size(1));
  const int d = static_cast<int>(x.size(2));

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sinkhorn_fused_backward_cuda", [&] {
    using T = scalar_t;
    Params<T> P{};
    P.tasks = 2;
    P.d = d;
    P.s = static_cast<T>(kLog2e / eps);
    P.grad = grad_t.data_ptr<T>();
    // grad_x: rows of P_xy (and, with debias, of P_xx and P_xx^T)
    Task<T>& tx = P.task[0];
    tx.p = xs.data_ptr<T>();
    tx.norms = nx.data_ptr<T>();
    tx.out = gx.data_ptr<T>();
    tx.n_p = n;
    tx.term[0] = term<T>(ys, a, f, b, g, 1.0);
    tx.terms = 1;
    // grad_y: rows of P_xy^T (and of P_yy, P_yy^T)
    Task<T>& ty = P.task[1];
    ty.p = ys.data_ptr<T>();
    ty.norms = ny.data_ptr<T>();
    ty.out = gy.data_ptr<T>();
    ty.n_p = m;
    ty.term[0] = term<T>(xs, b, g, a, f, 1.0);
    ty.terms = 1;
    if (debias) {
      tx.term[1] = term<T>(xs, a, f_xx, a, g_xx, -0.5);
      tx.term[2] = term<T>(xs, a, g_xx, a, f_xx, -0.5);
      ty.term[1] = term<T>(ys, b, f_yy, b, g_yy, -0.5);
      ty.term[2] = term<T>(ys, b, g_yy, b, f_yy, -0.5);
      tx.terms = ty.terms = 3;
    }
    P.row_blocks[0] = ceil_div(n, kRows);
    P.row_blocks[1] = ceil_div(m, kRows);
    const int blocks = B * (P.row_blocks[0] + P.row_blocks[1]);
    const size_t smem = smem_bytes_for<T>(d);
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    dispatch_cost(cost, [&](auto kind) {
      using Cost = decltype(kind);
      if constexpr (sizeof(T) == 8) {
        launch<T, Cost, 128>(P, blocks, smem, stream);
      } else if (d <= 128) {
        launch<T, Cost, 128>(P, blocks, smem, stream);
      } else {
        launch<T, Cost, 256>(P, blocks, smem, stream);
      }
    });
  });
  return {gx, gy};
}

}  // namespace sinsim
