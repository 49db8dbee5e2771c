// The iteration schedule every solver follows: the eps-scaling stages and the
// stopping rule (maths: core/sinkhorn.h). Plain C++ shared by the host code
// and the CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/device.h"

namespace sinsim {

// The scaled units of the kernels: s = log2(e) / eps turns C / eps into base-2 exponents.
constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;

// Eps-scaling with ratio r = scaling in (0, 1) (0: plain iterations): the
// number of stages S for a problem whose largest cost is cost_max, the
// smallest S >= 0 with eps / r^S >= cost_max, capped at max_iter - 1 so that at
// least one iteration runs at eps; 0 without scaling or when cost_max is not
// finite or <= eps.
SINSIM_HD int64_t scaling_stages(double cost_max, double eps, double scaling, int64_t max_iter) {
  if (!(scaling > 0.0 && scaling < 1.0) || !(cost_max <= 1.7976931348623157e308) || cost_max <= eps) return 0;
  const double s = ceil(log(cost_max / eps) / log(1.0 / scaling) - 1e-9);
  const double stages = s < 0.0 ? 0.0 : s;
  return stages < static_cast<double>(max_iter - 1) ? static_cast<int64_t>(stages) : max_iter - 1;
}

// The eps of iteration t (1-based): eps / r^(S - t + 1) while t <= S, then eps.
SINSIM_HD double stage_eps(int64_t t, int64_t stages, double eps, double scaling) {
  return t <= stages ? eps * pow(scaling, -static_cast<double>(stages - t + 1)) : eps;
}

// s_t = log2(e) / eps_t of iteration t, in the precision of the iterations.
template <typename T>
SINSIM_HD T stage_scale(int64_t t, int64_t stages, double eps, double scaling) {
  return static_cast<T>(kLog2e / stage_eps(t, stages, eps, scaling));
}

// The stopping rule. At the target eps a problem stops after iteration t
// when t reaches max_iter or, with a tol (> 0), when its marginal error is
// below tol; during the eps-scaling stages (t <= stages) only max_iter stops
// it. read_error() is called only when the error decides (a solver that reads
// it from a device pays for the read then only).
template <typename Int, typename ReadError>
SINSIM_HD bool stops_at_target(Int t, Int max_iter, double tol, ReadError read_error) {
  return t >= max_iter || (tol > 0 && static_cast<double>(read_error()) < tol);
}

template <typename Int, typename ReadError>
SINSIM_HD bool stops_after(Int t, Int max_iter, Int stages, double tol, ReadError read_error) {
  return t > stages ? stops_at_target(t, max_iter, tol, read_error) : t >= max_iter;
}

// The same rules for an error already at hand.
template <typename Value>
struct KnownError {
  Value value;
  SINSIM_HD Value operator()() const { return value; }
};

template <typename Int, typename Value>
SINSIM_HD bool stops_at_target_with(Int t, Int max_iter, double tol, Value error) {
  return stops_at_target(t, max_iter, tol, KnownError<Value>{error});
}

template <typename Int, typename Value>
SINSIM_HD bool stops_after_with(Int t, Int max_iter, Int stages, double tol, Value error) {
  return stops_after(t, max_iter, stages, tol, KnownError<Value>{error});
}

}  // namespace sinsim
