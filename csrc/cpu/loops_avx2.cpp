// The CPU loops for x86-64 with AVX2 and FMA (ATen's AVX2 capability).
// setup.py and CMakeLists.txt compile this file alone with -mavx2 -mfma;
// without them it holds no loops. The dispatcher (cpu/loops_dispatch.cpp)
// checks the CPU before it calls anything here.
#include "cpu/loops.h"

#if defined(__AVX2__) && defined(__FMA__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#define CPU_LOOPS_NAME "avx2"
#include "cpu/loops_impl.h"

const sinsim::cpu::Loops* sinsim::cpu::loops_avx2() { return &AVX2::kLoops; }
#else
const sinsim::cpu::Loops* sinsim::cpu::loops_avx2() { return nullptr; }
#endif
