// [Async save] and resume: the collective protocol around the files of checkpoint.h.
#include "trainer/checkpointer.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/errors.h"
#include "common/hash.h"
#include "common/rng.h"
#include "trainer/agreement.h"

namespace dpt::trainer {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

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

Checkpointer::Checkpointer(comm::Communicator& comm, datasets::IoThread& io, std::string ckpt_dir,
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
                          std::span<const float> v, int64_t nonfinite_skipped) {
  const auto t0 = Clock::now();
  if (pending_) publish();  // one save at a time
  save_t0_ = t0;
  const size_t n = hi_ - lo_;
  const bool finite = copy_finite(params.data() + lo_, n, snapshot_[0].data()) &
                      copy_finite(m.data() + lo_, n, snapshot_[1].data()) &
                      copy_finite(v.data() + lo_, n, snapshot_[2].data());
  partial_ = dir_ + "/.partial." + step_dir_name(step) + "." + hex16(run_token_);
  file_path_ = partial_ + "/" + rank_file_name(comm_.rank());
  run_agreed(comm_, [&] {
    if (!finite)
      throw RuntimeFailure("step " + std::to_string(step) +
                           ": the parameters or optimizer moments hold NaN or Inf; no "
                           "checkpoint is written with them. Resume from the newest checkpoint "
                           "with a lower --lr, or use --nonfinite skip");
    if (comm_.rank() == 0) {
      std::error_code ec;
      fs::create_directories(dir_, ec);
      if (ec || ::mkdir(partial_.c_str(), 0755) != 0)
        throw UsageError("cannot create " + partial_ + ": " +
                         (ec ? ec.message() : errno_string(errno)) +
                         ": make --ckpt-dir a writable directory");
    }
  });
  run_agreed(comm_, [&] {
    rec_ = io_.call([&] { return create_rank_file(file_path_, comm_.rank(), lo_, hi_, step); });
  });
  meta_ = base_;
  meta_.step = step;
  meta_.nonfinite_skipped = nonfinite_skipped;
  meta_.samples_seen = step * base_.global_batch;
  meta_.world_size = comm_.world_size();
  pending_ = true;
  written_.store(false);
  write_error_ = nullptr;
  stall_ms_ = ms_since(t0);
  if (async_) {
    writer_ = std::thread([this] { write_in_background(); });
  } else {
    write_in_background();
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

void Checkpointer::publish() {
  if (writer_.joinable()) writer_.join();
  pending_ = false;
  run_agreed(comm_, [&] {
    if (write_error_) std::rethrow_exception(write_error_);
  });
  // Every rank's record: size, checksum, write time (bits of a double) and data offsets.
  constexpr size_t kFields = 3 + kStateTensors;
  uint64_t mine[kFields] = {rec_.bytes, rec_.crc32c, 0};
  std::memcpy(&mine[2], &write_s_, sizeof(double));
  for (int t = 0; t < kStateTensors; ++t)
    mine[3 + t] = rec_.offsets[t];
  const int W = comm_.world_size();
  std::vector<uint64_t> all(kFields * W);
  comm_.all_gather(mine, all.data(), kFields, comm::DType::u64);
  SaveReport rep;
  rep.step = meta_.step;
  // Sync: the step waited for the whole save, publication included.
  rep.stall_ms = async_ ? stall_ms_ : ms_since(save_t0_);
  meta_.files.clear();
  for (int r = 0; r < W; ++r) {
    const uint64_t* a = &all[kFields * r];
    RankFileRecord f;
    f.name = rank_file_name(r);
    f.bytes = a[0];
    f.crc32c = static_cast<uint32_t>(a[1]);
    double ws = 0;
    std::memcpy(&ws, &a[2], sizeof(double));
    rep.write_s = std::max(rep.write_s, ws);
    f.lo = slice_begin(static_cast<uint64_t>(meta_.param_count), r, W);
    f.hi = slice_begin(static_cast<uint64_t>(meta_.param_count), r + 1, W);
    for (int t = 0; t < kStateTensors; ++t)
      f.offsets[t] = a[3 + t];
    rep.bytes += f.bytes;
    meta_.files.push_back(std::move(f));
  }
  run_agreed(comm_, [&] {
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

// ---- resume ------------------------------------------------------------------------------------

CheckpointMeta checkpoint_base(const TrainConfig& cfg, int world_size,
                               const std::vector<datasets::ShardFacts>& train_shards) {
  CheckpointMeta m;
  m.world_size = world_size;
  m.total_steps = cfg.steps;
  m.seed = cfg.seed;
  m.config = cfg.to_config_file();
  m.vocab_size = cfg.model.vocab_size;
  m.seq_len = cfg.model.seq_len;
  m.d_model = cfg.model.d_model;
  m.n_layer = cfg.model.n_layer;
  m.n_head = cfg.model.n_head;
  m.global_batch = cfg.global_batch;
  m.shuffle = cfg.shuffle;
  m.shuffle_window = cfg.shuffle_window;
  uint64_t h = fnv1a64("dpt-data", 8);
  for (const auto& f : train_shards) {
    const uint64_t fields[2] = {f.num_tokens, f.checksum};
    h = fnv1a64(fields, sizeof(fields), h);
    m.data_tokens += static_cast<int64_t>(f.num_tokens);
  }
  m.data_fingerprint = h;
  m.data_shards = static_cast<int64_t>(train_shards.size());
  const ParamLayout layout(cfg.model);
  m.param_count = static_cast<int64_t>(layout.total());
  m.tensors = layout.tensors();
  return m;
}

void check_resume_compatible(const CheckpointMeta& saved, const CheckpointMeta& expect) {
  auto same = [&](bool equal, const char* option, const std::string& was, const std::string& now) {
    if (equal) return;
    throw UsageError(std::string(option) + " " + now + " contradicts the checkpoint, which was " +
                     "trained with " + option + " " + was + ": pass " + option + " " + was +
                     " to continue it, or start a new run in another --ckpt-dir");
  };
  auto num = [](auto x) { return std::to_string(x); };
  same(saved.vocab_size == expect.vocab_size, "--vocab-size", num(saved.vocab_size),
       num(expect.vocab_size));
  same(saved.seq_len == expect.seq_len, "--seq-len", num(saved.seq_len), num(expect.seq_len));
  same(saved.d_model == expect.d_model, "--d-model", num(saved.d_model), num(expect.d_model));
  same(saved.n_layer == expect.n_layer, "--n-layer", num(saved.n_layer), num(expect.n_layer));
  same(saved.n_head == expect.n_head, "--n-head", num(saved.n_head), num(expect.n_head));
  same(saved.global_batch == expect.global_batch, "--global-batch", num(saved.global_batch),
       num(expect.global_batch));
  same(saved.seed == expect.seed, "--seed", num(saved.seed), num(expect.seed));
  same(saved.shuffle == expect.shuffle, "--shuffle", saved.shuffle, expect.shuffle);
  same(saved.shuffle_window == expect.shuffle_window, "--shuffle-window", num(saved.shuffle_window),
       num(expect.shuffle_window));
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
  std::vector<CheckpointEntry> list;
  int64_t count = 0;
  if (comm.rank() == 0) {
    list = list_checkpoints(dir);
    count = static_cast<int64_t>(list.size());
  }
  comm.broadcast(std::span<int64_t>(&count, 1), 0);
  std::vector<int64_t> steps(static_cast<size_t>(count));
  if (comm.rank() == 0)
    for (size_t i = 0; i < list.size(); ++i)
      steps[i] = list[i].step;
  comm.broadcast(std::span<int64_t>(steps), 0);
  list.clear();
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
ResumeState load_one(comm::Communicator& comm, datasets::IoThread& io, const std::string& path,
                     const CheckpointMeta& expect, bool* damaged) {
  ResumeState st;
  st.path = path;
  *damaged = true;
  run_agreed(comm,
             [&] { st.meta = io.call([&] { return read_meta(path + "/" + kMetaFileName); }); });
  *damaged = false;
  run_agreed(comm, [&] { check_resume_compatible(st.meta, expect); });
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

std::optional<ResumeState> resume_from(comm::Communicator& comm, datasets::IoThread& io,
                                       const std::string& resume, const std::string& ckpt_dir,
                                       const CheckpointMeta& expect,
                                       const std::function<void(const std::string&)>& say) {
  if (!ckpt_dir.empty() && comm.rank() == 0) {
    std::error_code ec;
    if (fs::is_directory(ckpt_dir, ec)) {
      for (const auto& p : remove_partials(ckpt_dir))
        say("resume: removed " + p + ", left by a save that did not finish");
    }
  }
  if (resume == "never") {
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
  if (resume != "auto") {
    run_agreed(comm, [&] {
      std::error_code ec;
      if (!fs::is_regular_file(fs::path(resume) / kMetaFileName, ec)) {
        std::string hint = fs::is_directory(resume, ec) && !list_checkpoints(resume).empty()
                               ? ": it holds checkpoints; name one of its step_* directories, "
                                 "or pass --resume auto --ckpt-dir " +
                                     resume
                               : ": name a step_* directory of a --ckpt-dir";
        throw UsageError("--resume " + resume + " is not a checkpoint (no " + kMetaFileName +
                         " in it)" + hint);
      }
    });
    ResumeState st = load_one(comm, io, resume, expect, &damaged);
    say("resume: from " + resume + " (step " + std::to_string(st.meta.step) + ", saved by " +
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
      ResumeState st = load_one(comm, io, it->path, expect, &damaged);
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

}  // namespace dpt::trainer
