// CUDA and cuBLAS aliases of the checking-macro family (common/errors.h): a failure names the
// call, function, file:line, rank and host.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/errors.h"

#define DPT_CHECK_CUDA(call) \
  DPT_CHECK_GEN("CUDA", call, _dpt_rc == cudaSuccess, cudaGetErrorString(_dpt_rc))

#define DPT_CHECK_CUBLAS(call)                                    \
  DPT_CHECK_GEN("cuBLAS", call, _dpt_rc == CUBLAS_STATUS_SUCCESS, \
                std::string(cublasGetStatusName(_dpt_rc)) + ": " + cublasGetStatusString(_dpt_rc))

namespace dpt::kernels {
// [Launch checks] Every launcher ends with DPT_CHECK_LAUNCH(stream): a bad launch configuration
// shows there, not at the next synchronizing call. With DPT_CUDA_SYNC_CHECK=1 in the
// environment (read once per process) the launcher also waits for its stream and checks it, so
// that an asynchronous fault (an illegal address, a trap) is named at the launch that caused
// it, with its function and file:line, and not later at a copy or an NCCL poll. For first runs
// on a new machine and for debugging: it serializes the host with the GPU.
bool sync_check_launches();
}  // namespace dpt::kernels

#define DPT_CHECK_LAUNCH(stream)                                                              \
  do {                                                                                        \
    DPT_CHECK_CUDA(cudaGetLastError());                                                       \
    if (::dpt::kernels::sync_check_launches()) DPT_CHECK_CUDA(cudaStreamSynchronize(stream)); \
  } while (0)
