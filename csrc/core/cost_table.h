// The ground costs: one entry per cost, read by every back end (the CPU
// loops, the CUDA kernels, and the ATen code of core/costs.h).
//
// The cost of two points is  c(p, q) = finish(sum_k u_k v_k),  (u_k, v_k) =
// factors(p_k, q_k), summed over the coordinates k of the points' operands:
// the points themselves, or their unit rows when kUnitRows (core/costs.h
// makes them). The squared Euclidean cost sums (p_k - q_k)^2 directly, so
// nothing cancels for near points; the cosine cost is 1 - <p/|p|, q/|q|>.
// Each kernel accumulates the products its own way (vector FMAs on the CPU,
// one FMA per thread and pair on CUDA) and calls finish once per entry.
//
// pullback is the gradient of <P, C(p, q)> in p with P held fixed, one
// coordinate at a time: from the row's sum r_i = (P 1)_i (read when
// kRowSums), the product v_ik = (P q~)_ik with q~ the column points'
// operands, the row's operand coordinate p~_ik and, for unit-row costs,
// dot_i = <v_i, p~_i> and |p_i|. Both costs are symmetric, so the gradient in
// q is the same with P transposed. The same template serves scalars (the
// CUDA kernels) and tensors (core/costs.cpp), as does `matrix`, the cost
// matrix of the operands in tensor operations (the device-generic solver).
//
// Adding a cost: a CostKind, its Cost<> entry and its case in dispatch_cost
// here, and the same cost in sinsim_ext/costs.py (CONTRIBUTING.md has the
// whole list).
#pragma once

#include "core/device.h"

namespace sinsim {

enum class CostKind : int { SqEuclidean = 0, Cosine = 1 };

template <CostKind K>
struct Cost;

template <>
struct Cost<CostKind::SqEuclidean> {
  static constexpr CostKind kKind = CostKind::SqEuclidean;
  static constexpr const char* kName = "sqeuclidean";
  static constexpr bool kUnitRows = false;
  static constexpr bool kRowSums = true;

  template <typename V>
  SINSIM_HD static void factors(const V& p, const V& q, V& u, V& v) {
    u = p - q;
    v = u;
  }
  template <typename V>
  SINSIM_HD static V finish(const V& sum) {
    return sum;
  }
  //   grad_i = 2 (r_i p_i - (P q)_i)
  template <typename V, typename S>
  SINSIM_HD static V pullback(const S& row_sum, const V& product, const V& p, const V& /*dot*/, const S& /*norm*/) {
    return (row_sum * p - product) * 2;
  }
  // |x|^2 + |y|^2 - 2 <x, y> floored at 0: one matrix product (the kernels
  // sum the squared differences instead).
  template <typename Tensor>
  static Tensor matrix(const Tensor& x, const Tensor& y) {
    const Tensor x2 = (x * x).sum(-1, true), y2 = (y * y).sum(-1).unsqueeze(-2);
    return (x2 + y2 - 2.0 * x.matmul(y.transpose(-1, -2))).clamp_min(0.0);
  }
};

template <>
struct Cost<CostKind::Cosine> {
  static constexpr CostKind kKind = CostKind::Cosine;
  static constexpr const char* kName = "cosine";
  static constexpr bool kUnitRows = true;
  static constexpr bool kRowSums = false;

  template <typename V>
  SINSIM_HD static void factors(const V& p, const V& q, V& u, V& v) {
    u = p;
    v = q;
  }
  template <typename V>
  SINSIM_HD static V finish(const V& sum) {
    return V(1) - sum;
  }
  //   grad_i = -(I - ph_i ph_i^T) (P qh)_i / |p_i|,  ph = p / |p|
  template <typename V, typename S>
  SINSIM_HD static V pullback(const S& /*row_sum*/, const V& product, const V& p, const V& dot, const S& norm) {
    return -(product - dot * p) / norm;
  }
  // 1 - <xh, yh> of the unit rows
  template <typename Tensor>
  static Tensor matrix(const Tensor& x, const Tensor& y) {
    return 1.0 - x.matmul(y.transpose(-1, -2));
  }
};

// Every cost, in CostKind order.
constexpr CostKind kCostKinds[] = {CostKind::SqEuclidean, CostKind::Cosine};

// body(Cost<K>{}) for the kind known at run time, as AT_DISPATCH_* does for
// dtypes: the kernels are compiled once per cost.
template <typename Body>
decltype(auto) dispatch_cost(CostKind kind, Body&& body) {
  switch (kind) {
    case CostKind::Cosine:
      return body(Cost<CostKind::Cosine>{});
    case CostKind::SqEuclidean:
      break;
  }
  return body(Cost<CostKind::SqEuclidean>{});
}

}  // namespace sinsim
