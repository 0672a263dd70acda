// Resume: finding, checking and loading a checkpoint on any number of ranks (resharding).
#include "checkpoint/resume.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "checkpoint/directory.h"
#include "checkpoint/meta_file.h"
#include "checkpoint/rank_file.h"
#include "comm/agreement.h"
#include "comm/typed_collectives.h"
#include "common/elapsed.h"
#include "common/errors.h"

namespace dpt::checkpoint {

using comm::AgreedFailure;
using comm::run_agreed;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string ResumeRequest::text() const {
  switch (mode) {
    case Mode::automatic:
      return "auto";
    case Mode::never:
      return "never";
    case Mode::path:
      return path;
  }
  return "?";
}

void check_same_state_and_data(const CheckpointMeta& saved, const CheckpointMeta& expect) {
  auto num = [](auto x) { return std::to_string(x); };
  if (saved.data_fingerprint != expect.data_fingerprint) {
    throw UsageError("--data holds " + num(expect.data_shards) + " shard(s), " +
                     num(expect.data_tokens) +
                     " tokens, not the shards the checkpoint was trained on (" +
                     num(saved.data_shards) + " shard(s), " + num(saved.data_tokens) +
                     " tokens, or the same sizes with other contents): the sample order would "
                     "change. Point --data at the same shards (they may have moved), or start "
                     "a new run in another --ckpt-dir");
  }
  // The layout itself, in case a future model differs in more than its shape.
  bool layout =
      saved.tensors.size() == expect.tensors.size() && saved.param_count == expect.param_count;
  for (size_t i = 0; layout && i < saved.tensors.size(); ++i)
    layout = saved.tensors[i].name == expect.tensors[i].name &&
             saved.tensors[i].offset == expect.tensors[i].offset &&
             saved.tensors[i].shape == expect.tensors[i].shape;
  if (!layout)
    throw UsageError(
        "the checkpoint's parameter tensors differ from this model's: resume it "
        "with the build and model options that saved it");
}

namespace {

// Rank 0's view of which checkpoints exist, the same list on every rank.
std::vector<CheckpointEntry> agreed_listing(comm::Communicator& comm, const std::string& dir) {
  std::vector<int64_t> steps;
  if (comm.rank() == 0)
    for (const CheckpointEntry& e : list_checkpoints(dir))
      steps.push_back(e.step);
  comm::broadcast_vector(comm, steps, 0);
  std::vector<CheckpointEntry> list;
  for (int64_t s : steps)
    list.push_back({s, dir + "/" + step_dir_name(s)});
  return list;
}

std::string loaded(const ResumeState& st) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "; loaded %.1f MB in %.2f s (%.0f MB/s)", st.bytes / 1e6,
                st.load_s, st.bytes / 1e6 / std::max(st.load_s, 1e-9));
  return buf;
}

// Loads one checkpoint: meta (every rank), compatibility, rank files (file i on rank i % W),
// broadcasts, hash. `damaged` is set when the failure is damage (so auto may fall back).
ResumeState load_one(comm::Communicator& comm, storage::IoThread& io, const std::string& path,
                     const CompatibilityCheck& compatible, bool* damaged) {
  ResumeState st;
  st.path = path;
  *damaged = true;
  run_agreed(comm,
             [&] { st.meta = io.call([&] { return read_meta(path + "/" + kMetaFileName); }); });
  *damaged = false;
  run_agreed(comm, [&] { compatible(st.meta); });
  const size_t n = static_cast<size_t>(st.meta.param_count);
  st.params.assign(n, 0.0f);
  st.m.assign(n, 0.0f);
  st.v.assign(n, 0.0f);
  const int W = comm.world_size();
  const auto t0 = Clock::now();
  *damaged = true;
  run_agreed(comm, [&] {
    for (size_t i = static_cast<size_t>(comm.rank()); i < st.meta.files.size();
         i += static_cast<size_t>(W)) {
      const RankFileRecord& f = st.meta.files[i];
      read_rank_file(path + "/" + f.name, f, {st.params.data(), st.m.data(), st.v.data()});
    }
  });
  for (size_t i = 0; i < st.meta.files.size(); ++i) {
    const RankFileRecord& f = st.meta.files[i];
    const int root = static_cast<int>(i % static_cast<size_t>(W));
    const size_t len = f.hi - f.lo;
    for (std::vector<float>* t : {&st.params, &st.m, &st.v})
      comm.broadcast(std::span<float>(t->data() + f.lo, len), root);
    st.bytes += f.bytes;
  }
  st.load_s = ms_since(t0) / 1000.0;
  *damaged = false;
  return st;
}

}  // namespace

