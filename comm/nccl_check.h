// The NCCL alias of the checking-macro family (common/errors.h): a failure names the call, the
// NCCL error, NCCL's own last-error text for the communicator, function, file:line, rank and host.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

#include "common/errors.h"

namespace dpt::comm {

// ncclGetErrorString(rc) (which already points at NCCL_DEBUG=INFO for system errors), then
// NCCL's last-error text when it has one.
// `comm` may be null (before a communicator exists); NCCL then reports its global last error.
inline std::string nccl_error_text(ncclResult_t rc, ncclComm_t comm) {
  std::string text = ncclGetErrorString(rc);
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && last[0] != '\0') text += std::string(": ") + last;
  return text;
}

}  // namespace dpt::comm

// The same CUDA alias as kernels/cuda_check.h, which comm/ does not include: that header brings
// cuBLAS, and comm/ must not depend on kernels/ (CONVENTIONS.md, the house).
#ifndef DPT_CHECK_CUDA
#define DPT_CHECK_CUDA(call) \
  DPT_CHECK_GEN("CUDA", call, _dpt_rc == cudaSuccess, cudaGetErrorString(_dpt_rc))
#endif

// `nccl_comm` is the communicator the call concerns (or nullptr), evaluated only on failure.
#define DPT_CHECK_NCCL(nccl_comm, call)               \
  DPT_CHECK_GEN("NCCL", call, _dpt_rc == ncclSuccess, \
                ::dpt::comm::nccl_error_text(_dpt_rc, (nccl_comm)))
