// [Async save]: the collective protocol of saving around the files of rank_file.h and meta_file.h.
#include "checkpoint/checkpointer.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "checkpoint/directory.h"
#include "checkpoint/meta_file.h"
#include "checkpoint/rank_file.h"
#include "comm/agreement.h"
#include "comm/typed_collectives.h"
#include "common/elapsed.h"
#include "common/errors.h"
#include "common/hash.h"
#include "common/rng.h"
#include "common/trace.h"

namespace dpt::checkpoint {

using comm::run_agreed;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Copies src into dst and says whether every value is finite: an exponent of all ones is Inf
// or NaN. Integer tests, so the loop vectorizes.
// Copies n floats and says whether all are finite, in cache-sized chunks over the OpenMP
// threads (the step is stalled for this copy, so it uses every core the step uses).
bool copy_finite(const float* src, size_t n, float* dst) {
  constexpr size_t kChunk = size_t{1} << 14;  // 64 KB: checked while still in cache
  const auto chunks = static_cast<int64_t>((n + kChunk - 1) / kChunk);
  uint32_t bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad)
  for (int64_t c = 0; c < chunks; ++c) {
    const size_t lo = static_cast<size_t>(c) * kChunk, len = std::min(kChunk, n - lo);
    std::memcpy(dst + lo, src + lo, len * sizeof(float));
    const auto* bits = reinterpret_cast<const uint32_t*>(dst + lo);
    uint32_t b = 0;
    for (size_t i = 0; i < len; ++i)
      b |= static_cast<uint32_t>((bits[i] & 0x7f800000u) == 0x7f800000u);
    bad |= b;
  }
  return bad == 0;
}

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Checkpointer::Checkpointer(comm::Communicator& comm, storage::IoThread& io, std::string ckpt_dir,
                           int keep, bool async, CheckpointMeta base,
                           std::function<void(const SaveReport&)> on_published)
    : comm_(comm),
      io_(io),
      dir_(std::move(ckpt_dir)),
      keep_(keep),
      async_(async),
      base_(std::move(base)),
      on_published_(std::move(on_published)) {
  const uint64_t n = static_cast<uint64_t>(base_.param_count);
  lo_ = slice_begin(n, comm.rank(), comm.world_size());
  hi_ = slice_begin(n, comm.rank() + 1, comm.world_size());
  for (auto& s : snapshot_)
    s.resize(hi_ - lo_);
  // One token for the whole run names its partial directories, the same on every rank.
  run_token_ = mix64(static_cast<uint64_t>(Clock::now().time_since_epoch().count()) ^
                     (static_cast<uint64_t>(::getpid()) << 32));
  comm_.broadcast(std::span<uint64_t>(&run_token_, 1), 0);
}

Checkpointer::~Checkpointer() {
  if (writer_.joinable()) writer_.join();
}

double Checkpointer::save(int64_t step, std::span<const float> params, std::span<const float> m,
                          std::span<const float> v, size_t state_offset,
                          int64_t nonfinite_skipped) {
  const auto t0 = Clock::now();
  if (pending_) publish();  // one save at a time
  save_t0_ = t0;
  const size_t n = hi_ - lo_;
  DPT_CHECK(params.size() >= hi_ && state_offset <= lo_ && m.size() == v.size() &&
                m.size() >= hi_ - state_offset,
            "the state handed to save() does not cover this rank's checkpoint slice [" +
                std::to_string(lo_) + ", " + std::to_string(hi_) + ")");
  const size_t s = lo_ - state_offset;
  const bool finite = copy_finite(params.data() + lo_, n, snapshot_[0].data()) &
                      copy_finite(m.data() + s, n, snapshot_[1].data()) &
                      copy_finite(v.data() + s, n, snapshot_[2].data());
  partial_ = dir_ + "/.partial." + step_dir_name(step) + "." + hex16(run_token_);
  file_path_ = partial_ + "/" + rank_file_name(comm_.rank());
  run_agreed(comm_, [&] {
    if (!finite)
      throw RuntimeFailure("step " + std::to_string(step) +
                           ": the parameters or optimizer moments hold NaN or Inf; no "
                           "checkpoint is written with them. Resume from the newest checkpoint "
                           "with a lower --lr, or use --nonfinite skip");
  });
  meta_ = base_;
  meta_.step = step;
  agreed_save_step([&] {
    if (comm_.rank() == 0) {
      std::error_code ec;
      fs::create_directories(dir_, ec);
      if (ec || ::mkdir(partial_.c_str(), 0755) != 0)
        throw UsageError("cannot create " + partial_ + ": " +
                         (ec ? ec.message() : errno_string(errno)) +
                         ": make --ckpt-dir a writable directory");
    }
  });
  agreed_save_step([&] {
    rec_ = io_.call([&] { return create_rank_file(file_path_, comm_.rank(), lo_, hi_, step); });
  });
  meta_.nonfinite_skipped = nonfinite_skipped;
  meta_.samples_seen = step * base_.global_batch;
  meta_.world_size = comm_.world_size();
  pending_ = true;
  written_.store(false);
  write_error_ = nullptr;
  stall_ms_ = ms_since(t0);
  if (async_) {
    // Traced if the step that started it is: the thread may start after the window closed.
    writer_ = std::thread([this, traced = trace::recording()] {
      const trace::Span span("checkpoint write", trace::Track::checkpoint_writer, -1, traced);
      write_in_background();
    });
  } else {
    {
      const trace::Span span("checkpoint write");
      write_in_background();
    }
    publish();
    stall_ms_ = ms_since(t0);
  }
  return stall_ms_;
}

