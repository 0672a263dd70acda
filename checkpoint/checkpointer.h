// The training loop's side of saving: asynchronous saves that all ranks publish together.
//
// [Async save] The step that saves copies this rank's slice of the state (checked finite) into
// a host snapshot and creates its rank file's HDF5 skeleton; a background thread then writes
// the data with pwrite, fsyncs and checksums it, while training goes on. Each later step's
// existing max all-reduce carries a "still writing" flag; once no rank is writing, the ranks
// gather the files' sizes and checksums and rank 0 publishes ([Checkpoint publication]). A new
// save first waits for the previous one to be published, and finish() publishes the last one
// before the run ends.
//
// [Failed save] A save that fails on any rank (the disk fills up, a permission or I/O error)
// throws SaveFailed on every rank, from save(), publish() or finish(): the partial directory is
// removed, the published checkpoints and `latest` are untouched (publication is the last act
// of a save, and pruning follows it), and the checkpointer is ready for the next save. The
// message names the directory, what failed and, for a full disk, the bytes the checkpoint needs
// against those free. Whether the run stops or goes on is the trainer's choice
// (--ckpt-on-error).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/format.h"
#include "comm/agreement.h"
#include "comm/communicator.h"
#include "storage/aligned.h"
#include "storage/io_thread.h"

namespace dpt::checkpoint {

// What a published checkpoint cost, for the log and the metrics.
struct SaveReport {
  int64_t step = 0;
  std::string path;
  uint64_t bytes = 0;     // all files of the checkpoint
  double stall_ms = 0;    // time the saving step spent in save() (snapshot, skeleton)
  double write_s = 0;     // slowest rank's background write (pwrite + fsync + checksum)
  double publish_ms = 0;  // meta.h5, renames and `latest`, on rank 0
  std::vector<std::string> pruned;
};

// [Failed save]: the same on every rank.
class SaveFailed : public comm::AgreedFailure {
 public:
  SaveFailed(const std::string& msg, int exit_code, int origin_rank, int64_t step)
      : AgreedFailure(msg, exit_code, origin_rank), step_(step) {}
  int64_t step() const { return step_; }

 private:
  int64_t step_;
};

class Checkpointer {
 public:
  // base: the fields of every checkpoint of this run (all but step, files and counters).
  Checkpointer(comm::Communicator& comm, storage::IoThread& io, std::string ckpt_dir, int keep,
               bool async, CheckpointMeta base,
               std::function<void(const SaveReport&)> on_published);
  ~Checkpointer();  // waits for a write in flight; publishes nothing
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Collective. Starts saving the state after `step` (synchronously when not async): params
  // whole, m and v from element `state_offset` on (a sharded optimizer holds only its range,
  // which must cover this rank's slice). Returns the time spent here (the step's stall), in
  // milliseconds.
  double save(int64_t step, std::span<const float> params, std::span<const float> m,
              std::span<const float> v, size_t state_offset, int64_t nonfinite_skipped);
  // 1 while this rank's background write runs, for the step's max all-reduce.
  double writing_flag() const { return pending_ && !written_.load() ? 1.0 : 0.0; }
  bool pending() const { return pending_; }
  // Collective: publishes the pending save; call when the agreed writing flag is 0 (or to wait
  // for it: this blocks until this rank's write ends). save(), publish() and finish() throw
  // SaveFailed on every rank when the save failed on any ([Failed save]).
  void publish();
  // Collective: publishes a pending save, if any.
  void finish() {
    if (pending_) publish();
  }
  int64_t last_saved_step() const { return last_saved_step_; }
  // Testing: the last rank kills itself (SIGKILL) halfway through writing this step's file.
  void set_fault_kill_in_save(int64_t step) { fault_kill_step_ = step; }

 private:
  void write_in_background();
  // run_agreed for a step of the save; a failure anywhere abandons the save ([Failed save]).
  void agreed_save_step(const std::function<void()>& fn);
  [[noreturn]] void abandon(const comm::AgreedFailure& e);

  comm::Communicator& comm_;
  storage::IoThread& io_;
  std::string dir_;
  int keep_;
  bool async_;
  CheckpointMeta base_;
  std::function<void(const SaveReport&)> on_published_;
  uint64_t lo_ = 0, hi_ = 0;  // this rank's slice
  // Allocated once; page-aligned so that the write goes from them straight to disk.
  storage::PageAlignedVector<float> snapshot_[kStateTensors];
  uint64_t run_token_ = 0;  // names the partial directories of this run

  bool pending_ = false;
  std::atomic<bool> written_{false};
  std::thread writer_;
  std::exception_ptr write_error_;
  std::string partial_, file_path_;
  RankFileRecord rec_;
  CheckpointMeta meta_;  // of the pending save
  double stall_ms_ = 0, write_s_ = 0;
  std::chrono::steady_clock::time_point save_t0_;
  int64_t last_saved_step_ = -1;
  uint64_t last_bytes_ = 0;  // the last published checkpoint's size, about
  int64_t fault_kill_step_ = 0;
};

}  // namespace dpt::checkpoint
