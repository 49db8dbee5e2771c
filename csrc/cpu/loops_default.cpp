// The CPU loops for any CPU of the build's target (ATen's DEFAULT
// capability): NEON on aarch64, SSE2 on x86-64.
#include "cpu/loops.h"

#define CPU_CAPABILITY DEFAULT
#define CPU_CAPABILITY_DEFAULT
#define CPU_LOOPS_NAME "default"
#include "cpu/loops_impl.h"

const sinsim::cpu::Loops* sinsim::cpu::loops_default() { return &DEFAULT::kLoops; }
