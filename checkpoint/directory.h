// The checkpoint directory of [Checkpoint layout]: listing, `latest`, publication and pruning.
//
// [Checkpoint publication] Ranks write into the partial directory and fsync their files; rank
// 0 then writes meta.h5 (with the sizes and checksums gathered from all ranks), fsyncs it and
// the directory, renames the directory to step_NNNNNNNN, fsyncs CKPT_DIR, and replaces
// `latest` atomically. A directory named step_* with a meta.h5 is therefore complete; a crash
// at any point leaves either the previous state or the new checkpoint, never a mix. Older
// checkpoints are removed only after a newer one is published.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dpt::checkpoint {

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

}  // namespace dpt::checkpoint
