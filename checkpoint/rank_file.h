// Rank files of [Checkpoint layout]: creation, writing, reading and verification.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "checkpoint/format.h"

namespace dpt::checkpoint {

// Creates rank file `path` with room for three tensors of hi - lo floats, laid out contiguously,
// data not yet written. [HDF5 thread]. Returns the record without size and checksum.
RankFileRecord create_rank_file(const std::string& path, int rank, uint64_t lo, uint64_t hi,
                                int64_t step);

// Writes the tensors' data into a file made by create_rank_file, fsyncs it, and fills in
// rec->bytes and rec->crc32c. No HDF5 calls: runs on a background thread. Throws RuntimeFailure.
void fill_rank_file(const std::string& path, const std::array<const float*, kStateTensors>& data,
                    RankFileRecord* rec);

// Reads a rank file in one sequential pass, checking its size and CRC-32C against rec, and
// puts tensor t's data at dst[t] + rec.lo (a null dst[t]: checked, not kept). No HDF5 calls. Throws
// UsageError naming the file and what is wrong (missing, truncated, checksum mismatch).
void read_rank_file(const std::string& path, const RankFileRecord& rec,
                    const std::array<float*, kStateTensors>& dst);

// Checks a file's size and CRC-32C only (for `ckpt verify`). Throws UsageError.
void verify_file(const std::string& path, uint64_t bytes, uint32_t crc32c);

}  // namespace dpt::checkpoint