std::optional<ResumeState> resume_from(comm::Communicator& comm, storage::IoThread& io,
                                       const ResumeRequest& resume, const std::string& ckpt_dir,
                                       const CompatibilityCheck& compatible,
                                       const std::function<void(const std::string&)>& say) {
  if (!ckpt_dir.empty() && comm.rank() == 0) {
    std::error_code ec;
    if (fs::is_directory(ckpt_dir, ec)) {
      for (const auto& p : remove_partials(ckpt_dir))
        say("resume: removed " + p + ", left by a save that did not finish");
    }
  }
  if (resume.mode == ResumeRequest::Mode::never) {
    const auto list =
        ckpt_dir.empty() ? std::vector<CheckpointEntry>{} : agreed_listing(comm, ckpt_dir);
    run_agreed(comm, [&] {
      if (!list.empty())
        throw UsageError("--resume never, but --ckpt-dir " + ckpt_dir +
                         " already holds checkpoints (newest " + list.back().path +
                         "): pass --resume auto to continue from it, or give an empty "
                         "--ckpt-dir (nothing saved is overwritten)");
    });
    say("resume: never; starting at step 1");
    return std::nullopt;
  }
  bool damaged = false;
  if (resume.mode == ResumeRequest::Mode::path) {
    const std::string& path = resume.path;
    run_agreed(comm, [&] {
      std::error_code ec;
      if (!fs::is_regular_file(fs::path(path) / kMetaFileName, ec)) {
        std::string hint = fs::is_directory(path, ec) && !list_checkpoints(path).empty()
                               ? ": it holds checkpoints; name one of its step_* directories, "
                                 "or pass --resume auto --ckpt-dir " +
                                     path
                               : ": name a step_* directory of a --ckpt-dir";
        throw UsageError("--resume " + path + " is not a checkpoint (no " + kMetaFileName +
                         " in it)" + hint);
      }
    });
    ResumeState st = load_one(comm, io, path, compatible, &damaged);
    say("resume: from " + path + " (step " + std::to_string(st.meta.step) + ", saved by " +
        std::to_string(st.meta.world_size) + " rank(s))" + loaded(st));
    return st;
  }
  if (ckpt_dir.empty()) {
    say("resume: auto, but no --ckpt-dir: starting at step 1 and saving no checkpoints");
    return std::nullopt;
  }
  const auto list = agreed_listing(comm, ckpt_dir);
  if (list.empty()) {
    say("resume: auto; no checkpoint in " + ckpt_dir + ": starting at step 1");
    return std::nullopt;
  }
  int bad = 0;
  for (auto it = list.rbegin(); it != list.rend(); ++it) {
    try {
      ResumeState st = load_one(comm, io, it->path, compatible, &damaged);
      say("resume: auto; from " + it->path + " (step " + std::to_string(st.meta.step) +
          ", saved by " + std::to_string(st.meta.world_size) + " rank(s))" +
          (bad > 0 ? ", the newest valid one" : "") + loaded(st));
      return st;
    } catch (const AgreedFailure& e) {
      if (!damaged) throw;
      ++bad;
      say("resume: skipping " + it->path + ": " + e.what() +
          (std::next(it) != list.rend() ? "; trying the previous checkpoint" : ""));
    }
  }
  throw AgreedFailure("every checkpoint in --ckpt-dir " + ckpt_dir + " (" + std::to_string(bad) +
                          ") is damaged, see above: move them away to start afresh there, or "
                          "restore one",
                      2, 0);
}

}  // namespace dpt::checkpoint
