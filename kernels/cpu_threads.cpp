// Thread control for the CPU path: OpenMP and OpenBLAS share one setting.
#include "kernels/cpu_threads.h"

#include <cblas.h>
#include <omp.h>

#include "common/errors.h"

namespace dpt::kernels {

void set_cpu_threads(int n) {
  DPT_CHECK(n >= 1, "thread count must be at least 1, got " + std::to_string(n));
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int cpu_threads() {
  return omp_get_max_threads();
}

}  // namespace dpt::kernels
