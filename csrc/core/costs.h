// The ground costs in ATen operations, from the table of core/cost_table.h:
// names, the operands the kernels read, the matrix (the device-generic
// solver) and the gradient of <P, C> (every back end's composed backward).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include "core/cost_table.h"

namespace sinsim {

// "sqeuclidean" / "cosine"; throws c10::ValueError naming the accepted ones otherwise.
CostKind parse_cost(c10::string_view name);
const char* cost_name(CostKind kind);

// The points (..., n, d) as a cost reads them: `rows` are the points, or their
// unit rows for a cost with kUnitRows (`norms`, (..., n, 1), their lengths,
// floored at 1e-30; undefined otherwise).
struct CostOperand {
  at::Tensor points, rows, norms;

  // Rows [start, start + length) of the last-but-one dimension (the points contiguous).
  CostOperand narrow(int64_t start, int64_t length) const;
};
CostOperand cost_operand(const at::Tensor& points, CostKind kind);

// C_ij = c(x_i, y_j) for points (..., n, d) and (..., m, d).
at::Tensor cost_matrix(const at::Tensor& x, const at::Tensor& y, CostKind kind);

// The gradient of <P, C(p, q)> in p with P (..., n, m) held fixed (Cost::pullback),
// from row_sums = P 1 (..., n, 1), read only when cost_needs_row_sums(kind),
// and product = P operand(q).rows (..., n, d).
bool cost_needs_row_sums(CostKind kind);
at::Tensor cost_pullback(CostKind kind, const CostOperand& p, const at::Tensor& row_sums, const at::Tensor& product);

}  // namespace sinsim
