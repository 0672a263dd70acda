// Resuming: which checkpoint --resume names, whether this run may continue it, and loading it on
// any number of ranks (each rank reads some rank files; all receive the whole state).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/format.h"
#include "comm/communicator.h"
#include "storage/io_thread.h"

namespace dpt::checkpoint {

// --resume: continue from the newest valid checkpoint of --ckpt-dir (automatic), start fresh
// (never; refused where checkpoints exist, so nothing is overwritten by accident), or continue
// from one named checkpoint directory (path).
struct ResumeRequest {
  enum class Mode { automatic, never, path };
  Mode mode = Mode::automatic;
  std::string path;  // of a step_* directory, for Mode::path
  // "auto", "never" or the path: the option's text.
  std::string text() const;
};

struct ResumeState {
  CheckpointMeta meta;
  std::string path;
  std::vector<float> params, m, v;  // full tensors, identical on every rank
  uint64_t bytes = 0;               // of all rank files
  double load_s = 0;                // reading, checking and broadcasting them
};

// Checks that the state a checkpoint holds fits this run's: the same parameter tensors (names,
// offsets, shapes) and the same training data (the fingerprint of every shard's length and
// checksum, which fixes the sample order). Throws UsageError saying what differs.
void check_same_state_and_data(const CheckpointMeta& saved, const CheckpointMeta& expect);

// Whether this run may continue a checkpoint: throws UsageError naming what contradicts it.
using CompatibilityCheck = std::function<void(const CheckpointMeta& saved)>;

// Collective. Resolves --resume against --ckpt-dir, verifies and loads the checkpoint (every
// rank reads some rank files, all receive everything), and returns it; nullopt for a fresh
// start. `compatible` runs on every rank with the checkpoint's metadata before its files are
// read. `say` prints a line on rank 0. Throws AgreedFailure (exit code 2) when the checkpoint
// named by a path is damaged or contradicts the options; with automatic, a damaged checkpoint
// is reported and the previous one tried.
std::optional<ResumeState> resume_from(comm::Communicator& comm, storage::IoThread& io,
                                       const ResumeRequest& resume, const std::string& ckpt_dir,
                                       const CompatibilityCheck& compatible,
                                       const std::function<void(const std::string&)>& say);

}  // namespace dpt::checkpoint
