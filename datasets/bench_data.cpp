// bench-data: throughput of the training data path (TokenDataset or SampleDataset + BatchStream
// on the I/O thread) over a dataset of token shards or sample shards (images, series, texts),
// for the full or the local shuffle; scripts/bench-data.sh sets it beside `cat` and h5py.
//
// What is timed is the whole stream as training would see it with an infinitely fast model:
// from the BatchStream's start (which opens the files lazily) until the consumer has taken the
// last micro-batch. Each repeat builds a fresh dataset and stream, so no repeat inherits open
// files or a filled chunk cache from the one before it.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "datasets/batch_stream.h"
#include "datasets/sample_dataset.h"
#include "datasets/sample_inspect.h"
#include "datasets/sample_order.h"
#include "datasets/shard_inspect.h"
#include "datasets/shard_reader.h"
#include "datasets/shard_set.h"
#include "datasets/token_dataset.h"
#include "storage/io_thread.h"

namespace {

using namespace dpt;
using namespace dpt::datasets;
using storage::IoThread;
namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string data;
  int seq_len = 1024;
  int batch = 16;
  int64_t samples = 0;
  std::string shuffle = "local";
  int window = 8;
  int repeats = 3;
  int64_t cache_mb = 512;  // train's --data-cache-mb default
  int depth = 8;           // train's --prefetch default
  uint64_t seed = 1234;
  std::string dump_order;
  bool cold = false;  // time the first pass too (the caller dropped the page cache)
};

std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  // clang-format off
  po::options_description desc(
      "bench-data: tokens/s (token shards) or samples/s (sample shards) of the prefetching "
      "reader over a shard dataset\n\n"
      "Usage: bench-data --data DIR [options]\n\nOptions");
  desc.add_options()
      ("help,h", "print this help and exit")
      ("data", po::value<std::string>(&o.data), "shards: a directory of *.h5, a glob or a file")
      ("seq-len", po::value<int>(&o.seq_len)->default_value(o.seq_len), "T (a sample is T+1 tokens)")
      ("batch", po::value<int>(&o.batch)->default_value(o.batch), "micro-batch (samples)")
      ("samples", po::value<int64_t>(&o.samples)->default_value(o.samples),
       "samples streamed per repeat, rounded down to whole micro-batches (0: one epoch)")
      ("shuffle", po::value<std::string>(&o.shuffle)->default_value(o.shuffle), "full or local")
      ("window", po::value<int>(&o.window)->default_value(o.window),
       "shards per window of the local shuffle")
      ("repeats", po::value<int>(&o.repeats)->default_value(o.repeats),
       "timed repeats after one warm-up; the median is reported")
      ("cold", po::bool_switch(&o.cold),
       "no warm-up: the first pass is timed as well (after dropping the page cache)")
      ("cache-mb", po::value<int64_t>(&o.cache_mb)->default_value(o.cache_mb),
       "chunk-cache budget given to plan_reader, MiB (train's --data-cache-mb)")
      ("depth", po::value<int>(&o.depth)->default_value(o.depth), "micro-batches read ahead")
      ("seed", po::value<uint64_t>(&o.seed)->default_value(o.seed), "sample-order seed")
      ("dump-order", po::value<std::string>(&o.dump_order),
       "write the streamed samples to this file for a peer to read: lines 'shard <i> <path>', "
       "then per sample in visiting order '<i> <token start> <sum of its T+1 tokens>'");
  // clang-format on
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + ". Run 'bench-data --help' for the options.");
  }
  if (vm.count("help")) {
    std::ostringstream help;
    help << desc << "\n";
    std::fputs(help.str().c_str(), stdout);
    return std::nullopt;
  }
  auto require = [](bool ok, const std::string& msg) {
    if (!ok) throw UsageError(msg);
  };
  require(!o.data.empty(), "no dataset: pass --data DIR.");
  require(o.seq_len > 0 && o.batch > 0 && o.depth > 0 && o.window > 0 && o.repeats > 0,
          "--seq-len, --batch, --depth, --window and --repeats must be positive.");
  require(o.samples == 0 || o.samples >= o.batch, "--samples must be 0 or at least --batch.");
  require(o.shuffle == "full" || o.shuffle == "local", "--shuffle must be 'full' or 'local'.");
  require(o.cache_mb >= 0, "--cache-mb must be >= 0.");
  return o;
}

ShuffleConfig shuffle_of(const Options& o) {
  return ShuffleConfig{o.shuffle == "local" ? ShuffleMode::local : ShuffleMode::full, o.window};
}

struct Run {
  double wall_s = 0;      // stream start to last micro-batch taken
  double read_s = 0;      // I/O thread time inside the reads
  double wait_s = 0;      // consumer time waiting in next()
  uint64_t tokens = 0;    // tokens read (samples x (T + 1))
  uint64_t checksum = 0;  // sum of every token of every sample
};

