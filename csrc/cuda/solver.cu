// CUDA back end of the Sinkhorn operator.
//
// 1. cost_kernel: the scaled cost K = -log2(e)/eps * C (tiled, fp32/fp64
//    accumulation, squared differences computed directly so nothing cancels),
//    written once; the backward reuses it with an exp2 epilogue to form P.
// 2. sinkhorn_kernel: ALL iterations of a batch of problems in ONE launch.
//    Each problem is split by rows over K = Q x G thread blocks: Q thread-block
//    clusters of G blocks (G <= 16). A block keeps its rows of K in shared
//    memory (what does not fit is streamed from L2) and the potentials it needs
//    in registers and shared memory. One iteration is
//      A) row update of the block's rows (local: rows are whole in a block),
//      B) partial column log-sum-exps over the block's rows (max, sum pairs),
//      C) an exchange that merges the pairs of the K blocks: inside a cluster
//         through distributed shared memory (each block merges a slice of the
//         columns), across clusters through global memory and a flag barrier,
//         then every block gathers the new column potential.
//    The marginal error travels with the exchange, so every block takes the
//    same early-stopping decision on the device, with no host round trip.
//    Symmetric problems (debias) exchange the averaged row potential instead.
// Maths and notation: core/sinkhorn.h.
#include "core/sinkhorn.h"

#include "cuda/kernel_choice.h"

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <mutex>
#include <utility>
#include <vector>

namespace cg = cooperative_groups;

namespace sinsim {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr int kChunkA = 4;  // vectors per lane in flight in the row phase
constexpr int kChunkB = 8;  // rows per thread in flight in the column phase

#define SINSIM_CUDA_CHECK(expr)                                                               \
  do {                                                                                        \
    const cudaError_t err_ = (expr);                                                          \
    TORCH_CHECK(err_ == cudaSuccess, "sinsim_ext CUDA error in ", #expr, ": ",               \
                cudaGetErrorString(err_));                                                    \
  } while (0)

// ----------------------------------------------------------------- numerics

template <typename T>
struct Num;
template <>
struct Num<float> {
  using Vec = float4;
  static constexpr int kWidth = 4;
  // one MUFU.EX2 (exp2f adds a denormal fix-up around it); callers pass
  // v <= 0, where flushing subnormal results to zero is harmless
  __device__ static float exp2(float v) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
    return r;
  }
  __device__ static float log2(float v) { return log2f(v); }
  __device__ static float expm1(float v) { return expm1f(v); }
  __device__ static float at(const Vec& v, int c) { return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w; }
  __device__ static Vec fill(float s) { return make_float4(s, s, s, s); }
};
template <>
struct Num<double> {
  using Vec = double2;
  static constexpr int kWidth = 2;
  __device__ static double exp2(double v) { return ::exp2(v); }
  __device__ static double log2(double v) { return ::log2(v); }
  __device__ static double expm1(double v) { return ::expm1(v); }
  __device__ static double at(const Vec& v, int c) { return c == 0 ? v.x : v.y; }
  __device__ static Vec fill(double s) { return make_double2(s, s); }
};

template <typename T>
__device__ __forceinline__ T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// Running log-sum-exp (base 2) as a (max, sum) pair: value = max + log2(sum).
template <typename T>
__device__ __forceinline__ void lse_merge(T& mx, T& sm, T other_mx, T other_sm) {
  const T nm = other_mx > mx ? other_mx : mx;
  if (nm == neg_inf<T>()) return;  // both empty
  const T a = mx == neg_inf<T>() ? T(0) : sm * Num<T>::exp2(mx - nm);
  const T b = other_mx == neg_inf<T>() ? T(0) : other_sm * Num<T>::exp2(other_mx - nm);
  mx = nm;
  sm = a + b;
}

// Adds a chunk of values whose maximum is cm to a running pair.
template <typename T>
__device__ __forceinline__ void lse_rescale(T& mx, T& sm, T cm) {
  if (cm > mx) {
    sm = mx == neg_inf<T>() ? T(0) : sm * Num<T>::exp2(mx - cm);
    mx = cm;
  }
}

// --------------------------------------------------------- cluster helpers

__device__ __forceinline__ unsigned int load_acquire(const unsigned int* p) {
  unsigned int v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void cluster_barrier() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cg::this_cluster().sync();
#else
  __syncthreads();
#endif
}

template <typename P>
__device__ __forceinline__ P* rank_ptr(P* local, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cg::this_cluster().map_shared_rank(local, rank);
#else
  return local;
#endif
}

// ------------------------------------------------------------- cost kernel

constexpr int kTile = 64, kTileK = 16, kTileThreads = 256;

