// Peak FLOP rates for MFU: NVIDIA's datasheet figures (dense) and a short measured CPU GEMM.
#include "trainer/peak_flops.h"

#include <algorithm>
#include <vector>

#include "common/elapsed.h"
#include "kernels/gemm.h"

namespace dpt::trainer {

namespace {

struct GpuPeak {
  const char* name_part;  // matched against the CUDA device name, first match wins
  double bf16_tflops;     // dense tensor-core bf16 with fp32 accumulation
  double fp32_tflops;     // fp32 without tensor cores
};

// NVIDIA datasheets, dense figures (the sparse ones are twice these). More specific names come
// before the names they contain ("H100 NVL" before "H100", which is the SXM part).
constexpr GpuPeak kGpuPeaks[] = {
    {"H100 NVL", 835.0, 60.0}, {"H100 PCIe", 756.0, 51.0}, {"H100", 989.0, 67.0},
    {"H200 NVL", 835.0, 60.0}, {"H200", 989.0, 67.0},      {"GH200", 989.0, 67.0},
    {"A100", 312.0, 19.5},     {"L40S", 362.0, 91.6},
};

}  // namespace

double gpu_peak_flops(const std::string& device_name, Precision precision) {
  for (const GpuPeak& g : kGpuPeaks) {
    if (device_name.find(g.name_part) == std::string::npos) continue;
    return 1e12 * (precision == Precision::bf16 ? g.bf16_tflops : g.fp32_tflops);
  }
  return 0.0;
}

double measure_cpu_peak_flops(double seconds) {
  constexpr int n = 512;
  const size_t nn = static_cast<size_t>(n) * n;
  std::vector<float> a(nn), b(nn), c(nn);
  for (size_t i = 0; i < nn; ++i) {
    a[i] = static_cast<float>((i * 37) % 101) / 101.0f;
    b[i] = static_cast<float>((i * 53) % 97) / 97.0f;
  }
  const double flops = 2.0 * n * n * n;
  double best = 0.0;
  const auto start = SteadyClock::now();
  for (int r = 0; r < 3 || seconds_since(start) < seconds; ++r) {
    const auto t0 = SteadyClock::now();
    kernels::gemm_cpu<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(),
                             n);
    const double s = seconds_since(t0);
    if (r > 0 && s > 0) best = std::max(best, flops / s);  // the first run warms up
  }
  return best;
}

}  // namespace dpt::trainer