// Streams micro_batches micro-batches; with `sums`, records each sample's token sum (the
// warm-up does, so a peer can check that it read the same tokens).
Run stream_once(IoThread& io, const std::vector<ShardFacts>& facts, const Options& o, int64_t vocab,
                int64_t micro_batches, std::vector<uint64_t>* sums) {
  const ShuffleConfig shuffle = shuffle_of(o);
  TokenDataset data(
      io, facts, o.seq_len,
      plan_reader(facts, shuffle, static_cast<size_t>(o.cache_mb) << 20, vocab, o.seq_len));
  SampleOrder order(o.seed, data.samples_per_shard(), shuffle);
  const BatchGeometry geo{o.batch, 1, 0, o.batch};
  const size_t T = static_cast<size_t>(o.seq_len);
  Run r;
  const auto t0 = Clock::now();
  {
    BatchStream stream(data, std::move(order), geo, 0, o.depth);
    for (int64_t i = 0; i < micro_batches; ++i) {
      const auto mb = stream.next();
      // Touch every token so the consumer really takes the data: inputs hold tokens 0..T-1 of
      // each sample, the targets' last column its token T.
      for (int j = 0; j < o.batch; ++j) {
        const int32_t* row = mb.inputs + j * T;
        uint64_t sum = static_cast<uint32_t>(mb.targets[j * T + T - 1]);
        for (size_t k = 0; k < T; ++k)
          sum += static_cast<uint32_t>(row[k]);
        r.checksum += sum;
        if (sums) (*sums)[static_cast<size_t>(i * o.batch + j)] = sum;
      }
    }
    r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto st = stream.stats();
    // The I/O thread may have read ahead past the last micro-batch taken: rate its own time
    // by its own tokens.
    r.read_s = st.read_seconds * (static_cast<double>(micro_batches) * o.batch * (T + 1)) /
               std::max<double>(1, static_cast<double>(st.tokens_read));
    r.wait_s = st.wait_seconds;
  }
  r.tokens = static_cast<uint64_t>(micro_batches) * o.batch * (T + 1);
  return r;
}

