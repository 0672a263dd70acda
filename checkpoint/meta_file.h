// meta.h5 of [Checkpoint layout]: what a checkpoint is, written and read through HDF5.
#pragma once

#include <string>

#include "checkpoint/format.h"

namespace dpt::checkpoint {

// [HDF5 thread] both. write_meta fsyncs the file; read_meta throws UsageError naming the file.
void write_meta(const std::string& path, const CheckpointMeta& meta);
CheckpointMeta read_meta(const std::string& path);

}  // namespace dpt::checkpoint