void Checkpointer::write_in_background() {
  const auto t0 = Clock::now();
  try {
    fill_rank_file(file_path_, {snapshot_[0].data(), snapshot_[1].data(), snapshot_[2].data()},
                   &rec_);
    if (meta_.step == fault_kill_step_ && comm_.rank() == comm_.world_size() - 1) {
      // A crash in the middle of the write: half the file, then the process dies at once.
      (void)::truncate(file_path_.c_str(), static_cast<off_t>(rec_.bytes / 2));
      std::fprintf(stderr, "train: --fault-kill-in-save %lld: rank %d kills itself mid-save\n",
                   static_cast<long long>(fault_kill_step_), comm_.rank());
      std::fflush(stderr);
      ::raise(SIGKILL);
    }
  } catch (...) {
    write_error_ = std::current_exception();
  }
  write_s_ = ms_since(t0) / 1000.0;
  written_.store(true);
}

void Checkpointer::agreed_save_step(const std::function<void()>& fn) {
  try {
    run_agreed(comm_, fn);
  } catch (const comm::AgreedFailure& e) {
    abandon(e);
  }
}

// [Failed save]: every rank has left the save's file operations (each failed step is agreed
// after this rank's part of it ended, and the writer thread is joined before its error is
// agreed), so rank 0 removes the partial directory alone.
void Checkpointer::abandon(const comm::AgreedFailure& e) {
  pending_ = false;
  if (comm_.rank() == 0) {
    std::error_code ec;
    fs::remove_all(partial_, ec);
  }
  // A full disk shows up as whatever call met it first (a pwrite, an HDF5 flush, a rename);
  // say so when the checkpoint no longer fits in what is free.
  std::string space;
  struct statvfs fs_stat {};
  if (::statvfs(dir_.c_str(), &fs_stat) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(fs_stat.f_bavail) * fs_stat.f_frsize;
    // The last checkpoint's size, or the state's 12 bytes per parameter plus HDF5's headers
    // and page alignment (about 16 KiB a rank file, 64 KiB for meta.h5).
    const uint64_t need =
        last_bytes_ > 0 ? last_bytes_
                        : 12 * static_cast<uint64_t>(base_.param_count) +
                              (uint64_t{16} << 10) * static_cast<uint64_t>(comm_.world_size()) +
                              (uint64_t{64} << 10);
    if (free_bytes < need) {
      space = "; the file system of " + dir_ + " has " + std::to_string(free_bytes) +
              " bytes free and a checkpoint of this run needs about " + std::to_string(need) +
              ": free space there (or lower --ckpt-keep) or point --ckpt-dir at a larger file "
              "system";
    }
  }
  const std::string kept = last_saved_step_ >= 0 ? "the newest checkpoint, " + dir_ + "/" +
                                                       step_dir_name(last_saved_step_) + ", is kept"
                                                 : "checkpoints published before are kept";
  throw SaveFailed("checkpoint of step " + std::to_string(meta_.step) + " not saved: " + e.what() +
                       space + "; " + kept,
                   e.exit_code(), e.origin_rank(), meta_.step);
}

void Checkpointer::publish() {
  if (writer_.joinable()) writer_.join();
  pending_ = false;
  agreed_save_step([&] {
    if (write_error_) std::rethrow_exception(write_error_);
  });
  // Every rank's file as it wrote it, and how long the write took.
  struct Written {
    uint64_t bytes;
    uint32_t crc32c;
    double write_s;
    std::array<uint64_t, kStateTensors> offsets;
  };
  const int W = comm_.world_size();
  const auto all =
      comm::all_gather_value(comm_, Written{rec_.bytes, rec_.crc32c, write_s_, rec_.offsets});
  SaveReport rep;
  rep.step = meta_.step;
  // Sync: the step waited for the whole save, publication included.
  rep.stall_ms = async_ ? stall_ms_ : ms_since(save_t0_);
  meta_.files.clear();
  for (int r = 0; r < W; ++r) {
    const Written& w = all[static_cast<size_t>(r)];
    RankFileRecord f;
    f.name = rank_file_name(r);
    f.bytes = w.bytes;
    f.crc32c = w.crc32c;
    rep.write_s = std::max(rep.write_s, w.write_s);
    f.lo = slice_begin(static_cast<uint64_t>(meta_.param_count), r, W);
    f.hi = slice_begin(static_cast<uint64_t>(meta_.param_count), r + 1, W);
    f.offsets = w.offsets;
    rep.bytes += f.bytes;
    meta_.files.push_back(std::move(f));
  }
  last_bytes_ = rep.bytes + (uint64_t{64} << 10);  // the rank files and about meta.h5
  agreed_save_step([&] {
    if (comm_.rank() != 0) return;
    const auto t0 = Clock::now();
    const std::string meta_path = partial_ + "/" + kMetaFileName;
    io_.call([&] { write_meta(meta_path, meta_); });
    struct stat st {};
    if (::stat(meta_path.c_str(), &st) == 0) rep.bytes += static_cast<uint64_t>(st.st_size);
    rep.path = publish_checkpoint(dir_, partial_, meta_.step);
    rep.pruned = prune_checkpoints(dir_, keep_);
    rep.publish_ms = ms_since(t0);
  });
  last_saved_step_ = meta_.step;
  if (comm_.rank() == 0 && on_published_) on_published_(rep);
}

}  // namespace dpt::checkpoint