// out[b][i][j] = scale * c(x_i, y_j) for j < m (-inf in the padding up to ld);
// with a plan epilogue: out = 2^(u_i + w_j + scale * c(x_i, y_j)). The cost
// (core/cost_table.h) is chosen by a run-time flag between its two entries;
// another cost needs a CostKind argument here instead, which changes the
// machine code of this verified kernel (run its tests on a device).
template <typename T, bool kPlan>
__global__ void __launch_bounds__(kTileThreads)
    cost_kernel(const T* __restrict__ X, const T* __restrict__ Y, const T* __restrict__ u,
                const T* __restrict__ w, int n, int m, int d, int ld, T scale, bool cosine,
                T* __restrict__ out) {
  __shared__ T xs[kTileK][kTile + 1];
  __shared__ T ys[kTileK][kTile + 1];
  const int b = blockIdx.z;
  X += static_cast<int64_t>(b) * n * d;
  Y += static_cast<int64_t>(b) * m * d;
  out += static_cast<int64_t>(b) * n * ld;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int i0 = blockIdx.y * kTile, j0 = blockIdx.x * kTile;
  T acc[4][4];
#pragma unroll
  for (int p = 0; p < 4; ++p)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[p][q] = T(0);

  for (int k0 = 0; k0 < d; k0 += kTileK) {
    for (int e = threadIdx.x; e < kTile * kTileK; e += kTileThreads) {
      const int r = e / kTileK, c = e % kTileK;
      const int gk = k0 + c;
      xs[c][r] = (i0 + r < n && gk < d) ? X[static_cast<int64_t>(i0 + r) * d + gk] : T(0);
      ys[c][r] = (j0 + r < m && gk < d) ? Y[static_cast<int64_t>(j0 + r) * d + gk] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int c = 0; c < kTileK; ++c) {
      T xv[4], yv[4];
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        xv[p] = xs[c][ty + 16 * p];
        yv[p] = ys[c][tx + 16 * p];
      }
#pragma unroll
      for (int p = 0; p < 4; ++p)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          T f1, f2;
          if (cosine) {
            Cost<CostKind::Cosine>::factors(xv[p], yv[q], f1, f2);
          } else {
            Cost<CostKind::SqEuclidean>::factors(xv[p], yv[q], f1, f2);
          }
          acc[p][q] += f1 * f2;
        }
    }
    __syncthreads();
  }
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    const int i = i0 + ty + 16 * p;
    if (i >= n) continue;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int j = j0 + tx + 16 * q;
      if (j >= ld) continue;
      T v;
      if (j >= m) {
        v = neg_inf<T>();
      } else {
        const T c = cosine ? Cost<CostKind::Cosine>::finish(acc[p][q]) : Cost<CostKind::SqEuclidean>::finish(acc[p][q]);
        v = scale * c;
        if (kPlan) v = Num<T>::exp2(u[static_cast<int64_t>(b) * n + i] + w[static_cast<int64_t>(b) * m + j] + v);
      }
      out[static_cast<int64_t>(i) * ld + j] = v;
    }
  }
}

