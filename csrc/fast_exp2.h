// Branch-free 2^x for float that compilers vectorise inside `omp simd` loops.
//
// 2^x = 2^k * 2^r with k = rint(x), r = x - k in [-1/2, 1/2]; 2^r from its
// Taylor series to degree 7 (truncation error (ln2/2)^8 / 8! < 6e-9, below
// float rounding); 2^k built in the exponent bits. Inputs below -126 give 0
// (the callers only exponentiate v - max(v) <= 0, where such terms are
// negligible), -inf gives 0, NaN gives NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace sinsim {

static inline float exp2_fast(float x) {
  float xc = x < -126.0f ? -126.0f : x;
  xc = xc > 127.0f ? 127.0f : xc;
  const float k = __builtin_rintf(xc);
  const float r = xc - k;
  float p = 1.525273380405984e-05f;
  p = p * r + 1.5403530393381606e-04f;
  p = p * r + 1.3333558146428443e-03f;
  p = p * r + 9.6181291076284772e-03f;
  p = p * r + 5.5504108664821580e-02f;
  p = p * r + 2.4022650695910071e-01f;
  p = p * r + 6.9314718055994531e-01f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -126.0f ? 0.0f : p * scale;
}

static inline double exp2_fast(double x) { return std::exp2(x); }

}  // namespace sinsim
