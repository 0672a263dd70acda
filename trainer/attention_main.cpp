// attention: what a trained model looked at. For chosen samples of a dataset (or a prompt for a
// language model) writes one HDF5 file ([Attention file], docs/attention.md) with every layer's
// and head's attention probabilities, the [Attention rollout], the model's outputs and the
// labels; scripts/plot-attention.py draws it. One process; the samples run in micro-batches
// through the training model itself (gpt.h on the CPU, gpt_cuda.h with --device cuda), so the
// maps are the ones training computes.
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "datasets/batch.h"
#include "datasets/sample_dataset.h"
#include "datasets/sample_inspect.h"
#include "datasets/shard_set.h"
#include "kernels/cuda_device.h"
#include "storage/durable.h"
#include "storage/h5.h"
#include "storage/io_thread.h"
#include "trainer/attention_maps.h"
#include "trainer/data_setup.h"
#include "trainer/metrics.h"
#include "trainer/model_file.h"
#include "trainer/tool_cli.h"

namespace {

using namespace dpt;
using namespace dpt::trainer;
namespace po = boost::program_options;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int32_t kEndOfText = 256;  // prepare-data's byte-level tokenizer
constexpr int kFileVersion = 1;

struct Options {
  std::string ckpt, data, samples, prompt, out = "attention.h5", device = "cpu", dtype = "fp32";
  int count = 8, batch = 16;
};

std::optional<Options> parse(int argc, char** argv) {
  Options o;
  // clang-format off
  po::options_description desc(
      "attention: the attention maps and rollout of a trained model (docs/attention.md)\n\n"
      "Usage: attention CKPT --data SHARDS [--samples 0,5,9 | --count N] [-o maps.h5]\n"
      "       attention CKPT --prompt TEXT [-o maps.h5]      (language models)\n"
      "  CKPT is a checkpoint (CKPT_DIR/step_*) or a run's --ckpt-dir (its latest)\n\nOptions");
  desc.add_options()
      ("help,h", "print this help and exit")
      ("data", po::value(&o.data), "sample shards of the kind the model was trained on")
      ("samples", po::value(&o.samples), "comma-separated sample indices (in dataset order)")
      ("count", po::value(&o.count)->default_value(o.count),
       "without --samples: this many samples evenly spaced over the dataset")
      ("prompt", po::value(&o.prompt), "a language model's prompt (byte-level tokens)")
      ("out,o", po::value(&o.out)->default_value(o.out), "the HDF5 file to write")
      ("batch", po::value(&o.batch)->default_value(o.batch), "samples per forward pass")
      ("device", po::value(&o.device)->default_value(o.device),
       "cpu, cuda (the first visible GPU: the same maps to the dtype's tolerance) or auto")
      ("dtype", po::value(&o.dtype)->default_value(o.dtype), "fp32, or bf16 on cuda");
  // clang-format on
  po::variables_map vm;
  if (!parse_tool_command_line("attention", argc, argv, desc, &o.ckpt, &vm)) return std::nullopt;
  if (o.data.empty() == !vm.count("prompt"))
    throw UsageError(
        "pass --data SHARDS (a classifier or regressor) or --prompt TEXT (a language "
        "model), one of the two");
  if (o.count < 1 || o.batch < 1) throw UsageError("--count and --batch must be positive");
  if (o.device != "cpu" && o.device != "cuda" && o.device != "auto")
    throw UsageError("--device " + o.device + " is not one of cpu, cuda, auto");
  if (o.dtype != "fp32" && o.dtype != "bf16")
    throw UsageError("--dtype " + o.dtype + " is not one of fp32, bf16");
  return o;
}

// A dataset of the file, whole, little-endian.
template <typename T>
void put(hid_t file, const char* name, const std::vector<hsize_t>& dims, const T* data) {
  storage::H5Space space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  DPT_CHECK_H5(space.get());
  storage::H5Dataset d(H5Dcreate2(file, name, storage::h5_little_endian<T>(), space.get(),
                                  H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  DPT_CHECK_H5(d.get());
  DPT_CHECK_H5(H5Dwrite(d.get(), storage::h5_native<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
}

int run(int argc, char** argv) {
  const auto parsed = parse(argc, argv);
  if (!parsed) return 0;
  const Options& o = *parsed;
  CheckpointModel m = load_checkpoint_model(o.ckpt);
  TrainConfig cfg = m.config;
  storage::IoThread io;  // [I/O thread], before the dataset, which closes its files on it
  std::optional<datasets::SampleDataset> data;
  std::string kind = "lm";
  std::vector<uint64_t> picked;
  if (!o.data.empty()) {
    if (cfg.model.task == Task::lm)
      throw UsageError(m.step_dir + " holds a language model: pass --prompt TEXT");
    const auto paths = datasets::resolve_shards(o.data, "--data");
    if (!datasets::is_sample_shard(paths.front()))
      throw UsageError("--data " + o.data + " holds token shards, not the sample shards a " +
                       task_name(cfg.model.task) + " model reads");
    std::vector<datasets::SampleShardFacts> facts;
    io.call([&] {
      for (const auto& p : paths)
        facts.push_back(datasets::inspect_sample_shard(p));
    });
    const datasets::SampleShardFacts common = datasets::common_sample_facts(facts, "--data");
    cfg.vocab_from_data = false;  // the checkpoint's vocabulary covers the data, or it is refused
    complete_model_from_samples(cfg, common);
    check_layout_matches(cfg.model, m);
    kind = datasets::sample_kind_name(common.kind);
    data.emplace(io, facts, size_t{64} << 20);
    const uint64_t n = data->num_samples();
    if (!o.samples.empty()) {
      for (int64_t i :
           parse_int_list(o.samples, static_cast<int64_t>(n), "--samples", "a sample index"))
        picked.push_back(static_cast<uint64_t>(i));
    } else {
      const uint64_t k = std::min<uint64_t>(static_cast<uint64_t>(o.count), n);
      for (uint64_t i = 0; i < k; ++i)
        picked.push_back(i * n / k);
    }
  } else {
    if (cfg.model.task != Task::lm)
      throw UsageError(m.step_dir + " holds a " + std::string(task_name(cfg.model.task)) +
                       " model: pass --data with samples of the kind it was trained on");
    check_layout_matches(cfg.model, m);
    if (cfg.model.vocab_size < 257)
      throw UsageError(
          "--prompt takes prepare-data's byte-level tokens, which this model's "
          "vocabulary of " +
          std::to_string(cfg.model.vocab_size) + " does not hold");
    picked = {0};
  }
  const ModelConfig& mc = cfg.model;
  const int L = mc.n_layer, NH = mc.n_head, P = mc.positions();
  const int K = mc.task == Task::lm ? mc.vocab_size : mc.num_outputs;

  // The prompt: end-of-text, then its bytes (the last seq_len tokens of a long one).
  std::vector<int32_t> prompt;
  if (data == std::nullopt) {
    prompt.push_back(kEndOfText);
    for (unsigned char c : o.prompt)
      prompt.push_back(c);
    if (static_cast<int>(prompt.size()) > mc.seq_len)
      prompt.erase(prompt.begin(), prompt.end() - mc.seq_len);
  }
  // Positions kept: a prompt's own tokens; every position of a sample.
  const int S = data ? P : static_cast<int>(prompt.size());
  const size_t N = picked.size(), SS = static_cast<size_t>(S) * S;
  std::vector<float> att(N * L * NH * SS), outputs(N * K);
  std::vector<double> rollout(N * SS);
  datasets::BatchBuffer rows(
      data ? data->fields()
           : datasets::SampleFields{.tokens = size_t(mc.seq_len), .labels = size_t(mc.seq_len)},
      N);
  if (data) {
    std::vector<datasets::SampleRef> refs;
    for (uint64_t i : picked)
      refs.push_back(data->sample_in_order(i));
    data->read_samples(refs, rows);
  } else {
    std::fill_n(rows.tokens(0), mc.seq_len, 0);
    std::copy(prompt.begin(), prompt.end(), rows.tokens(0));
    std::fill_n(rows.labels(0), mc.seq_len, 0);
  }

  const int B = std::min<int>(o.batch, static_cast<int>(N));
  // --device auto: a GPU when this build has CUDA and one is visible.
  const bool cuda = o.device == "cuda" || (o.device == "auto" && kernels::cuda_built() &&
                                           kernels::cuda_device_count() > 0);
  const Precision precision = o.dtype == "bf16" ? Precision::bf16 : Precision::fp32;
  if (!cuda && precision == Precision::bf16)
    throw UsageError("--dtype bf16 needs --device cuda: the CPU model computes in fp32");
  // The maps are the probabilities, which only unfused attention keeps ([Attention choice]).
  ModelConfig maps_cfg = mc;
  maps_cfg.attention = AttentionImpl::unfused;
  const std::unique_ptr<MapsModel> model =
      cuda ? make_cuda_maps_model(maps_cfg, m.params, B, 0, precision)
           : make_cpu_maps_model(maps_cfg, m.params, B);
  std::vector<float> layer_att(static_cast<size_t>(B) * NH * P * P);
  std::vector<float> head_out(static_cast<size_t>(B) *
                              (mc.task == Task::lm ? static_cast<size_t>(mc.seq_len) * K : K));
  const auto t0 = Clock::now();
  for (size_t first = 0; first < N; first += B) {
    const int n = static_cast<int>(std::min<size_t>(B, N - first));
    model->forward(rows.view(first, n));
    model->outputs(head_out.data());
    for (int l = 0; l < L; ++l) {
      model->attention(l, layer_att.data());
      const std::vector<float>& a = layer_att;
      for (int j = 0; j < n; ++j) {
        const size_t s = first + j;
        for (int h = 0; h < NH; ++h)
          for (int r = 0; r < S; ++r)
            for (int c = 0; c < S; ++c)
              att[(((s * L + l) * NH + h) * S + r) * S + c] =
                  a[((static_cast<size_t>(j) * NH + h) * P + r) * P + c];
      }
    }
    for (int j = 0; j < n; ++j) {
      const size_t s = first + j;
      const auto roll = attention_rollout(
          std::span<const float>(att).subspan(s * L * NH * SS, L * NH * SS), L, NH, S);
      std::copy(roll.begin(), roll.end(), rollout.begin() + s * SS);
      if (mc.task == Task::lm) {  // the next token's logits after the prompt's last
        std::copy_n(head_out.begin() + (static_cast<size_t>(j) * mc.seq_len + S - 1) * K, K,
                    outputs.begin() + s * K);
      } else {
        std::copy_n(head_out.begin() + static_cast<size_t>(j) * K, K, outputs.begin() + s * K);
      }
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const size_t done = first + n;
    if (N > static_cast<size_t>(B)) {
      std::fprintf(stderr, "attention: %zu/%zu samples, %.1f samples/s, ETA %s\n", done, N,
                   done / secs, format_duration((N - done) / (done / secs)).c_str());
    }
  }

  // [Attention file], written beside its name and renamed into place.
  storage::h5_quiet();
  const std::string tmp = o.out + storage::temp_suffix();
  {
    storage::H5File f(
        H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, storage::h5_file_access_latest().get()));
    if (!f.valid())
      throw UsageError("cannot create " + o.out + " (" + storage::h5_error_text() +
                       "): check that its directory exists and is writable");
    const hid_t h = f.get();
    const hsize_t n = N, l = L, nh = NH, s = S, k = K;
    put(h, "attention", {n, l, nh, s, s}, att.data());
    const std::vector<float> roll32(rollout.begin(), rollout.end());
    put(h, "rollout", {n, s, s}, roll32.data());
    put(h, mc.task == Task::regress ? "predictions" : "logits", {n, k}, outputs.data());
    std::vector<int64_t> index(picked.begin(), picked.end());
    put(h, "sample_index", {n}, index.data());
    if (mc.task == Task::classify || mc.task == Task::lm) {
      std::vector<int32_t> predicted(N);
      for (size_t i = 0; i < N; ++i)
        predicted[i] = static_cast<int32_t>(
            std::max_element(outputs.begin() + i * K, outputs.begin() + (i + 1) * K) -
            (outputs.begin() + i * K));
      put(h, "predicted", {n}, predicted.data());
    }
    const datasets::Batch all = rows.view(0, static_cast<int>(N));
    if (mc.task == Task::classify) put(h, "labels", {n}, all.labels);
    if (mc.task == Task::regress) put(h, "targets", {n, k}, all.targets);
    if (all.lengths) put(h, "lengths", {n}, all.lengths);
    if (mc.input == InputKind::image) {
      std::vector<uint8_t> px(N * mc.input_values());
      for (size_t i = 0; i < px.size(); ++i)
        px[i] = static_cast<uint8_t>(all.values[i] * 255.0f + 0.5f);
      put(h, "inputs", {n, hsize_t(mc.image_h), hsize_t(mc.image_w), hsize_t(mc.channels)},
          px.data());
    } else if (mc.input == InputKind::series) {
      put(h, "inputs", {n, hsize_t(mc.seq_len), hsize_t(mc.features)}, all.values);
    } else if (data) {
      put(h, "inputs", {n, hsize_t(mc.seq_len)}, all.tokens);
    } else {
      put(h, "inputs", {n, s}, prompt.data());
    }
    storage::h5_put_attr<int64_t>(h, "format_version", kFileVersion);
    storage::h5_put_string_attr(h, "task", task_name(mc.task));
    storage::h5_put_string_attr(h, "kind", kind);
    storage::h5_put_string_attr(h, "pool", pool_name(mc.pool));
    storage::h5_put_attr<int64_t>(h, "has_cls", mc.has_cls() ? 1 : 0);
    storage::h5_put_attr<int64_t>(h, "patch", mc.patch);
    storage::h5_put_attr<int64_t>(h, "n_layer", L);
    storage::h5_put_attr<int64_t>(h, "n_head", NH);
    storage::h5_put_attr<int64_t>(h, "step", m.step);
    storage::h5_put_string_attr(h, "checkpoint", m.step_dir);
    if (data && !data->facts().class_names.empty()) {
      std::string names;  // one per line: HDF5 string arrays are awkward from C; h5py splits it
      for (const auto& c : data->facts().class_names)
        names += c + "\n";
      storage::h5_put_string_attr(h, "class_names", names);
    }
  }
  storage::publish_file(tmp, o.out);
  std::fprintf(stderr,
               "attention: %s (step %lld) on %s: %zu sample(s), %d layer(s) x %d head(s) x %d x "
               "%d -> %s\n",
               m.step_dir.c_str(), static_cast<long long>(m.step), model->describe().c_str(), N, L,
               NH, S, S, o.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (...) {
    return dpt::report_exception("attention");
  }
}
