// Test helpers: token shards with learnable structure, written by the project's ShardWriter, and
// datasets opened on them the way train opens them (inspect, check, plan the reader).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "datasets/shard_inspect.h"
#include "datasets/shard_set.h"
#include "datasets/shard_writer.h"
#include "datasets/token_dataset.h"
#include "storage/io_thread.h"

namespace dpt::testing {

// A fixed random first-order Markov chain over `symbols` ids starting at '0', so a model's
// loss falls and gradients are not trivial.
inline std::vector<uint32_t> markov_tokens(size_t n, uint64_t seed, uint32_t symbols = 40) {
  std::vector<uint32_t> out(n);
  uint32_t prev = 0;
  uint64_t counter = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t r = random_below(seed, prev, &counter, 4);
    prev = static_cast<uint32_t>((prev * 7 + r * 3 + 1) % symbols);
    out[i] = '0' + prev;
  }
  return out;
}

inline void write_shard(const std::string& path, const std::vector<uint32_t>& tokens,
                        datasets::ShardWriterOptions opt = {}) {
  if (opt.vocab_size == 0) opt.vocab_size = 256;
  if (opt.chunk_tokens > tokens.size()) opt.chunk_tokens = 4099;
  datasets::ShardWriter w(path, opt);
  w.begin_document();
  w.append(tokens.data(), tokens.size());
  w.finish();
}

// A directory removed with everything in it when the object goes.
class TempDir {
 public:
  explicit TempDir(const char* tag) {
    std::string templ = (std::filesystem::temp_directory_path() / tag).string() + "-XXXXXX";
    path_ = mkdtemp(templ.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Opens spec like train does on one rank: inspect every shard on the I/O thread, check them
// for seq_len and vocab, and plan the reader for the shuffle.
inline std::unique_ptr<datasets::TokenDataset> open_dataset(storage::IoThread& io,
                                                            const std::string& spec, int seq_len,
                                                            int64_t vocab,
                                                            bool local_shuffle = false,
                                                            int window_shards = 2) {
  const auto paths = datasets::resolve_shards(spec, "--data");
  std::vector<datasets::ShardFacts> facts;
  io.call([&] {
    for (const auto& p : paths)
      facts.push_back(datasets::inspect_shard(p));
  });
  datasets::check_shards_fit(facts, seq_len, vocab, "--data");
  const datasets::ShuffleConfig shuffle{
      local_shuffle ? datasets::ShuffleMode::local : datasets::ShuffleMode::full, window_shards};
  auto plan = datasets::plan_reader(facts, shuffle, 64 << 20, vocab, seq_len);
  return std::make_unique<datasets::TokenDataset>(io, facts, seq_len, plan);
}

}  // namespace dpt::testing
