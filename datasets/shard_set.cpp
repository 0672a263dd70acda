// Resolution of dataset paths and the checks across shards.
#include "datasets/shard_set.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "common/errors.h"

namespace dpt::datasets {

namespace fs = std::filesystem;

std::vector<std::string> resolve_shards(const std::string& spec, const std::string& option) {
  const std::string where = option + " " + spec;
  if (spec.empty())
    throw UsageError(option +
                     " is required: give a directory of *.h5 shards, a glob, or one shard "
                     "(docs/data-format.md).");
  std::vector<std::string> out;
  std::error_code ec;
  if (fs::is_directory(spec, ec)) {
    for (const auto& e : fs::directory_iterator(spec, ec)) {
      if (e.path().extension() == ".h5" && e.path().filename().string()[0] != '.')
        out.push_back(e.path().string());
    }
    if (ec)
      throw UsageError(where + ": cannot list the directory (" + ec.message() +
                       "): check its permissions.");
    if (out.empty())
      throw UsageError(
          where +
          ": the directory holds no *.h5 shards: point it at the shards' directory (prepare-data "
          "writes OUT/train and OUT/val), or write shards as docs/data-format.md shows.");
  } else if (spec.find_first_of("*?[") != std::string::npos) {
    glob_t g{};
    const int rc = glob(spec.c_str(), GLOB_NOSORT, nullptr, &g);
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i)
      out.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    if (out.empty())
      throw UsageError(where +
                       ": the pattern matches no file: check the path, and quote the pattern so "
                       "the shell does not expand it.");
  } else {
    struct stat st {};
    if (stat(spec.c_str(), &st) != 0)
      throw UsageError(
          where +
          ": no such file or directory: give a directory of *.h5 shards, a glob, or one shard.");
    out.push_back(spec);
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t common_vocab_size(const std::vector<ShardFacts>& shards, const std::string& option) {
  DPT_CHECK(!shards.empty(), "no shards");
  for (const auto& f : shards) {
    if (f.vocab_size != shards[0].vocab_size) {
      throw UsageError(option + ": the shards declare different vocabularies: " + shards[0].path +
                       " has vocab_size " + std::to_string(shards[0].vocab_size) + ", " + f.path +
                       " has " + std::to_string(f.vocab_size) +
                       ". Every shard of a dataset must come from the same tokenizer: remove "
                       "the odd ones or tokenize them again.");
    }
  }
  return shards[0].vocab_size;
}

void check_shards_fit(const std::vector<ShardFacts>& shards, int seq_len, int64_t model_vocab,
                      const std::string& option) {
  for (const auto& f : shards) {
    if (f.num_samples(seq_len) == 0) {
      throw UsageError(
          f.path + ": /tokens holds " + std::to_string(f.num_tokens) +
          " tokens, fewer than one sample of --seq-len + 1 = " + std::to_string(seq_len + 1) +
          " (" + option + "): lower --seq-len, or merge it into a larger shard.");
    }
    if (static_cast<int64_t>(f.max_id) >= model_vocab) {
      throw UsageError(f.path + ": /tokens holds id " + std::to_string(f.max_id) +
                       ", not below --vocab-size " + std::to_string(model_vocab) +
                       ": raise --vocab-size to at least " + std::to_string(f.max_id + 1) +
                       " (or omit it to take the shards' vocab_size).");
    }
    if (f.vocab_size > model_vocab) {
      throw UsageError(f.path + ": the shard's vocab_size " + std::to_string(f.vocab_size) +
                       " is larger than --vocab-size " + std::to_string(model_vocab) +
                       ": raise --vocab-size to at least " + std::to_string(f.vocab_size) +
                       " (or omit it to take the shards' vocab_size).");
    }
  }
}

}  // namespace dpt::datasets
