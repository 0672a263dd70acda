// The default thread count from OMP_NUM_THREADS, the affinity mask and the node's cores.
#include "job/cpu_placement.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace dpt::job {

int default_cpu_threads(int local_size) {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t mask;
  CPU_ZERO(&mask);
  int allowed = 0;
  if (sched_getaffinity(0, sizeof(mask), &mask) == 0) allowed = CPU_COUNT(&mask);
  const int node = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (allowed <= 0) allowed = node;
  if (allowed >= node) return std::max(1, node / std::max(1, local_size));
  return allowed;
}

}  // namespace dpt::job
