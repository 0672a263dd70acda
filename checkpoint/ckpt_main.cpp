// ckpt: lists, verifies and exports the checkpoints bin/train writes ([Checkpoint layout],
// format.h), without MPI: one process reads every file. HDF5 calls are made on the main
// thread, the only thread this tool has ([HDF5 thread]).
#include <algorithm>
#include <array>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/directory.h"
#include "checkpoint/format.h"
#include "checkpoint/meta_file.h"
#include "checkpoint/rank_file.h"
#include "checkpoint/safetensors.h"
#include "common/crash_note.h"
#include "common/elapsed.h"
#include "common/errors.h"
#include "storage/durable.h"
#include "storage/h5.h"

namespace {

using namespace dpt;
using namespace dpt::checkpoint;
using namespace dpt::storage;
namespace fs = std::filesystem;
namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;
using H5Group = storage::H5Handle<H5Gclose>;

constexpr const char* kUsage =
    "usage: ckpt list CKPT_DIR | ckpt verify STEP_DIR | ckpt export STEP_DIR OUT "
    "[--format h5|safetensors] [--names ours|hf-gpt2] [--what params|all]";

constexpr const char* kHelp =
    "ckpt: inspect the checkpoints bin/train writes (docs/checkpoints.md)\n"
    "\n"
    "  ckpt list CKPT_DIR\n"
    "      one line per published checkpoint, oldest first: step, ranks that saved it, bytes\n"
    "      on disk; marks the one `latest` names, notes damaged and incomplete ones\n"
    "  ckpt verify STEP_DIR\n"
    "      checks meta.h5 and every rank file's size and CRC-32C; exit code 2 on the first\n"
    "      damaged file\n"
    "  ckpt export STEP_DIR OUT [--format h5|safetensors] [--names ours|hf-gpt2]\n"
    "              [--what params|all]\n"
    "      h5 (the default, or for OUT.h5): one float32 dataset per parameter tensor, named as\n"
    "      in PyTorch (\"wte.weight\", \"blocks.0.attn.qkv.weight\", ...) with its shape, and "
    "root\n"
    "      attributes step, config, vocab_size, seq_len, d_model, n_layer, n_head; with\n"
    "      --what all also the AdamW moments under /adam_m and /adam_v.\n"
    "      safetensors (the default for OUT.safetensors): the same tensors in the safetensors\n"
    "      layout (safetensors.torch.load_file reads it), the moments as adam_m.NAME and\n"
    "      adam_v.NAME with --what all, and the step, config and shape as __metadata__.\n"
    "      --names hf-gpt2 (language models): Hugging Face GPT-2's names and Conv1D layout\n"
    "      (transformer.h.0.attn.c_attn.weight, transposed to [in, out]); the tied lm_head is\n"
    "      left out, as GPT-2's own files do, and __metadata__ holds a GPT2Config as JSON\n";

std::string megabytes(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

std::string rate(uint64_t bytes, double seconds) {
  char buf[32];
  if (seconds <= 0) return "- MB/s";
  std::snprintf(buf, sizeof(buf), "%.1f MB/s", static_cast<double>(bytes) / 1e6 / seconds);
  return buf;
}

// A subcommand's positional arguments (exactly `names.size()` of them) and its options.
po::variables_map parse_subcommand(const std::vector<std::string>& args,
                                   const std::vector<const char*>& names,
                                   po::options_description options) {
  po::positional_options_description positional;
  for (const char* name : names) {
    options.add_options()(name, po::value<std::string>());
    positional.add(name, 1);
  }
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + "; " + kUsage);
  }
  for (const char* name : names)
    if (!vm.count(name)) throw UsageError(std::string("missing ") + name + "; " + kUsage);
  return vm;
}