void dump_order(const std::string& path, const std::vector<std::string>& paths, const Options& o,
                const std::vector<uint64_t>& per_shard, const std::vector<uint64_t>& sums) {
  SampleOrder order(
      o.seed, per_shard,
      ShuffleConfig{o.shuffle == "local" ? ShuffleMode::local : ShuffleMode::full, o.window});
  std::FILE* out = std::fopen(path.c_str(), "w");
  if (!out) throw UsageError("--dump-order: cannot write " + path + ": " + errno_string(errno));
  for (size_t i = 0; i < paths.size(); ++i)
    std::fprintf(out, "shard %zu %s\n", i, paths[i].c_str());
  // Position g of BatchGeometry{B, 1, 0, B} is g itself: the stream visits 0, 1, 2, ...
  for (size_t g = 0; g < sums.size(); ++g) {
    const SampleRef ref = order.at(g);
    std::fprintf(out, "%u %llu %llu\n", ref.shard,
                 static_cast<unsigned long long>(ref.index * static_cast<uint64_t>(o.seq_len)),
                 static_cast<unsigned long long>(sums[g]));
  }
  if (std::fclose(out) != 0) throw RuntimeFailure("--dump-order: writing " + path + " failed");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---- sample shards ------------------------------------------------------------------------------

// Stored bytes of one sample's input (uint8 pixels, float32 series, int32 tokens as read).
size_t stored_bytes(const SampleShardFacts& f) {
  size_t n = 1;
  for (uint64_t d : f.sample_shape)
    n *= d;
  return n * (f.kind == SampleKind::image ? 1 : 4);
}

// A sample's checksum: its pixels as the uint8 they were (value x 255), or its series values'
// float bits, or its token ids; a peer reading the file computes the same.
uint64_t sample_sum(const Batch& b, const SampleFields& fields, SampleKind kind, int j) {
  uint64_t sum = 0;
  if (fields.values) {
    const float* v = b.values + static_cast<size_t>(j) * fields.values;
    for (size_t k = 0; k < fields.values; ++k) {
      if (kind == SampleKind::image) {
        sum += static_cast<uint32_t>(v[k] * 255.0f + 0.5f);  // the uint8 it was
      } else {
        uint32_t bits;
        std::memcpy(&bits, &v[k], 4);
        sum += bits;
      }
    }
  }
  for (size_t k = 0; k < fields.tokens; ++k)
    sum += static_cast<uint32_t>(b.tokens[static_cast<size_t>(j) * fields.tokens + k]);
  return sum;
}

int run_samples(const Options& o, IoThread& io, const std::vector<std::string>& paths) {
  std::vector<SampleShardFacts> facts;
  io.call([&] {
    for (const auto& p : paths)
      facts.push_back(inspect_sample_shard(p));
  });
  const SampleShardFacts common = common_sample_facts(facts, "--data");
  std::vector<uint64_t> per_shard;
  uint64_t total = 0;
  for (const auto& f : facts) {
    per_shard.push_back(f.num_samples);
    total += f.num_samples;
  }
  const int64_t micro_batches = (o.samples > 0 ? o.samples : static_cast<int64_t>(total)) / o.batch;
  if (micro_batches == 0) throw UsageError("the dataset holds fewer samples than --batch.");
  const int64_t samples = micro_batches * o.batch;
  const size_t bytes = stored_bytes(common);
  std::printf(
      "bench-data: %zu sample shards, %llu %s samples of %zu stored bytes; %s shuffle, "
      "%lld samples in micro-batches of %d, depth %d, cache %lld MiB\n",
      facts.size(), static_cast<unsigned long long>(total), sample_kind_name(common.kind), bytes,
      o.shuffle.c_str(), static_cast<long long>(samples), o.batch, o.depth,
      static_cast<long long>(o.cache_mb));
  std::vector<double> wall, read, wait;
  std::vector<uint64_t> sums(static_cast<size_t>(samples));
  uint64_t checksum = 0;
  const int last_rep = o.cold ? 0 : o.repeats;
  for (int rep = 0; rep <= last_rep; ++rep) {
    // A fresh dataset each repeat: no repeat inherits open files or cached blocks.
    SampleDataset data(io, facts, static_cast<size_t>(o.cache_mb) << 20);
    SampleOrder order(o.seed, data.samples_per_shard(), shuffle_of(o));
    const SampleFields fields = data.fields();
    uint64_t sum = 0;
    const auto t0 = Clock::now();
    BatchStream stream(data, std::move(order), BatchGeometry{o.batch, 1, 0, o.batch}, 0, o.depth);
    for (int64_t i = 0; i < micro_batches; ++i) {
      const auto mb = stream.next();
      for (int j = 0; j < o.batch; ++j) {
        const uint64_t s = sample_sum(mb.batch, fields, common.kind, j);
        sum += s;
        if (rep == 0) sums[static_cast<size_t>(i * o.batch + j)] = s;
      }
    }
    const double w = std::chrono::duration<double>(Clock::now() - t0).count();
    const auto st = stream.stats();
    if (rep == 0) {
      checksum = sum;
      if (!o.dump_order.empty()) {
        SampleOrder again(o.seed, per_shard, shuffle_of(o));
        std::FILE* out = std::fopen(o.dump_order.c_str(), "w");
        if (!out) throw UsageError("--dump-order: cannot write " + o.dump_order);
        for (size_t k = 0; k < paths.size(); ++k)
          std::fprintf(out, "shard %zu %s\n", k, paths[k].c_str());
        for (size_t g = 0; g < sums.size(); ++g) {
          const SampleRef ref = again.at(g);
          std::fprintf(out, "%u %llu %llu\n", ref.shard, static_cast<unsigned long long>(ref.index),
                       static_cast<unsigned long long>(sums[g]));
        }
        if (std::fclose(out) != 0) throw RuntimeFailure("--dump-order: writing failed");
      }
      if (!o.cold) continue;
    }
    DPT_CHECK(sum == checksum, "the same samples gave a different checksum");
    wall.push_back(w);
    read.push_back(st.read_seconds * static_cast<double>(samples) /
                   std::max<double>(1, static_cast<double>(st.samples_read)));
    wait.push_back(st.wait_seconds);
  }
  const double w = median(wall), rd = median(read), wt = median(wait);
  const double mb = static_cast<double>(samples) * static_cast<double>(bytes) / 1e6;
  std::printf(
      "  %-24s %12s %10s %10s\n",
      (o.cold ? std::string("cold, one pass") : "median of " + std::to_string(o.repeats)).c_str(),
      "samples/s", "MB/s", "seconds");
  std::printf("  %-24s %12.3e %10.1f %10.3f\n", "stream (wall)", samples / w, mb / w, w);
  std::printf("  %-24s %12.3e %10.1f %10.3f\n", "I/O thread read time", samples / rd, mb / rd, rd);
  std::printf("  consumer waited %.1f%% of the wall time; checksum %llu\n", 100 * wt / w,
              static_cast<unsigned long long>(checksum));
  std::printf(
      "RESULT samples_per_s=%.6g mb_per_s=%.6g io_samples_per_s=%.6g io_mb_per_s=%.6g "
      "wall_s=%.6g samples=%lld checksum=%llu\n",
      samples / w, mb / w, samples / rd, mb / rd, w, static_cast<long long>(samples),
      static_cast<unsigned long long>(checksum));
  return 0;
}

int run(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv);
  if (!parsed) return 0;
  const Options& o = *parsed;

  // [I/O thread] declared before the datasets, which close their files on it.
  IoThread io;
  const auto paths = resolve_shards(o.data, "--data");
  if (is_sample_shard(paths.front())) return run_samples(o, io, paths);
  std::vector<ShardFacts> facts;
  io.call([&] {
    for (const auto& p : paths)
      facts.push_back(inspect_shard(p));
  });
  const int64_t vocab = common_vocab_size(facts, "--data");
  check_shards_fit(facts, o.seq_len, vocab, "--data");
  uint64_t total_samples = 0, total_tokens = 0;
  std::vector<uint64_t> per_shard;
  size_t width = token_type_size(facts.front().dtype);
  for (const auto& f : facts) {
    per_shard.push_back(f.num_samples(o.seq_len));
    total_samples += per_shard.back();
    total_tokens += f.num_tokens;
    // Mixed widths: MB/s counts the widest, which favours no one.
    width = std::max(width, token_type_size(f.dtype));
  }
  const int64_t micro_batches =
      (o.samples > 0 ? o.samples : static_cast<int64_t>(total_samples)) / o.batch;
  const int64_t samples = micro_batches * o.batch;
  if (micro_batches == 0) throw UsageError("the dataset holds fewer samples than --batch.");

  const ReaderOptions plan =
      plan_reader(facts, shuffle_of(o), static_cast<size_t>(o.cache_mb) << 20, vocab, o.seq_len);
  std::printf(
      "bench-data: %zu shards, %.0fM tokens (%zu B each), %llu samples of T+1=%d; %s shuffle%s, "
      "%lld samples in micro-batches of %d, depth %d\n",
      facts.size(), total_tokens / 1e6, width, static_cast<unsigned long long>(total_samples),
      o.seq_len + 1, o.shuffle.c_str(),
      o.shuffle == "local" ? (" window " + std::to_string(o.window)).c_str() : "",
      static_cast<long long>(samples), o.batch, o.depth);
  std::printf("  reader plan: %zu open files, chunk cache %.1f MiB per file%s\n",
              plan.max_open_files, plan.cache_bytes_per_file / 1048576.0,
              plan.bypass_cache_if_unfiltered ? " (none for unfiltered /tokens)" : "");

  std::vector<double> wall, read, wait;
  uint64_t checksum = 0, tokens = 0;
  std::vector<uint64_t> sums(o.dump_order.empty() ? 0 : static_cast<size_t>(samples));
  const int last_rep = o.cold ? 0 : o.repeats;  // cold: only the first pass means anything
  for (int rep = 0; rep <= last_rep; ++rep) {
    const Run r = stream_once(io, facts, o, vocab, micro_batches,
                              rep == 0 && !sums.empty() ? &sums : nullptr);
    if (rep == 0) {  // warm-up: files, allocator and page cache settle
      checksum = r.checksum;
      if (!sums.empty()) dump_order(o.dump_order, paths, o, per_shard, sums);
      if (!o.cold) continue;
    }
    DPT_CHECK(r.checksum == checksum, "the same samples gave a different checksum");
    wall.push_back(r.wall_s);
    read.push_back(r.read_s);
    wait.push_back(r.wait_s);
    tokens = r.tokens;
  }
  const double w = median(wall), rd = median(read), wt = median(wait);
  const double mb = tokens * static_cast<double>(width) / 1e6;
  std::printf(
      "  %-24s %12s %10s %10s\n",
      (o.cold ? std::string("cold, one pass") : "median of " + std::to_string(o.repeats)).c_str(),
      "tokens/s", "MB/s", "seconds");
  std::printf("  %-24s %12.3e %10.1f %10.3f\n", "stream (wall)", tokens / w, mb / w, w);
  std::printf("  %-24s %12.3e %10.1f %10.3f\n", "I/O thread read time", tokens / rd, mb / rd, rd);
  std::printf("  consumer waited %.1f%% of the wall time; checksum %llu\n", 100 * wt / w,
              static_cast<unsigned long long>(checksum));
  // One line for scripts.
  std::printf(
      "RESULT tokens_per_s=%.6g mb_per_s=%.6g io_tokens_per_s=%.6g io_mb_per_s=%.6g "
      "wall_s=%.6g samples=%lld checksum=%llu\n",
      tokens / w, mb / w, tokens / rd, mb / rd, w, static_cast<long long>(samples),
      static_cast<unsigned long long>(checksum));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (...) {
    return report_exception("bench-data");
  }
}
