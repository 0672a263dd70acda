// Distributed checkpoints on disk: the directory layout, the files each rank writes and reads,
// their verification, and atomic publication. The training loop's use of them (async saves,
// resume) is in checkpointer.h.
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
//
// [Checkpoint publication] Ranks write into the partial directory and fsync their files; rank
// 0 then writes meta.h5 (with the sizes and checksums gathered from all ranks), fsyncs it and
// the directory, renames the directory to step_NNNNNNNN, fsyncs CKPT_DIR, and replaces
// `latest` atomically. A directory named step_* with a meta.h5 is therefore complete; a crash
// at any point leaves either the previous state or the new checkpoint, never a mix. Older
// checkpoints are removed only after a newer one is published.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "trainer/param_layout.h"

namespace dpt::trainer {

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
inline constexpr const char* kLatestFileName = "latest";

// Elements [lo, hi) of an N-element tensor that rank r of W owns in a checkpoint.
inline uint64_t slice_begin(uint64_t n, int rank, int world) {
  return n * static_cast<uint64_t>(rank) / static_cast<uint64_t>(world);
}

// ---- rank files ----------------------------------------------------------------------------

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

// ---- metadata --------------------------------------------------------------------------------

// [HDF5 thread] both. write_meta fsyncs the file; read_meta throws UsageError naming the file.
void write_meta(const std::string& path, const CheckpointMeta& meta);
CheckpointMeta read_meta(const std::string& path);

// ---- the checkpoint directory -----------------------------------------------------------------

struct CheckpointEntry {
  int64_t step = 0;
  std::string path;  // CKPT_DIR/step_NNNNNNNN
};

// Published checkpoints (step_* directories holding a meta.h5), oldest first.
std::vector<CheckpointEntry> list_checkpoints(const std::string& ckpt_dir);

// The step named by CKPT_DIR/latest, if it is readable and well formed.
std::optional<int64_t> read_latest(const std::string& ckpt_dir);

// "CKPT_DIR/.partial.step_NNNNNNNN.<host>.<pid>": where a save writes before publication.
std::string partial_dir_path(const std::string& ckpt_dir, int64_t step);

// [Checkpoint publication], rank 0, after every rank file is synced and meta.h5 written:
// fsync the partial directory, rename it to step_NNNNNNNN (replacing a stale one of the same
// step), fsync CKPT_DIR, then replace `latest`. Returns the published path.
std::string publish_checkpoint(const std::string& ckpt_dir, const std::string& partial,
                               int64_t step);

// Removes published checkpoints beyond the newest `keep` (keep <= 0: none removed), and
// partial directories left by earlier runs. Returns the paths removed.
std::vector<std::string> prune_checkpoints(const std::string& ckpt_dir, int keep);
std::vector<std::string> remove_partials(const std::string& ckpt_dir);

}  // namespace dpt::trainer