// The checkpoint (step_*) directory a command reads, and its metadata.
CheckpointMeta read_step_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw UsageError(dir + " is not a directory: pass a checkpoint directory (CKPT_DIR/step_*)");
  if (!fs::exists(fs::path(dir) / kMetaFileName, ec) &&
      fs::exists(fs::path(dir) / kLatestFileName, ec)) {
    const auto latest = read_latest(dir);
    throw UsageError(dir +
                     " holds checkpoints rather than being one: pass one of its step_* "
                     "directories" +
                     (latest ? " (latest: " + dir + "/" + step_dir_name(*latest) + ")" : ""));
  }
  return read_meta((fs::path(dir) / kMetaFileName).string());
}

uint64_t bytes_under(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  return total;
}

// ---- list ---------------------------------------------------------------------------------------

int list_command(const std::vector<std::string>& args) {
  const auto vm = parse_subcommand(args, {"CKPT_DIR"}, po::options_description());
  const std::string dir = vm["CKPT_DIR"].as<std::string>();
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw UsageError(dir + " is not a directory: pass the --ckpt-dir of a training run");

  const auto entries = list_checkpoints(dir);
  const std::optional<int64_t> latest = read_latest(dir);
  std::printf("%s: %zu checkpoint(s)\n", dir.c_str(), entries.size());
  if (!entries.empty())
    std::printf("  %-16s %10s %6s %12s\n", "checkpoint", "step", "ranks", "size");
  bool latest_found = false;
  for (const CheckpointEntry& e : entries) {
    const std::string name = fs::path(e.path).filename().string();
    const bool is_latest = latest && *latest == e.step;
    latest_found = latest_found || is_latest;
    const char* mark = is_latest ? "  <- latest" : "";
    try {
      const CheckpointMeta meta = read_meta((fs::path(e.path) / kMetaFileName).string());
      // read_meta does not tie the step to the directory's name; a renamed copy shows here.
      const std::string renamed =
          meta.step == e.step ? "" : "  (named for step " + std::to_string(e.step) + ")";
      std::printf("  %-16s %10lld %6d %12s%s%s\n", name.c_str(), static_cast<long long>(meta.step),
                  meta.world_size, megabytes(bytes_under(e.path)).c_str(), mark, renamed.c_str());
    } catch (const std::exception& err) {
      std::printf("  %-16s damaged: %s%s\n", name.c_str(), err.what(), mark);
    }
  }
  // What resume ignores: saves that never finished, and step_* directories without meta.h5.
  std::vector<std::string> ignored;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".partial.", 0) == 0) {
      ignored.push_back(name + "  incomplete (ignored on resume)");
    } else if (name.rfind("step_", 0) == 0 && e.is_directory(ec) &&
               !fs::exists(e.path() / kMetaFileName, ec)) {
      ignored.push_back(name + "  incomplete: no meta.h5 (ignored on resume)");
    }
  }
  std::sort(ignored.begin(), ignored.end());
  for (const std::string& line : ignored)
    std::printf("  %s\n", line.c_str());
  if (!latest) {
    std::printf("  (no readable %s file)\n", kLatestFileName);
  } else if (!latest_found) {
    std::printf("  %s names %s, which is not a published checkpoint\n", kLatestFileName,
                step_dir_name(*latest).c_str());
  }
  return 0;
}

// ---- verify -------------------------------------------------------------------------------------

int verify_command(const std::vector<std::string>& args) {
  const auto vm = parse_subcommand(args, {"STEP_DIR"}, po::options_description());
  const std::string dir = vm["STEP_DIR"].as<std::string>();
  const auto t0 = Clock::now();
  const CheckpointMeta meta = read_step_dir(dir);
  std::printf("  %-16s checked (meta_crc32c)\n", kMetaFileName);
  uint64_t total = 0, all = 0;
  for (const RankFileRecord& f : meta.files)
    all += f.bytes;
  const auto t_files = Clock::now();
  size_t done = 0;
  for (const RankFileRecord& f : meta.files) {
    const auto t = Clock::now();
    verify_file((fs::path(dir) / f.name).string(), f.bytes, f.crc32c);
    const double s = seconds_since(t);
    total += f.bytes;
    ++done;
    // Progress: the files' rate so far and the time the rest will take at it.
    const double so_far = seconds_since(t_files);
    const double eta = total > 0 ? so_far * static_cast<double>(all - total) / total : 0.0;
    std::printf("  %-16s %12s %14s | %zu/%zu files, ETA %.1f s\n", f.name.c_str(),
                megabytes(f.bytes).c_str(), rate(f.bytes, s).c_str(), done, meta.files.size(), eta);
    std::fflush(stdout);
  }
  const double s = seconds_since(t0);
  std::printf("OK: %s: step %lld, saved by %d rank(s), %lld parameters, %s in %.2f s (%s)\n",
              dir.c_str(), static_cast<long long>(meta.step), meta.world_size,
              static_cast<long long>(meta.param_count), megabytes(total).c_str(), s,
              rate(total, s).c_str());
  return 0;
}

