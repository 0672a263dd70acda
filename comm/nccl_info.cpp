// NCCL's version as the loaded library reports it (ncclGetVersion needs no GPU).
#include "comm/nccl_info.h"

#ifdef DPT_HAVE_NCCL
#include <nccl.h>

#include "common/errors.h"
#endif

namespace dpt::comm {

std::string nccl_version() {
#ifdef DPT_HAVE_NCCL
  int v = 0;
  DPT_CHECK_GEN("NCCL", ncclGetVersion(&v), _dpt_rc == ncclSuccess, ncclGetErrorString(_dpt_rc));
  // Since NCCL 2.9 the code is major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." +
         std::to_string(v % 100);
#else
  return "";
#endif
}

}  // namespace dpt::comm
