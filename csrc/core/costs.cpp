// The ATen side of the cost table (core/costs.h): each function dispatches to
// the entry of core/cost_table.h.
#include "core/costs.h"

#include <string>

namespace sinsim {

const char* cost_name(CostKind kind) {
  return dispatch_cost(kind, [](auto cost) { return decltype(cost)::kName; });
}

CostKind parse_cost(c10::string_view name) {
  std::string accepted;
  for (const CostKind kind : kCostKinds) {
    if (name == cost_name(kind)) return kind;
    accepted += std::string(accepted.empty() ? "" : " or ") + "'" + cost_name(kind) + "'";
  }
  TORCH_CHECK_VALUE(false, "cost must be ", accepted, ", got '", std::string(name), "'");
}

CostOperand CostOperand::narrow(int64_t start, int64_t length) const {
  const int64_t dim = points.dim() - 2;
  CostOperand part{points.narrow(dim, start, length).contiguous(), {}, {}};
  part.rows = rows.is_same(points) ? part.points : rows.narrow(dim, start, length);
  if (norms.defined()) part.norms = norms.narrow(dim, start, length);
  return part;
}

CostOperand cost_operand(const at::Tensor& points, CostKind kind) {
  const bool unit_rows = dispatch_cost(kind, [](auto cost) { return decltype(cost)::kUnitRows; });
  if (!unit_rows) return {points, points, {}};
  const at::Tensor norms = points.norm(2, -1, /*keepdim=*/true).clamp_min(1e-30);
  return {points, points / norms, norms};
}

at::Tensor cost_matrix(const at::Tensor& x, const at::Tensor& y, CostKind kind) {
  return dispatch_cost(kind, [&](auto cost) {
    return decltype(cost)::matrix(cost_operand(x, kind).rows, cost_operand(y, kind).rows);
  });
}

bool cost_needs_row_sums(CostKind kind) {
  return dispatch_cost(kind, [](auto cost) { return decltype(cost)::kRowSums; });
}

at::Tensor cost_pullback(CostKind kind, const CostOperand& p, const at::Tensor& row_sums, const at::Tensor& product) {
  return dispatch_cost(kind, [&](auto cost) {
    using C = decltype(cost);
    const at::Tensor dot = C::kUnitRows ? (product * p.rows).sum(-1, true) : at::Tensor();
    return C::pullback(row_sums, product, p.rows, dot, p.norms);
  });
}

}  // namespace sinsim