// ---- export -------------------------------------------------------------------------------------

// One dataset per tensor under `loc`, cut from the flat buffer `flat`.
void write_tensors(hid_t loc, const std::vector<TensorView>& tensors, const float* flat) {
  for (const TensorView& t : tensors) {
    std::vector<hsize_t> dims(t.shape.begin(), t.shape.end());
    storage::H5Space space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
    DPT_CHECK_H5(space.get());
    storage::H5Dataset d(H5Dcreate2(loc, t.name.c_str(), storage::h5_little_endian<float>(),
                                    space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    DPT_CHECK_H5(d.get());
    DPT_CHECK_H5(
        H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, flat + t.offset));
  }
}

// The tensor table must cut the flat buffer into named, in-range pieces before it names
// datasets: a '/' would make groups, and a bad offset would read past the buffer.
void check_tensor_table(const std::string& dir, const CheckpointMeta& meta) {
  std::vector<std::string> names;
  for (const TensorView& t : meta.tensors) {
    const uint64_t n = t.numel();
    const bool ok = !t.name.empty() && t.name.find('/') == std::string::npos &&
                    t.name != "adam_m" && t.name != "adam_v" && !t.shape.empty() &&
                    t.offset <= static_cast<uint64_t>(meta.param_count) &&
                    n <= static_cast<uint64_t>(meta.param_count) - t.offset;
    if (!ok)
      throw UsageError("checkpoint metadata " + dir + "/" + kMetaFileName + ": tensor '" + t.name +
                       "' does not fit the " + std::to_string(meta.param_count) +
                       " parameters or cannot name a dataset: the checkpoint is damaged");
    names.push_back(t.name);
  }
  std::sort(names.begin(), names.end());
  const auto dup = std::adjacent_find(names.begin(), names.end());
  if (dup != names.end())
    throw UsageError("checkpoint metadata " + dir + "/" + kMetaFileName + ": tensor '" + *dup +
                     "' appears twice: the checkpoint is damaged");
  if (meta.tensors.empty())
    throw UsageError("checkpoint metadata " + dir + "/" + kMetaFileName +
                     " lists no tensors: the checkpoint is damaged");
}

// Removes the temporary file unless the export was published.
struct TempFile {
  std::string path;
  bool keep = false;
  ~TempFile() {
    if (!keep) {
      std::error_code ec;
      fs::remove(path, ec);
    }
  }
};

// [Safetensors] export of the read state: the parameters under our names or GPT-2's, the moments
// under adam_m. and adam_v. with --what all, and the run's facts as __metadata__.
void write_safetensors_export(const std::string& path, const CheckpointMeta& meta,
                              const std::array<std::vector<float>, kStateTensors>& state,
                              bool hf_names) {
  std::vector<ExportTensor> tensors;
  for (const TensorView& t : meta.tensors) {
    ExportTensor e{t.name, t.shape, state[0].data() + t.offset, false};
    if (hf_names) {
      e.name = hf_gpt2_name(t.name, &e.transpose);
      if (e.transpose) std::swap(e.shape[0], e.shape[1]);
    }
    tensors.push_back(std::move(e));
  }
  for (int s = 1; s < kStateTensors; ++s) {
    if (state[s].empty()) continue;
    for (const TensorView& t : meta.tensors)
      tensors.push_back({std::string(kStateTensorNames[s]) + "." + t.name, t.shape,
                         state[s].data() + t.offset, false});
  }
  std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                 {"step", std::to_string(meta.step)},
                                                 {"config", meta.config},
                                                 {"vocab_size", std::to_string(meta.vocab_size)},
                                                 {"seq_len", std::to_string(meta.seq_len)},
                                                 {"d_model", std::to_string(meta.d_model)},
                                                 {"n_layer", std::to_string(meta.n_layer)},
                                                 {"n_head", std::to_string(meta.n_head)},
                                                 {"names", hf_names ? "hf-gpt2" : "ours"}};
  if (hf_names) {
    // What transformers.GPT2Config(**json.loads(...)) needs to rebuild this model.
    char cfg[512];
    std::snprintf(cfg, sizeof(cfg),
                  "{\"model_type\": \"gpt2\", \"vocab_size\": %lld, \"n_positions\": %lld, "
                  "\"n_ctx\": %lld, \"n_embd\": %lld, \"n_layer\": %lld, \"n_head\": %lld, "
                  "\"activation_function\": \"gelu_new\", \"layer_norm_epsilon\": 1e-05, "
                  "\"resid_pdrop\": 0.0, \"embd_pdrop\": 0.0, \"attn_pdrop\": 0.0, "
                  "\"tie_word_embeddings\": true}",
                  static_cast<long long>(meta.vocab_size), static_cast<long long>(meta.seq_len),
                  static_cast<long long>(meta.seq_len), static_cast<long long>(meta.d_model),
                  static_cast<long long>(meta.n_layer), static_cast<long long>(meta.n_head));
    metadata["hf_config"] = cfg;
  }
  write_safetensors(path, tensors, metadata);
}

