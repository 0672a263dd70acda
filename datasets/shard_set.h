// A dataset path (directory, glob or file) resolved to its shards, and the checks that the
// shards fit together and fit the model: run after every shard passed inspect_shard().
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "datasets/shard_format.h"

namespace dpt::datasets {

// A directory gives every *.h5 in it (not recursive) in name order; a pattern with * ? or [
// gives its glob(3) matches in name order; anything else is one file. Throws UsageError naming
// `option` and spec when nothing matches.
std::vector<std::string> resolve_shards(const std::string& spec, const std::string& option);

// The vocab_size every shard declares; throws UsageError naming both files when two differ.
int64_t common_vocab_size(const std::vector<ShardFacts>& shards, const std::string& option);

// Throws UsageError naming the file and the fix when a shard holds fewer than seq_len + 1
// tokens, or holds an id >= model_vocab (the model's --vocab-size).
void check_shards_fit(const std::vector<ShardFacts>& shards, int seq_len, int64_t model_vocab,
                      const std::string& option);

}  // namespace dpt::datasets
