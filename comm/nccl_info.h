// Which NCCL this build links (the NCCL communicator backend arrives with the CUDA path).
#pragma once

#include <string>

namespace dpt::comm {

// "2.28.3" for the linked NCCL library, or "" when the build has no NCCL.
std::string nccl_version();

}  // namespace dpt::comm
