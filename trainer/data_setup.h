// Opening a dataset on every rank before step 1: resolving the path, indexing the shards (from
// the [Shard index] cache, else inspected in parallel across ranks), and checking them against
// the model, with every failure agreed by all ranks ([Agreed failure]).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "datasets/sample_format.h"
#include "datasets/shard_format.h"
#include "storage/io_thread.h"
#include "trainer/train_config.h"

namespace dpt::trainer {

struct IndexedShards {
  std::vector<datasets::ShardFacts> shards;  // in dataset order, identical on every rank
  int64_t vocab_size = 0;                    // the vocab_size all shards declare
  uint64_t num_tokens = 0;
  size_t inspected = 0;    // shards scanned in this run (the rest came from the index)
  std::string index_path;  // where the index lives
  std::string index_note;  // why the index could not be saved, or ""
};

// Resolves spec (--data or --val-data, named by option) and returns the facts of every shard.
// Each rank inspects its share of the shards the index lacks on its I/O thread; rank 0 then
// saves the index and broadcasts the complete facts. Throws AgreedFailure on every rank when
// any rank fails: a path matching nothing, a malformed shard, ranks seeing different files, or
// shards declaring different vocabularies.
IndexedShards index_shards(comm::Communicator& comm, storage::IoThread& io, const std::string& spec,
                           const std::string& option, const std::string& index_cache_dir);

// Whether spec (--data) names sample shards ([Sample format]) rather than token shards: its
// first file holds /inputs. Collective: rank 0 looks, every rank gets its answer; a spec that
// resolves to nothing is agreed as a UsageError.
bool names_sample_shards(comm::Communicator& comm, const std::string& spec,
                         const std::string& option);

struct IndexedSamples {
  std::vector<datasets::SampleShardFacts> shards;  // in dataset order, identical on every rank
  datasets::SampleShardFacts common;               // what they share (common_sample_facts)
  uint64_t num_samples = 0;
  size_t inspected = 0;    // shards scanned in this run (the rest came from the index)
  std::string index_path;  // where the index lives
  std::string index_note;  // why the index could not be saved, or ""
};

// The sample shards of spec: from the [Shard index] cache where it holds them, else inspected
// in parallel across ranks (shard k of those missing by rank k % W on its I/O thread); rank 0
// saves the index and broadcasts the facts; checked to hold one kind of sample. Every failure
// is agreed.
IndexedSamples index_sample_shards(comm::Communicator& comm, storage::IoThread& io,
                                   const std::string& spec, const std::string& option,
                                   const std::string& index_cache_dir);

// The model's input and head from sample shards' common facts: the task (which a given --task
// must agree with), the input's kind and shape, --patch (0: the smallest that cuts the image into
// at most 64 patches), the sequence length (which a given --seq-len must equal), the classes or
// targets, and a text's vocabulary. Throws UsageError naming the option to change.
void complete_model_from_samples(TrainConfig& cfg, const datasets::SampleShardFacts& f);

}  // namespace dpt::trainer