// Launches cost_kernel over B problems; x, y are the cost's operands (cost_operand).
template <typename T, bool kPlan>
void launch_cost(const at::Tensor& x, const at::Tensor& y, const T* u, const T* w, int ld, T scale,
                 bool cosine, T* out) {
  const int B = x.size(0), n = x.size(1), m = y.size(1), d = x.size(2);
  const dim3 grid((ld + kTile - 1) / kTile, (n + kTile - 1) / kTile, B);
  cost_kernel<T, kPlan><<<grid, kTileThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      x.data_ptr<T>(), y.data_ptr<T>(), u, w, n, m, d, ld, scale, cosine, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// --------------------------------------------------------- sinkhorn kernel

template <typename T>
struct ProblemDesc {
  const T* K;   // scaled cost, n x ld
  const T* a;   // weights of the rows (n)
  const T* la;  // log2 a (n)
  const T* lb;  // log2 of the column weights (m)
  T* f;         // outputs, natural units
  T* g;
  int* n_iter;
  T* error;
  int n, m, ld;
  int symmetric;
};

template <typename T>
struct LaunchParams {
  const ProblemDesc<T>* problems;
  int Q, G;              // clusters per problem, blocks per cluster (a power of two <= 16)
  int slab_capacity;     // elements of K a block may keep in shared memory
  int max_ld, max_rows;  // sizes of the shared buffers
  int scratch;           // elements of the scratch buffer
  int max_iter;
  double tol;            // <= 0: no early stop
  T inv_scale;           // eps / log2(e): scaled -> natural units
  T* exchange;           // Q > 1: per problem [2 parity][Q][2 * max_ld + 2]
  unsigned int* counters;  // Q > 1: per problem arrival counter
};

__host__ __device__ inline int align_up(int v, int to) { return (v + to - 1) / to * to; }

// Offsets (elements of T) of a block's shared buffers; the host sizes the
// allocation with the same function.
struct SmemPlan {
  int gamma;     // column potential (scaled), max_ld
  int kappa;     // lb + gamma, max_ld (read as vectors)
  int recv_m;    // partial maxima pushed to this block for its column slice, G x slice
  int recv_s;    // partial sums, G x slice
  int recv_err;  // error partials pushed to this block, one per rank
  int lb_slice;  // log2 b over this block's column slice
  int phi;       // row potentials of the block's rows
  int fresh;     // results of the row update
  int alpha;     // la + phi
  int scratch;
  int misc;      // [0] error of this block, [1] error of the problem
  int slab;      // rows of K kept on chip (16-byte aligned)
};

__host__ __device__ inline SmemPlan smem_plan(int max_ld, int max_rows, int scratch, int G, int vw) {
  const int slice = (max_ld + G - 1) / G;
  SmemPlan s;
  int p = 0;
  s.gamma = p; p += max_ld;
  s.kappa = p; p += max_ld;
  s.recv_m = p; p += G * slice;
  s.recv_s = p; p += G * slice;
  s.recv_err = p; p += 16;
  s.lb_slice = p; p += slice;
  s.phi = p; p += max_rows;
  s.fresh = p; p += max_rows;
  s.alpha = p; p += max_rows;
  s.scratch = p; p += scratch;
  s.misc = p; p += 8;
  s.slab = align_up(p, vw);
  return s;
}

template <typename T>
__device__ __forceinline__ typename Num<T>::Vec load_vec(const T* row, int idx, bool on_chip) {
  using Vec = typename Num<T>::Vec;
  return on_chip ? reinterpret_cast<const Vec*>(row)[idx] : __ldg(reinterpret_cast<const Vec*>(row) + idx);
}

// Block-wide deterministic sum; result valid in thread 0.
template <typename T>
__device__ T block_sum(T v, T* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  T total = T(0);
  if (threadIdx.x == 0)
    for (int w = 0; w < kWarps; ++w) total += red[w];
  return total;
}

// (max, sum) pairs merged across groups of `width` consecutive lanes (a power
// of two <= 32); every lane of a group ends with the group's result. The
// maximum is reduced first, so each lane rescales its sum with one exp2.
template <typename T>
__device__ __forceinline__ void group_merge(T& mx, T& sm, int width) {
  T top = mx;
  for (int o = width / 2; o > 0; o >>= 1) {
    const T other = __shfl_xor_sync(0xffffffffu, top, o);
    top = other > top ? other : top;
  }
  T part = mx == neg_inf<T>() ? T(0) : sm * Num<T>::exp2(mx - top);
  for (int o = width / 2; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
  mx = top;
  sm = part;
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 1) sinkhorn_kernel(LaunchParams<T> P) {
  using Vec = typename Num<T>::Vec;
  constexpr int VW = Num<T>::kWidth;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* const base = reinterpret_cast<T*>(smem_raw);
  const int G = P.G;
  const SmemPlan L = smem_plan(P.max_ld, P.max_rows, P.scratch, G, VW);
  T* const gamma = base + L.gamma;
  T* const kappa = base + L.kappa;
  T* const recv_m = base + L.recv_m;
  T* const recv_s = base + L.recv_s;
  T* const recv_err = base + L.recv_err;
  T* const lb_slice = base + L.lb_slice;
  T* const phi = base + L.phi;
  T* const fresh = base + L.fresh;
  T* const alpha = base + L.alpha;
  T* const scratch = base + L.scratch;
  T* const misc = base + L.misc;
  T* const slab = base + L.slab;

  const int per_problem = P.Q * G;
  const int pid = blockIdx.x / per_problem;
  const int k = blockIdx.x % per_problem;  // block index inside the problem
  const int q = k / G;                     // cluster index inside the problem
  const int rank = k % G;                  // == cluster block rank (clusters are contiguous)
  const ProblemDesc<T> pd = P.problems[pid];
  const int n = pd.n, m = pd.m, ld = pd.ld;
  const int R = (n + per_problem - 1) / per_problem;
  const int row0 = min(n, k * R);
  const int rows = min(R, n - row0);
  const int slab_rows = min(rows, P.slab_capacity / ld);
  const int nq = ld / VW;
  const int slice = (ld + G - 1) / G;  // columns merged by each block of a cluster
  const int j_lo = min(ld, rank * slice), j_hi = min(ld, j_lo + slice);
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const bool sym = pd.symmetric != 0;
  const T* Kg = pd.K + static_cast<int64_t>(row0) * ld;

  // a buffer of block `r` of this cluster (this block's own when G == 1)
  auto remote = [&](T* local, int r) -> T* { return G == 1 ? local : rank_ptr(local, r); };

  // ---- prologue: rows to shared memory, potentials to zero
  for (int e = tid; e < slab_rows * nq; e += kThreads)
    reinterpret_cast<Vec*>(slab)[e] = __ldg(reinterpret_cast<const Vec*>(Kg) + e);
  for (int r = tid; r < rows; r += kThreads) {
    phi[r] = T(0);
    alpha[r] = pd.la[row0 + r];
  }
  for (int j = tid; j < ld; j += kThreads) {
    gamma[j] = T(0);
    kappa[j] = j < m ? pd.lb[j] : neg_inf<T>();
  }
  for (int j = j_lo + tid; j < j_hi; j += kThreads) lb_slice[j - j_lo] = j < m ? pd.lb[j] : neg_inf<T>();
  __syncthreads();

  auto row_ptr = [&](int r) -> const T* {
    return r < slab_rows ? slab + static_cast<int64_t>(r) * ld : Kg + static_cast<int64_t>(r) * ld;
  };

  // The payload of column j goes straight into the shared memory of the
  // block that merges j (remote stores do not wait for a round trip).
  auto push_partial = [&](int j, T mx, T sm) {
    const int owner = j / slice, jj = j - owner * slice;
    remote(recv_m, owner)[rank * slice + jj] = mx;
    remote(recv_s, owner)[rank * slice + jj] = sm;
  };

  // ---- B) partial column log-sum-exps of alpha_r + K_rj over this block's rows
  auto column_partials = [&]() {
    const int RS = max(1, min(kThreads / nq, rows / kChunkB));
    const int per = (rows + RS - 1) / RS;  // contiguous rows of one task
    for (int task = tid; task < nq * RS; task += kThreads) {
      const int qv = task % nq, rs = task / nq;
      const int r_end = min(rows, (rs + 1) * per);
      T mx[VW], sm[VW];
#pragma unroll
      for (int c = 0; c < VW; ++c) { mx[c] = neg_inf<T>(); sm[c] = T(0); }
      for (int r0 = rs * per; r0 < r_end; r0 += kChunkB) {
        const int cnt = min(kChunkB, r_end - r0);
        Vec kv[kChunkB];
        T al[kChunkB];
#pragma unroll
        for (int u = 0; u < kChunkB; ++u) {
          if (u < cnt) {
            kv[u] = load_vec(row_ptr(r0 + u), qv, r0 + u < slab_rows);
            al[u] = alpha[r0 + u];
          } else {
            kv[u] = Num<T>::fill(T(0));
            al[u] = neg_inf<T>();
          }
        }
#pragma unroll
        for (int c = 0; c < VW; ++c) {
          T cm = neg_inf<T>();
#pragma unroll
          for (int u = 0; u < kChunkB; ++u) {
            const T v = al[u] + Num<T>::at(kv[u], c);
            cm = v > cm ? v : cm;
          }
          lse_rescale(mx[c], sm[c], cm);
          if (mx[c] != neg_inf<T>()) {
#pragma unroll
            for (int u = 0; u < kChunkB; ++u)
              if (u < cnt) sm[c] += Num<T>::exp2(al[u] + Num<T>::at(kv[u], c) - mx[c]);
          }
        }
      }
#pragma unroll
      for (int c = 0; c < VW; ++c) {
        const int j = qv * VW + c;
        if (RS == 1) {
          push_partial(j, mx[c], sm[c]);
        } else {
          scratch[2 * (rs * ld + j)] = mx[c];
          scratch[2 * (rs * ld + j) + 1] = sm[c];
        }
      }
    }
    if (RS > 1) {
      __syncthreads();
      for (int j = tid; j < ld; j += kThreads) {
        T top = neg_inf<T>();
        for (int rs = 0; rs < RS; ++rs) top = fmax(top, scratch[2 * (rs * ld + j)]);
        T sum = T(0);
        if (top != neg_inf<T>())
          for (int rs = 0; rs < RS; ++rs) {
            const T m_rs = scratch[2 * (rs * ld + j)];
            if (m_rs != neg_inf<T>()) sum += scratch[2 * (rs * ld + j) + 1] * Num<T>::exp2(m_rs - top);
          }
        push_partial(j, top, sum);
      }
    }
  };

  // this block's error partial (in misc[0]) to every block of the cluster
  auto push_error = [&]() {
    __syncthreads();
    if (tid < G) remote(recv_err, tid)[rank] = misc[0];
  };

  // the new column potential v_j to block r of the cluster
  auto push_potential = [&](int j, int r, T v) {
    remote(gamma, r)[j] = v;
    remote(kappa, r)[j] = j < m ? lb_slice[j - j_lo] + v : neg_inf<T>();  // padding: v is +inf
  };

  // ---- C) merge the pushed payloads: the problem's error, then unless the
  // iterations stop, the new column potential pushed into every block.
  int epoch = 0;  // exchanges done (parity of the cross-cluster buffer, barrier target)
  auto exchange = [&](bool may_stop, int t, bool& stop) -> T {
    cluster_barrier();  // every payload of the cluster has landed
    T err = T(0);
    for (int r = 0; r < G; ++r) err += recv_err[r];
    // core/schedule.h's stops_at_target, written out: calling it changes this kernel's machine code
    stop = may_stop && (t >= P.max_iter || (P.tol > 0 && static_cast<double>(err) < P.tol));
    if (P.Q == 1) {
      for (int b0 = 0; b0 < slice * G; b0 += kThreads) {
        const int idx = b0 + tid, jj = idx / G, r = idx % G, j = j_lo + jj;
        const bool valid = jj < slice && j < j_hi;
        T mx = valid ? recv_m[r * slice + jj] : neg_inf<T>();
        T sm = valid ? recv_s[r * slice + jj] : T(0);
        group_merge(mx, sm, G);
        if (valid && !stop) push_potential(j, r, -(mx + Num<T>::log2(sm)));
      }
    } else {
      const int stride = 2 * P.max_ld + 2;
      T* ex = P.exchange + (static_cast<int64_t>(pid) * 2 + (epoch & 1)) * P.Q * stride;
      for (int b0 = 0; b0 < slice * G; b0 += kThreads) {
        const int idx = b0 + tid, jj = idx / G, r = idx % G, j = j_lo + jj;
        const bool valid = jj < slice && j < j_hi;
        T mx = valid ? recv_m[r * slice + jj] : neg_inf<T>();
        T sm = valid ? recv_s[r * slice + jj] : T(0);
        group_merge(mx, sm, G);
        if (valid && r == 0) {
          ex[static_cast<int64_t>(q) * stride + 2 * j] = mx;
          ex[static_cast<int64_t>(q) * stride + 2 * j + 1] = sm;
        }
      }
      if (tid == 0 && rank == 0) ex[static_cast<int64_t>(q) * stride + 2 * P.max_ld] = err;
      __threadfence();
      __syncthreads();
      if (tid == 0) {
        const unsigned int target = static_cast<unsigned int>((epoch + 1) * P.Q * G);
        atomicAdd(P.counters + pid, 1u);
        while (load_acquire(P.counters + pid) < target) {
        }
        __threadfence();
      }
      __syncthreads();
      int Qp = 1;
      while (Qp < P.Q) Qp *= 2;  // Q <= 32
      if (warp == 0) {
        T e = lane < P.Q ? __ldcg(ex + static_cast<int64_t>(lane) * stride + 2 * P.max_ld) : T(0);
        for (int o = 16; o > 0; o >>= 1) e += __shfl_xor_sync(0xffffffffu, e, o);
        if (lane == 0) misc[1] = e;
      }
      __syncthreads();
      err = misc[1];
      stop = may_stop && (t >= P.max_iter || (P.tol > 0 && static_cast<double>(err) < P.tol));  // as above
      for (int b0 = 0; b0 < slice * Qp; b0 += kThreads) {
        const int idx = b0 + tid, jj = idx / Qp, qq = idx % Qp, j = j_lo + jj;
        const bool valid = jj < slice && j < j_hi;
        T mx = neg_inf<T>(), sm = T(0);
        if (valid && qq < P.Q) {
          const T* src = ex + static_cast<int64_t>(qq) * stride + 2 * j;
          mx = __ldcg(src);
          sm = __ldcg(src + 1);
        }
        group_merge(mx, sm, Qp);
        if (valid && !stop)
          for (int r = qq; r < G; r += Qp) push_potential(j, r, -(mx + Num<T>::log2(sm)));
      }
    }
    ++epoch;
    cluster_barrier();  // the new potential has landed everywhere
    return err;
  };

  bool stop = false;
  if (!sym) {  // first column update, from phi = 0
    if (tid == 0) misc[0] = T(0);
    column_partials();
    push_error();
    exchange(false, 0, stop);
  }

  const int CS = max(1, kWarps / max(rows, 1));
  int t = 1;
  T err = T(0);
  for (;; ++t) {
    // ---- A) row update: fresh_r = -LSE2_j(kappa_j + K_rj)
    for (int task = warp; task < rows * CS; task += kWarps) {
      const int r = task / CS, c = task % CS;
      const int q_lo = c * nq / CS, q_hi = (c + 1) * nq / CS;
      const T* Kr = row_ptr(r);
      const bool on_chip = r < slab_rows;
      T mx = neg_inf<T>(), sm = T(0);
      if (q_hi - q_lo <= 32 * kChunkA) {
        // the segment fits in registers: warp maximum first, then one exp2 per entry
        Vec kv[kChunkA], cv[kChunkA];
#pragma unroll
        for (int u = 0; u < kChunkA; ++u) {
          const int idx = q_lo + lane + 32 * u;
          if (idx < q_hi) {
            kv[u] = load_vec(Kr, idx, on_chip);
            cv[u] = reinterpret_cast<const Vec*>(kappa)[idx];
          } else {
            kv[u] = Num<T>::fill(T(0));
            cv[u] = Num<T>::fill(neg_inf<T>());
          }
        }
        T top = neg_inf<T>();
#pragma unroll
        for (int u = 0; u < kChunkA; ++u)
#pragma unroll
          for (int c2 = 0; c2 < VW; ++c2) {
            const T v = Num<T>::at(cv[u], c2) + Num<T>::at(kv[u], c2);
            top = v > top ? v : top;
          }
        for (int o = 16; o > 0; o >>= 1) {
          const T other = __shfl_xor_sync(0xffffffffu, top, o);
          top = other > top ? other : top;
        }
        T part = T(0);
        if (top != neg_inf<T>()) {
#pragma unroll
          for (int u = 0; u < kChunkA; ++u)
            if (q_lo + lane + 32 * u < q_hi)
#pragma unroll
              for (int c2 = 0; c2 < VW; ++c2)
                part += Num<T>::exp2(Num<T>::at(cv[u], c2) + Num<T>::at(kv[u], c2) - top);
        }
        for (int o = 16; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
        mx = top;
        sm = part;
      } else {
        for (int q0 = q_lo + lane; q0 < q_hi; q0 += 32 * kChunkA) {
          Vec kv[kChunkA], cv[kChunkA];
#pragma unroll
          for (int u = 0; u < kChunkA; ++u) {
            const int idx = q0 + 32 * u;
            if (idx < q_hi) {
              kv[u] = load_vec(Kr, idx, on_chip);
              cv[u] = reinterpret_cast<const Vec*>(kappa)[idx];
            } else {
              kv[u] = Num<T>::fill(T(0));
              cv[u] = Num<T>::fill(neg_inf<T>());
            }
          }
          T cm = neg_inf<T>();
#pragma unroll
          for (int u = 0; u < kChunkA; ++u)
#pragma unroll
            for (int c2 = 0; c2 < VW; ++c2) {
              const T v = Num<T>::at(cv[u], c2) + Num<T>::at(kv[u], c2);
              cm = v > cm ? v : cm;
            }
          lse_rescale(mx, sm, cm);
          if (mx != neg_inf<T>()) {
#pragma unroll
            for (int u = 0; u < kChunkA; ++u)
#pragma unroll
              for (int c2 = 0; c2 < VW; ++c2)
                sm += Num<T>::exp2(Num<T>::at(cv[u], c2) + Num<T>::at(kv[u], c2) - mx);
          }
        }
        group_merge(mx, sm, 32);
      }
      if (lane == 0) {
        scratch[2 * task] = mx;
        scratch[2 * task + 1] = sm;
      }
    }
    __syncthreads();
    T e_part = T(0);
    for (int r = tid; r < rows; r += kThreads) {
      T mx = neg_inf<T>(), sm = T(0);
      for (int c = 0; c < CS; ++c) lse_merge(mx, sm, scratch[2 * (r * CS + c)], scratch[2 * (r * CS + c) + 1]);
      const T value = -(mx + Num<T>::log2(sm));
      const T old = sym ? gamma[row0 + r] : phi[r];
      const T ar = pd.a[row0 + r];
      e_part += ar > T(0) ? ar * fabs(Num<T>::expm1((old - value) * T(0.6931471805599453))) : T(0);
      fresh[r] = value;
      if (!sym) {
        phi[r] = value;
        alpha[r] = pd.la[row0 + r] + value;
      }
    }
    const T e_block = block_sum(e_part, scratch);
    if (tid == 0) misc[0] = e_block;
    __syncthreads();

    // ---- B) payload: partial column sums, or the averaged symmetric potential
    if (!sym) {
      column_partials();
    } else {
      for (int j = tid; j < ld; j += kThreads) {
        const bool mine = j >= row0 && j < row0 + rows;
        push_partial(j, mine ? -T(0.5) * (gamma[j] + fresh[j - row0]) : neg_inf<T>(), mine ? T(1) : T(0));
      }
    }
    push_error();
    err = exchange(true, t, stop);
    if (stop) break;
  }

  // ---- outputs: f = fresh rows, g = the column potential used by the last row update
  for (int r = tid; r < rows; r += kThreads) pd.f[row0 + r] = fresh[r] * P.inv_scale;
  if (q == 0)
    for (int j = j_lo + tid; j < min(j_hi, m); j += kThreads) pd.g[j] = gamma[j] * P.inv_scale;
  if (k == 0 && tid == 0) {
    *pd.n_iter = t;
    *pd.error = err;
  }
  cluster_barrier();  // nobody leaves while a neighbour may still write into its shared memory
}

// ------------------------------------------------------------------ host side

struct DeviceInfo {
  int sms = 0;
  int smem_optin = 0;
  int major = 0;
};

DeviceInfo query_device_info(int device) {
  DeviceInfo info;
  SINSIM_CUDA_CHECK(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, device));
  SINSIM_CUDA_CHECK(cudaDeviceGetAttribute(&info.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  SINSIM_CUDA_CHECK(cudaDeviceGetAttribute(&info.major, cudaDevAttrComputeCapabilityMajor, device));
  return info;
}


DeviceInfo device_info(int device) {
  static std::mutex lock;
  static std::map<int, DeviceInfo> cache;
  const std::lock_guard<std::mutex> guard(lock);
  auto it = cache.find(device);
  if (it == cache.end()) it = cache.emplace(device, query_device_info(device)).first;
  return it->second;
}

struct Layout {
  int G = 1, Q = 1;
  int max_ld = 0, max_rows = 0, scratch = 0, slab_capacity = 0;
  size_t smem_bytes = 0;
};

// Shared-memory plan for G blocks per cluster and Q clusters per problem;
// empty when the fixed buffers alone do not fit.
template <typename T>
std::optional<Layout> plan_layout(const std::vector<ProblemDesc<T>>& probs, int G, int Q, const DeviceInfo& dev) {
  Layout L;
  L.G = G;
  L.Q = Q;
  const int K = G * Q;
  int max_rows = 1, max_ld = Num<T>::kWidth, scratch = 2 * kWarps;
  for (const auto& p : probs) {
    const int R = (p.n + K - 1) / K;
    max_rows = std::max(max_rows, R);
    max_ld = std::max(max_ld, p.ld);
    const int nq = p.ld / Num<T>::kWidth;
    const int RS = std::max(1, std::min(kThreads / nq, R / kChunkB));
    if (RS > 1) scratch = std::max(scratch, 2 * RS * p.ld);
    const int CS = std::max(1, kWarps / std::max(R, 1));
    scratch = std::max(scratch, 2 * R * CS);
  }
  L.max_rows = max_rows;
  L.max_ld = max_ld;
  L.scratch = scratch;
  const size_t fixed = smem_plan(max_ld, max_rows, scratch, G, Num<T>::kWidth).slab;
  const size_t budget = static_cast<size_t>(dev.smem_optin) / sizeof(T);
  if (fixed + max_ld > budget) return std::nullopt;  // not even one row of K on chip
  // keep the largest row block on chip if it fits, else as many rows as fit
  const size_t want = static_cast<size_t>(max_rows) * max_ld;
  L.slab_capacity = static_cast<int>(std::min(want, budget - fixed));
  L.smem_bytes = (fixed + L.slab_capacity) * sizeof(T);
  return L;
}

template <typename T>
int max_active_clusters(const Layout& L, int num_blocks) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(num_blocks);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = L.smem_bytes;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = L.G;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  int clusters = 0;
  const cudaError_t err = cudaOccupancyMaxActiveClusters(&clusters, sinkhorn_kernel<T>, &cfg);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear: this size is simply not available
    return 0;
  }
  return clusters;
}

template <typename T>
void prepare_kernel_attributes(const DeviceInfo& dev) {
  SINSIM_CUDA_CHECK(cudaFuncSetAttribute(sinkhorn_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         dev.smem_optin));
  if (dev.major >= 9) {
    SINSIM_CUDA_CHECK(cudaFuncSetAttribute(sinkhorn_kernel<T>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  }
}

// SINSIM_CUDA_LAYOUT="G,Q" forces G blocks per cluster and Q clusters per
// problem (for experiments and benchmarks of the layouts themselves).
inline std::optional<std::pair<int, int>> forced_layout() {
  const char* env = std::getenv("SINSIM_CUDA_LAYOUT");
  if (env == nullptr || *env == 0) return std::nullopt;
  int G = 0, Q = 0;
  TORCH_CHECK_VALUE(std::sscanf(env, "%d,%d", &G, &Q) == 2 && (G == 1 || G == 2 || G == 4 || G == 8 || G == 16) &&
                        Q >= 1 && Q <= 32,
                    "SINSIM_CUDA_LAYOUT must be 'G,Q' with G in {1,2,4,8,16} and 1 <= Q <= 32, got '", env, "'");
  return std::make_pair(G, Q);
}

// Chooses blocks per problem: enough rows per block to amortise the exchange
// (about 4096 entries of K each) and no more blocks than run at once. Across
// cluster sizes G, Q (clusters per problem) is what the GPU can co-schedule;
// the layout with the most blocks wins, larger clusters on near ties (their
// exchange stays in distributed shared memory).
template <typename T>
Layout choose_layout(const std::vector<ProblemDesc<T>>& probs, const DeviceInfo& dev) {
  int64_t max_entries = 0;
  for (const auto& p : probs) max_entries = std::max<int64_t>(max_entries, static_cast<int64_t>(p.n) * p.ld);
  const int P = static_cast<int>(probs.size());
  const auto forced = forced_layout();
  if (forced) {
    const auto L = plan_layout(probs, forced->first, forced->second, dev);
    TORCH_CHECK(L, "sinsim_ext: SINSIM_CUDA_LAYOUT=", forced->first, ",", forced->second,
                " does not fit in shared memory for these shapes");
    // the Q clusters of a problem wait for each other: they must all be resident
    const int clusters = L->G > 1 || L->Q > 1 ? max_active_clusters<T>(*L, L->G * L->Q) : 1;
    TORCH_CHECK(L->Q == 1 || clusters >= L->Q, "sinsim_ext: SINSIM_CUDA_LAYOUT=", forced->first, ",",
                forced->second, " needs ", L->Q, " co-resident clusters of ", L->G,
                " blocks but this GPU runs ", clusters, " at once");
    return *L;
  }
  const int by_work = static_cast<int>(std::min<int64_t>(1 << 20, (max_entries + 4095) / 4096));
  const int by_gpu = std::max(1, dev.sms / P);
  const int K = std::max(1, std::min(by_work, by_gpu));
  std::optional<Layout> best;
  int best_blocks = 0;
  if (K == 1 || dev.major < 9) {  // no clusters before Hopper
    best = plan_layout(probs, 1, 1, dev);
    best_blocks = 1;
  }
  for (int G : {16, 8, 4, 2}) {
    if (K == 1 || dev.major < 9 || G > K) continue;
    int Q = std::min(32, K / G);
    while (Q >= 1) {
      const auto L = plan_layout(probs, G, Q, dev);
      if (!L) break;
      const int clusters = max_active_clusters<T>(*L, G * std::max(1, std::min(P * Q, 256)));
      if (clusters <= 0) break;
      if (Q > 1 && clusters < Q) {  // the Q clusters of a problem must run together
        Q = clusters;
        continue;
      }
      if (G * Q > best_blocks * 11 / 10) {
        best = L;
        best_blocks = G * Q;
      }
      break;
    }
  }
  TORCH_CHECK(best, "sinsim_ext: these problem sizes do not fit the CUDA kernel's shared memory (",
              max_entries, " cost entries); use the CPU back end or smaller batches");
  return *best;
}

// The layout depends only on the device and the problem shapes; occupancy
// queries cost tens of microseconds, so each signature is planned once.
template <typename T>
std::pair<Layout, int> cached_layout(const std::vector<ProblemDesc<T>>& probs, const DeviceInfo& dev, int device) {
  static std::mutex lock;
  static std::map<std::vector<int>, std::pair<Layout, int>> cache;
  const auto forced = forced_layout();
  std::vector<int> key{device, static_cast<int>(sizeof(T)), forced ? forced->first : 0, forced ? forced->second : 0};
  for (const auto& p : probs) key.insert(key.end(), {p.n, p.m, p.ld});
  const std::lock_guard<std::mutex> guard(lock);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  prepare_kernel_attributes<T>(dev);
  const Layout L = choose_layout(probs, dev);
  int per_launch = static_cast<int>(probs.size());
  if (L.Q > 1) per_launch = std::max(1, max_active_clusters<T>(L, L.G * L.Q) / L.Q);
  return cache.emplace(key, std::make_pair(L, per_launch)).first->second;
}

template <typename T>
void launch_chunk(const ProblemDesc<T>* d_probs, int count, const Layout& L, const SolverOptions& opt,
                  T* exchange, unsigned int* counters, cudaStream_t stream) {
  LaunchParams<T> P;
  P.problems = d_probs;
  P.Q = L.Q;
  P.G = L.G;
  P.slab_capacity = L.slab_capacity;
  P.max_ld = L.max_ld;
  P.max_rows = L.max_rows;
  P.scratch = L.scratch;
  P.max_iter = static_cast<int>(opt.max_iter);
  P.tol = opt.tol;
  P.inv_scale = static_cast<T>(opt.eps / kLog2e);
  P.exchange = exchange;
  P.counters = counters;

  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(count * L.Q * L.G);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = L.smem_bytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = L.G;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = L.G > 1 ? 1 : 0;
  SINSIM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, sinkhorn_kernel<T>, P));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Problem descriptors written to the device by kernel launches that carry
// them as parameters (kDescPerLaunch per launch, within the 4 KB parameter
// limit): stream ordered with no host buffer, so a CUDA graph can capture the
// call and replay it (the pinned-memory copy of the default path reads a host
// buffer that is reused after the call).
constexpr int kDescPerLaunch = 32;

template <typename T>
struct DescBatch {
  ProblemDesc<T> desc[kDescPerLaunch];
  int count;
};

template <typename T>
__global__ void store_descriptors(DescBatch<T> batch, ProblemDesc<T>* out) {
  if (static_cast<int>(threadIdx.x) < batch.count) out[threadIdx.x] = batch.desc[threadIdx.x];
}

template <typename T>
at::Tensor descriptors_by_launch(const std::vector<ProblemDesc<T>>& probs, const at::Tensor& ref, cudaStream_t stream) {
  at::Tensor dev = at::empty({static_cast<int64_t>(probs.size() * sizeof(ProblemDesc<T>))},
                             ref.options().dtype(at::kByte));
  auto* out = reinterpret_cast<ProblemDesc<T>*>(dev.data_ptr());
  for (size_t first = 0; first < probs.size(); first += kDescPerLaunch) {
    DescBatch<T> batch;
    batch.count = static_cast<int>(std::min<size_t>(kDescPerLaunch, probs.size() - first));
    std::copy(probs.begin() + first, probs.begin() + first + batch.count, batch.desc);
    store_descriptors<T><<<1, kDescPerLaunch, 0, stream>>>(batch, out + first);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return dev;
}

template <typename T>
void solve_sets(std::vector<ProblemSet>& sets, const SolverOptions& opt, bool by_launch) {
  const at::Tensor& ref = sets.front().x;
  const c10::cuda::CUDAGuard guard(ref.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const DeviceInfo dev = device_info(ref.get_device());
  const T scale = static_cast<T>(kLog2e / opt.eps);
  constexpr int VW = Num<T>::kWidth;

  std::vector<at::Tensor> keep;  // buffers that must live until the kernel ran
  std::vector<ProblemDesc<T>> probs;
  for (ProblemSet& set : sets) {
    const int B = set.x.size(0), n = set.x.size(1), m = set.y.size(1);
    const int ld = align_up(m, VW);
    const bool cosine = opt.cost == CostKind::Cosine;
    const at::Tensor xs = cost_operand(set.x, opt.cost).rows;
    const at::Tensor ys = set.symmetric ? xs : cost_operand(set.y, opt.cost).rows;
    at::Tensor K = at::empty({B, n, ld}, set.x.options());
    launch_cost<T, false>(xs.contiguous(), ys.contiguous(), nullptr, nullptr, ld, -scale, cosine, K.data_ptr<T>());
    const at::Tensor la = set.a.log2().contiguous();
    const at::Tensor lb = set.symmetric ? la : set.b.log2().contiguous();
    keep.insert(keep.end(), {K, la, lb});
    for (int b = 0; b < B; ++b) {
      ProblemDesc<T> p;
      p.K = K.data_ptr<T>() + static_cast<int64_t>(b) * n * ld;
      p.a = set.a.data_ptr<T>() + static_cast<int64_t>(b) * n;
      p.la = la.data_ptr<T>() + static_cast<int64_t>(b) * n;
      p.lb = lb.data_ptr<T>() + static_cast<int64_t>(b) * m;
      p.f = set.f.data_ptr<T>() + static_cast<int64_t>(b) * n;
      p.g = set.g.data_ptr<T>() + static_cast<int64_t>(b) * m;
      p.n_iter = set.n_iter.data_ptr<int>() + b * set.n_iter.stride(0);
      p.error = set.error.data_ptr<T>() + b * set.error.stride(0);
      p.n = n;
      p.m = m;
      p.ld = ld;
      p.symmetric = set.symmetric ? 1 : 0;
      probs.push_back(p);
    }
  }

  const auto [L, per_launch] = cached_layout(probs, dev, ref.get_device());

  at::Tensor dev_desc;
  if (by_launch) {
    dev_desc = descriptors_by_launch(probs, ref, stream);
  } else {
    // descriptors to the device (asynchronous copy from pinned memory, stream ordered)
    const int64_t desc_bytes = static_cast<int64_t>(probs.size() * sizeof(ProblemDesc<T>));
    at::Tensor host_desc = at::empty({desc_bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    std::memcpy(host_desc.data_ptr(), probs.data(), desc_bytes);
    dev_desc = host_desc.to(ref.device(), /*non_blocking=*/true);
  }
  const auto* d_probs = reinterpret_cast<const ProblemDesc<T>*>(dev_desc.data_ptr());

  at::Tensor exchange, counters;
  if (L.Q > 1) {
    exchange = at::empty({static_cast<int64_t>(per_launch) * 2 * L.Q * (2 * L.max_ld + 2)}, ref.options());
    counters = at::zeros({static_cast<int64_t>(probs.size())}, ref.options().dtype(at::kInt));
  }
  for (int first = 0; first < static_cast<int>(probs.size()); first += per_launch) {
    const int count = std::min(per_launch, static_cast<int>(probs.size()) - first);
    launch_chunk<T>(d_probs + first, count, L, opt, L.Q > 1 ? exchange.data_ptr<T>() : nullptr,
                    L.Q > 1 ? reinterpret_cast<unsigned int*>(counters.data_ptr<int>()) + first : nullptr,
                    stream);
  }
  // `keep` may be freed now: the caching allocator reuses memory in stream order.
}

}  // namespace

void solve_cuda(std::vector<ProblemSet>& sets, const SolverOptions& opt) {
  for (const ProblemSet& set : sets)
    TORCH_CHECK_VALUE(set.x.is_cuda() && set.y.is_cuda(), "the CUDA back end got tensors on ", set.x.device());
  const bool by_launch = cuda_kernel_choice().graph;
  AT_DISPATCH_FLOATING_TYPES(sets.front().x.scalar_type(), "sinkhorn_solve_cuda",
                             [&] { solve_sets<scalar_t>(sets, opt, by_launch); });
}

at::Tensor plan_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
                     const at::Tensor& f, const at::Tensor& g, const SolverOptions& opt) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1), m = y.size(1);
  at::Tensor P = at::empty({B, n, m}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sinkhorn_plan_cuda", [&] {
    using T = scalar_t;
    const T s = static_cast<T>(kLog2e / opt.eps);
    const bool cosine = opt.cost == CostKind::Cosine;
    const at::Tensor u = (a.log2() + f * s).contiguous();
    const at::Tensor w = (b.log2() + g * s).contiguous();
    const at::Tensor xs = cost_operand(x, opt.cost).rows;
    const at::Tensor ys = cost_operand(y, opt.cost).rows;
    launch_cost<T, true>(xs.contiguous(), ys.contiguous(), u.data_ptr<T>(), w.data_ptr<T>(), static_cast<int>(m), -s,
                         cosine, P.data_ptr<T>());
  });
  return P;
}

}  // namespace sinsim
