// The checkpoint format: the directory layout, what each file holds, and the metadata a resume is
// checked against. The files themselves: rank_file.h and meta_file.h; the directory and its
// publication: directory.h; saving during training: checkpointer.h; loading: resume.h.
//
// [Checkpoint layout]
//   CKPT_DIR/step_00001200/meta.h5          rank 0: what the checkpoint is (CheckpointMeta)
//   CKPT_DIR/step_00001200/rank_00000.h5    rank r: its slice of the optimizer state
//   CKPT_DIR/latest                         "step_00001200\n", replaced last
//   CKPT_DIR/.partial.step_00001200.<host>.<pid>   a save in progress (never read)
// The training state is three flat float32 tensors of N elements each, in the [Parameter
// layout] order: params, adam_m, adam_v. A checkpoint saved by W ranks splits each into W
// contiguous ranges, [r*N/W, (r+1)*N/W) in rank r's file, so the W ranks write in parallel and
// a later run on any number of ranks reads the ranges back (each rank reads some files and
// broadcasts them). Rank files hold the datasets /params, /adam_m and /adam_v (contiguous,
// little-endian float32) with attributes lo and hi; meta.h5 holds every tensor's name, shape
// and offset, so h5py can cut the weights out. Every file's size and CRC-32C are in meta.h5.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/tensor_view.h"

namespace dpt::checkpoint {

inline constexpr int kCheckpointFormatVersion = 1;
inline constexpr int kStateTensors = 3;
inline constexpr std::array<const char*, kStateTensors> kStateTensorNames = {"params", "adam_m",
                                                                             "adam_v"};

struct RankFileRecord {
  std::string name;                               // "rank_00003.h5"
  uint64_t bytes = 0;                             // file size
  uint32_t crc32c = 0;                            // of all its bytes
  uint64_t lo = 0, hi = 0;                        // elements [lo, hi) of each state tensor
  std::array<uint64_t, kStateTensors> offsets{};  // file offset of each tensor's data
};

// What is saved besides the tensors, and what a resumed run is checked against.
struct CheckpointMeta {
  int format_version = kCheckpointFormatVersion;
  int64_t step = 0;               // optimizer steps done; the resumed run continues at step + 1
  int world_size = 0;             // ranks that saved it
  int64_t total_steps = 0;        // --steps of the run that saved it
  uint64_t seed = 0;              // the only random state: init and sample order are counter-based
                                  // functions of (seed, step), see [Sample order]
  int64_t nonfinite_skipped = 0;  // steps skipped so far for a non-finite loss or gradient
  std::string config;             // the run's options as an INI file (train --config reads it)
  // Must match on resume (the data fingerprint covers every shard's length and checksum).
  int vocab_size = 0, seq_len = 0, d_model = 0, n_layer = 0, n_head = 0;
  int64_t global_batch = 0;
  std::string shuffle;
  int shuffle_window = 0;
  uint64_t data_fingerprint = 0;
  int64_t data_shards = 0;
  int64_t data_tokens = 0;
  int64_t samples_seen = 0;  // step x global_batch: the data reader's position
  int64_t param_count = 0;
  std::vector<TensorView> tensors;    // the [Parameter layout]
  std::vector<RankFileRecord> files;  // one per saving rank
};

std::string step_dir_name(int64_t step);  // "step_00001200"
std::string rank_file_name(int rank);     // "rank_00003.h5"
inline constexpr const char* kMetaFileName = "meta.h5";
// [Meta checksum] meta.h5's CRC-32C and size, beside it: "crc32c XXXXXXXX bytes N\n".
inline constexpr const char* kMetaChecksumSuffix = ".crc32c";
inline constexpr const char* kLatestFileName = "latest";

// Elements [lo, hi) of an N-element tensor that rank r of W owns in a checkpoint.
inline uint64_t slice_begin(uint64_t n, int rank, int world) {
  return n * static_cast<uint64_t>(rank) / static_cast<uint64_t>(world);
}

}  // namespace dpt::checkpoint
