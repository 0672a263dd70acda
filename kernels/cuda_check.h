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

// After a kernel launch: a bad configuration shows here, not at the next synchronizing call.
#define DPT_CHECK_LAUNCH() DPT_CHECK_CUDA(cudaGetLastError())
