// The HDF5 types of a token type ([Shard format]): in memory (native) and in a file
// (little-endian). Internal to datasets/, like storage/h5.h.
#pragma once

#include <hdf5.h>

#include "datasets/shard_format.h"

namespace dpt::datasets {

hid_t h5_native_type(TokenType t);
hid_t h5_file_type(TokenType t);

}  // namespace dpt::datasets
