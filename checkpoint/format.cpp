// Names of the files and directories of [Checkpoint layout].
#include "checkpoint/format.h"

#include <cinttypes>
#include <cstdio>

namespace dpt::checkpoint {

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08" PRId64, step);
  return buf;
}

std::string rank_file_name(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "rank_%05d.h5", rank);
  return buf;
}

}  // namespace dpt::checkpoint
