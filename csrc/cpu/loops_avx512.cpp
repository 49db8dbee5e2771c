// The CPU loops for x86-64 with AVX-512 F/BW/VL/DQ and FMA (ATen's AVX512
// capability). setup.py and CMakeLists.txt compile this file alone with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma; without them it holds no
// loops. The dispatcher (cpu/loops_dispatch.cpp) checks the CPU before it
// calls anything here.
#include "cpu/loops.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__) && defined(__FMA__)
// GCC 12 warns about its own avx512fintrin.h (`__Y` may be used
// uninitialized: the _mm512_undefined idiom, GCC bug 105593)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#define CPU_LOOPS_NAME "avx512"
#include "cpu/loops_impl.h"

const sinsim::cpu::Loops* sinsim::cpu::loops_avx512() { return &AVX512::kLoops; }
#else
const sinsim::cpu::Loops* sinsim::cpu::loops_avx512() { return nullptr; }
#endif
