// Which SIMD width the CPU kernels' elementwise loops run at, chosen once at run time.
#pragma once

namespace dpt::kernels {

// [CPU dispatch] The build targets baseline x86-64 (SSE2, 4 floats a vector), so that one
// binary runs on any node. The elementwise loops that matter (GELU, AdamW) also exist compiled
// for AVX2 (8 floats) through DPT_AVX2, and run that way where the processor has it. AVX2
// without FMA on purpose: the same operations in the same order, only wider, so both versions
// give the same bits and ranks on different processors stay in step.
// DPT_CPU_SIMD=sse2 in the environment keeps the baseline (to compare, or to rule it out).
bool cpu_use_avx2();
bool cpu_has_avx2();  // whether this processor could
// For tests: uses AVX2 (where the processor has it) or the baseline from now on; returns the
// previous choice.
bool set_cpu_use_avx2(bool use);

// The share [lo, hi) of `count` elements that the calling thread of an OpenMP parallel region
// takes: contiguous, in thread order, so that a loop inside can run at the chosen SIMD width.
struct ThreadShare {
  long long lo, hi;
};
ThreadShare thread_share(long long count);

}  // namespace dpt::kernels

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DPT_AVX2 __attribute__((target("avx2")))
#define DPT_HAVE_AVX2_DISPATCH 1
#else
#define DPT_AVX2
#define DPT_HAVE_AVX2_DISPATCH 0
#endif
