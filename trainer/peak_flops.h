// The processor's peak FLOP rate, the denominator of MFU (model FLOPs utilization, as llm.c
// logs it): a table of NVIDIA GPUs' dense peaks by device name, a measured fp32 GEMM rate for
// the CPU, or the user's --peak-tflops.
#pragma once

#include <string>

#include "trainer/train_config.h"

namespace dpt::trainer {

// Dense (no structured sparsity) peak FLOP/s of the GPU whose name contains a table entry, for
// the precision the replica computes in: bf16 on tensor cores, fp32 without them. 0 for a GPU
// not in the table.
double gpu_peak_flops(const std::string& device_name, Precision precision);

// The best rate of a 512 x 512 x 512 fp32 GEMM through gemm_cpu on the calling rank's threads
// (kernels::set_cpu_threads), repeated for about `seconds`: the CPU path's attainable peak.
double measure_cpu_peak_flops(double seconds = 0.25);

}  // namespace dpt::trainer
