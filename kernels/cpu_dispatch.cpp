// [CPU dispatch]: the run-time choice of the elementwise loops' SIMD width.
#include "kernels/cpu_dispatch.h"

#include <atomic>

#include <omp.h>
#include <cstdlib>
#include <cstring>

namespace dpt::kernels {
namespace {

bool processor_has_avx2() {
#if DPT_HAVE_AVX2_DISPATCH
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") != 0;
#else
  return false;
#endif
}

std::atomic<bool>& choice() {
  static std::atomic<bool> use{[] {
    const char* want = std::getenv("DPT_CPU_SIMD");
    if (want != nullptr && std::strcmp(want, "sse2") == 0) return false;
    return processor_has_avx2();
  }()};
  return use;
}

}  // namespace

bool cpu_use_avx2() {
  return choice().load(std::memory_order_relaxed);
}

bool set_cpu_use_avx2(bool use) {
  return choice().exchange(use && processor_has_avx2());
}

ThreadShare thread_share(long long count) {
  const long long threads = omp_get_num_threads(), t = omp_get_thread_num();
  return {count * t / threads, count * (t + 1) / threads};
}

bool cpu_has_avx2() {
  return processor_has_avx2();
}

}  // namespace dpt::kernels
