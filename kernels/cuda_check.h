// CUDA alias of the checking-macro family (common/errors.h).
#pragma once

#include <cuda_runtime.h>

#include "common/errors.h"

#define DPT_CHECK_CUDA(call) \
  DPT_CHECK_GEN("CUDA", call, _dpt_rc == cudaSuccess, cudaGetErrorString(_dpt_rc))
