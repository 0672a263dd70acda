// The metrics line format (9 significant digits, null for non-finite) and the progress line.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "common/errors.h"
#include "trainer/metrics.h"
#include "trainer/peak_flops.h"

namespace dpt::trainer {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(MetricsWriter, WritesOneJsonObjectPerStepWithNineSignificantDigits) {
  const std::string path = ::testing::TempDir() + "/metrics_test.jsonl";
  {
    MetricsWriter w(path);
    StepRecord r;
    r.step = 3;
    r.loss = 2.718281828459045;
    r.lr = 1e-3;
    r.grad_norm = 0.5;
    r.tokens = 6144;
    r.tokens_per_s = 12345.678;
    r.step_ms = 42.0;
    r.data_wait_ms = 0.125;
    r.io_tokens_per_s = 2.5e7;
    r.comm_exposed_ms = 1.5;
    r.mfu = 0.3125;
    r.mem_state_bytes = 123456789012;
    r.mem_peak_bytes = 234567890123;
    r.sent_bytes = 4096;
    w.write(r);
    r.step = 4;
    r.loss = std::nan("");
    r.mfu = std::nan("");  // no peak known
    r.grad_norm = INFINITY;
    r.has_val = true;
    r.val_loss = 1.0 / 3.0;
    w.write(r);
  }
  EXPECT_EQ(read_all(path),
            "{\"step\": 3, \"loss\": 2.71828183, \"lr\": 0.001, \"grad_norm\": 0.5, \"tokens\": "
            "6144, \"tokens_per_s\": 12345.678, \"step_ms\": 42, \"data_wait_ms\": 0.125, "
            "\"io_tokens_per_s\": 25000000, \"comm_exposed_ms\": 1.5, \"mfu\": 0.3125, "
            "\"mem_state_bytes\": 123456789012, \"mem_peak_bytes\": 234567890123, "
            "\"sent_bytes\": 4096}\n"
            "{\"step\": 4, \"loss\": null, \"lr\": 0.001, \"grad_norm\": null, \"tokens\": 6144, "
            "\"tokens_per_s\": 12345.678, \"step_ms\": 42, \"data_wait_ms\": 0.125, "
            "\"io_tokens_per_s\": 25000000, \"comm_exposed_ms\": 1.5, \"mfu\": null, "
            "\"mem_state_bytes\": 123456789012, \"mem_peak_bytes\": 234567890123, "
            "\"sent_bytes\": 4096}\n"
            "{\"step\": 4, \"val_loss\": 0.333333333}\n");
}

TEST(MetricsWriter, UnwritablePathIsAUsageErrorNamingIt) {
  EXPECT_THROW({ MetricsWriter w("/nonexistent-dir/m.jsonl"); }, UsageError);
}

TEST(FormatDuration, PrintsMinutesAndHours) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(65.4), "1:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(std::nan("")), "?");
}

TEST(ProgressPrinter, PrintsFirstEveryNthAndLastStepWithEta) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* out = open_memstream(&buf, &len);
  ProgressPrinter p(5, out);
  for (int s = 1; s <= 12; ++s) {
    StepRecord r;
    r.step = s;
    r.total_steps = 12;
    r.loss = 3.0;
    r.step_ms = 1000.0;  // one second per step
    r.tokens_per_s = 100.0;
    p.on_step(r);
  }
  std::fclose(out);
  const std::string text(buf, len);
  std::free(buf);
  std::istringstream lines(text);
  std::string line;
  std::vector<std::string> got;
  while (std::getline(lines, line))
    got.push_back(line);
  ASSERT_EQ(got.size(), 4u) << text;  // steps 1, 5, 10, 12
  EXPECT_NE(got[1].find("step 5/12"), std::string::npos);
  EXPECT_NE(got[1].find("ETA 0:07"), std::string::npos) << got[1];
  EXPECT_NE(got[3].find("step 12/12"), std::string::npos);
  EXPECT_NE(got[3].find("done in 0:12"), std::string::npos) << got[3];
}

}  // namespace
}  // namespace dpt::trainer

namespace dpt::trainer {
namespace {

TEST(PeakFlops, GpuTableMatchesTheMostSpecificNameAndThePrecision) {
  EXPECT_EQ(gpu_peak_flops("NVIDIA H100 80GB HBM3 (sm_90, 79.2 GiB)", Precision::bf16), 989e12);
  EXPECT_EQ(gpu_peak_flops("NVIDIA H100 PCIe (sm_90, 79.1 GiB)", Precision::bf16), 756e12);
  EXPECT_EQ(gpu_peak_flops("NVIDIA H100 NVL (sm_90, 93.1 GiB)", Precision::fp32), 60e12);
  EXPECT_EQ(gpu_peak_flops("NVIDIA H200 (sm_90, 139.8 GiB)", Precision::bf16), 989e12);
  EXPECT_EQ(gpu_peak_flops("NVIDIA A100-SXM4-80GB (sm_80, 79.2 GiB)", Precision::fp32), 19.5e12);
  EXPECT_EQ(gpu_peak_flops("Tesla T4 (sm_75, 14.6 GiB)", Precision::bf16), 0.0) << "not in table";
}

TEST(PeakFlops, MeasuredCpuGemmRateIsPositiveAndPlausible) {
  const double peak = measure_cpu_peak_flops(0.05);
  EXPECT_GT(peak, 1e8);   // any CPU of this century does 0.1 GFLOP/s
  EXPECT_LT(peak, 1e14);  // and no CPU core set does 100 TFLOP/s of fp32
}

}  // namespace
}  // namespace dpt::trainer