int export_command(const std::vector<std::string>& args) {
  std::string what = "params", format, names = "ours";
  po::options_description options;
  options.add_options()("what", po::value<std::string>(&what),
                        "params: the parameters only; all: also the AdamW moments")(
      "format", po::value<std::string>(&format), "h5 or safetensors (default: from OUT's name)")(
      "names", po::value<std::string>(&names), "ours or hf-gpt2 (safetensors only)");
  const auto vm = parse_subcommand(args, {"STEP_DIR", "OUT"}, options);
  const std::string dir = vm["STEP_DIR"].as<std::string>();
  const std::string out = vm["OUT"].as<std::string>();
  if (what != "params" && what != "all")
    throw UsageError("--what " + what + " is not one of params, all; " + kUsage);
  if (format.empty()) format = fs::path(out).extension() == ".safetensors" ? "safetensors" : "h5";
  if (format != "h5" && format != "safetensors")
    throw UsageError("--format " + format + " is not one of h5, safetensors; " + kUsage);
  if (names != "ours" && names != "hf-gpt2")
    throw UsageError("--names " + names + " is not one of ours, hf-gpt2; " + kUsage);
  if (names == "hf-gpt2" && format != "safetensors")
    throw UsageError("--names hf-gpt2 applies to --format safetensors (or OUT.safetensors)");
  const fs::path out_dir = fs::absolute(out).parent_path();
  std::error_code ec;
  if (!fs::is_directory(out_dir, ec))
    throw UsageError("cannot write " + out + ": " + out_dir.string() +
                     " is not a directory; create it first");
  if (fs::is_directory(out, ec))
    throw UsageError("cannot write " + out + ": it is a directory; pass a file name (OUT.h5)");

  const auto t0 = Clock::now();
  const CheckpointMeta meta = read_step_dir(dir);
  check_tensor_table(dir, meta);

  // read_rank_file checks each file's size and checksum as it reads; the moments are kept only
  // for --what all.
  const size_t n = static_cast<size_t>(meta.param_count);
  std::array<std::vector<float>, kStateTensors> state;
  for (int t = 0; t < kStateTensors; ++t)
    if (t == 0 || what == "all") state[t].assign(n, 0.0f);
  auto keep = [&](int t) { return state[t].empty() ? nullptr : state[t].data(); };
  uint64_t read_bytes = 0;
  for (const RankFileRecord& f : meta.files) {
    read_rank_file((fs::path(dir) / f.name).string(), f, {keep(0), keep(1), keep(2)});
    read_bytes += f.bytes;
  }
  const double read_s = seconds_since(t0);

  const auto t1 = Clock::now();
  storage::h5_quiet();
  TempFile tmp{out + temp_suffix()};
  if (format == "safetensors") {
    write_safetensors_export(tmp.path, meta, state, names == "hf-gpt2");
  } else {
    // A raw id rather than H5File: its destructor ignores a failed close, and the close is
    // where HDF5 writes what it still holds, so it is checked here.
    struct FileCloser {
      hid_t id;
      ~FileCloser() {
        if (id >= 0) H5Fclose(id);
      }
    } file{H5Fcreate(tmp.path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)};
    if (file.id < 0)
      throw RuntimeFailure("cannot create " + tmp.path + " (" + storage::h5_error_text() +
                           "): check that " + out_dir.string() + " is writable");
    const hid_t root = file.id;
    storage::h5_put_attr<int64_t>(root, "step", meta.step);
    storage::h5_put_string_attr(root, "config", meta.config);
    storage::h5_put_attr<int64_t>(root, "vocab_size", meta.vocab_size);
    storage::h5_put_attr<int64_t>(root, "seq_len", meta.seq_len);
    storage::h5_put_attr<int64_t>(root, "d_model", meta.d_model);
    storage::h5_put_attr<int64_t>(root, "n_layer", meta.n_layer);
    storage::h5_put_attr<int64_t>(root, "n_head", meta.n_head);
    write_tensors(root, meta.tensors, state[0].data());
    if (what == "all") {
      for (int t = 1; t < kStateTensors; ++t) {
        H5Group g(H5Gcreate2(root, kStateTensorNames[t], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        DPT_CHECK_H5(g.get());
        write_tensors(g.get(), meta.tensors, state[t].data());
      }
    }
    DPT_CHECK_H5(H5Fclose(std::exchange(file.id, H5I_INVALID_HID)));
  }
  publish_file(tmp.path, out);
  tmp.keep = true;
  const double write_s = seconds_since(t1);

  uint64_t params = 0;
  for (const TensorView& t : meta.tensors)
    params += t.numel();
  const uint64_t out_bytes = fs::file_size(out, ec);
  std::printf(
      "ckpt export: %s (step %lld) -> %s (%s%s): %zu tensors, %llu parameters%s, %s written in "
      "%.2f s (read %s in %.2f s, %s)\n",
      dir.c_str(), static_cast<long long>(meta.step), out.c_str(), format.c_str(),
      names == "hf-gpt2" ? ", GPT-2 names" : "", meta.tensors.size(),
      static_cast<unsigned long long>(params), what == "all" ? " with adam_m and adam_v" : "",
      megabytes(out_bytes).c_str(), write_s, megabytes(read_bytes).c_str(), read_s,
      rate(read_bytes, read_s).c_str());
  return 0;
}

// ---- main ---------------------------------------------------------------------------------------

int run(int argc, char** argv) {
  if (argc < 2) throw UsageError(std::string("no command; ") + kUsage);
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  const bool help = command == "--help" || command == "-h" || command == "help" ||
                    std::find(args.begin(), args.end(), "--help") != args.end() ||
                    std::find(args.begin(), args.end(), "-h") != args.end();
  if (help) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (command == "list") return list_command(args);
  if (command == "verify") return verify_command(args);
  if (command == "export") return export_command(args);
  throw UsageError("unknown command '" + command + "'; " + kUsage);
}

}  // namespace

int main(int argc, char** argv) {
  dpt::install_crash_reporter("ckpt", -1);  // [Crash note]
  try {
    return run(argc, argv);
  } catch (...) {
    return report_exception("ckpt");
  }
}
