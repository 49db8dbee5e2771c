// Picks the CPU loops' instruction set for each call (see cpu/loops.h).
#include "cpu/loops.h"

#include <ATen/Version.h>
#include "core/sinkhorn.h"
#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

namespace sinsim::cpu {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return s;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define SINSIM_X86_FEATURE_CHECKS 1
// The features ATen requires for its own AVX2 and AVX512 kernels; GCC's
// checks include the operating system's support for the vector registers.
bool cpu_has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#endif

// The table named `name` if this build has it and this CPU runs it.
const Loops* runnable(const std::string& name) {
  if (name == "default") return loops_default();
#ifdef SINSIM_X86_FEATURE_CHECKS
  if (name == "avx2" && cpu_has_avx2()) return loops_avx2();
  if (name == "avx512" && cpu_has_avx512()) return loops_avx512();
#endif
  return nullptr;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

std::vector<std::string> runnable_cpu_capabilities() {
  std::vector<std::string> names;
  for (const char* name : {"default", "avx2", "avx512"}) {
    if (runnable(name) != nullptr) names.emplace_back(name);
  }
  return names;
}

const Loops& active_loops() {
  if (const char* forced = std::getenv("SINSIM_CPU_CAPABILITY"); forced != nullptr && *forced) {
    const Loops* loops = runnable(lower(forced));
    TORCH_CHECK_VALUE(loops != nullptr, "SINSIM_CPU_CAPABILITY='", forced,
                      "' is not available: this build and CPU can run ",
                      joined(runnable_cpu_capabilities()), " (unset it to let torch choose)");
    return *loops;
  }
  // torch's choice ("DEFAULT", "AVX2", "AVX512", or an ARM/PowerPC name);
  // anything this build does not have falls back to the portable copy.
  const Loops* loops = runnable(lower(at::get_cpu_capability()));
  return loops != nullptr ? *loops : *loops_default();
}

}  // namespace sinsim::cpu

namespace sinsim {
std::string cpu_capability() { return cpu::active_loops().name; }
std::vector<std::string> cpu_capabilities() { return cpu::runnable_cpu_capabilities(); }
}  // namespace sinsim
