// bench-gemm: the machine's own fp32 matrix-product rate through gemm_cpu, the peer that the
// CPU training benchmark compares its model FLOP rate with. Prints GFLOP/s (median of repeats).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/cpu_threads.h"
#include "kernels/gemm.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: bench-gemm M N K [threads] [repeats]\n");
    return 2;
  }
  const int M = std::atoi(argv[1]), N = std::atoi(argv[2]), K = std::atoi(argv[3]);
  const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
  const int repeats = argc > 5 ? std::atoi(argv[5]) : 20;
  if (M <= 0 || N <= 0 || K <= 0 || threads <= 0 || repeats <= 0) {
    std::fprintf(stderr, "bench-gemm: sizes, threads and repeats must be positive\n");
    return 2;
  }
  dpt::kernels::set_cpu_threads(threads);
  std::vector<float> a(static_cast<size_t>(M) * K), b(static_cast<size_t>(K) * N),
      c(static_cast<size_t>(M) * N);
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = static_cast<float>((i * 37) % 101) / 101.0f;
  for (size_t i = 0; i < b.size(); ++i)
    b[i] = static_cast<float>((i * 53) % 97) / 97.0f;
  std::vector<double> secs;
  for (int r = 0; r < repeats + 3; ++r) {  // 3 warm-up runs
    const auto t0 = std::chrono::steady_clock::now();
    dpt::kernels::gemm_cpu<float>(false, true, M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f,
                                  c.data(), N);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r >= 3) secs.push_back(s);
  }
  std::sort(secs.begin(), secs.end());
  const double median = secs[secs.size() / 2];
  std::printf("%.3f\n", 2.0 * M * N * K / median / 1e9);
  return 0;
}
