// The distributed shard index: stat on every rank, inspect in parallel, agree, broadcast.
#include "trainer/data_setup.h"

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "comm/agreement.h"
#include "comm/typed_collectives.h"
#include "common/errors.h"
#include "common/hash.h"
#include "datasets/sample_dataset.h"
#include "datasets/sample_index.h"
#include "datasets/sample_inspect.h"
#include "datasets/shard_index.h"
#include "datasets/shard_inspect.h"
#include "datasets/shard_set.h"

namespace dpt::trainer {

using comm::run_agreed;
using datasets::ShardStats;

namespace {

// Every rank must see the same shards (a shared filesystem, or identical copies), or the
// global batch of a step would differ between ranks while nothing fails. Collective; throws
// UsageError on every rank naming the first rank that differs from rank 0.
void check_same_files(comm::Communicator& comm, const std::vector<std::string>& paths,
                      const std::vector<datasets::FileStamp>& stamps, const std::string& spec,
                      const std::string& option) {
  struct Seen {
    uint64_t files, names_and_sizes;  // FNV-1a over every file's name and size
  } mine{paths.size(), fnv1a64(nullptr, 0)};
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string name = std::filesystem::path(paths[i]).filename().string();
    mine.names_and_sizes = fnv1a64(name.data(), name.size(), mine.names_and_sizes);
    mine.names_and_sizes = fnv1a64(&stamps[i].size, sizeof(stamps[i].size), mine.names_and_sizes);
  }
  const auto all = comm::all_gather_value(comm, mine);
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r].files != all[0].files || all[r].names_and_sizes != all[0].names_and_sizes) {
      throw UsageError(option + " " + spec + " resolves to different shards on rank 0 (" +
                       std::to_string(all[0].files) + " files) and rank " + std::to_string(r) +
                       " (" + std::to_string(all[r].files) +
                       " files, or other names or sizes): put the data on a filesystem every "
                       "node sees, or copy the same files to every node.");
    }
  }
}

}  // namespace

IndexedShards index_shards(comm::Communicator& comm, storage::IoThread& io, const std::string& spec,
                           const std::string& option, const std::string& index_cache_dir) {
  const int W = comm.world_size(), rank = comm.rank();
  IndexedShards out;
  std::vector<std::string> paths;
  std::vector<datasets::FileStamp> stamps;
  run_agreed(comm, [&] {
    paths = datasets::resolve_shards(spec, option);
    for (const auto& p : paths)
      stamps.push_back(datasets::stat_shard(p));
  });

  run_agreed(comm, [&] { check_same_files(comm, paths, stamps, spec, option); });

  // Rank 0's index decides which shards need inspecting; all ranks share that work.
  const size_t S = paths.size();
  std::vector<ShardStats> table(S);
  std::vector<uint8_t> cached(S, 0);
  datasets::ShardIndex index;
  out.index_path = datasets::index_path_for(paths, index_cache_dir);
  if (rank == 0) {
    index = datasets::ShardIndex::load(out.index_path);
    for (size_t i = 0; i < S; ++i) {
      if (auto f = index.find(paths[i], stamps[i])) {
        cached[i] = 1;
        table[i] = *f;
      }
    }
  }
  comm::broadcast_vector(comm, cached, 0);
  std::vector<size_t> missing;
  for (size_t i = 0; i < S; ++i)
    if (!cached[i]) missing.push_back(i);
  out.inspected = missing.size();

  // Shard missing[k] is inspected by rank k % W; one all-gather of equal-length lists.
  const size_t per_rank = (missing.size() + W - 1) / W;
  std::vector<ShardStats> mine(per_rank);
  run_agreed(comm, [&] {
    io.call([&] {
      for (size_t k = static_cast<size_t>(rank), j = 0; k < missing.size(); k += W, ++j)
        mine[j] = datasets::inspect_shard(paths[missing[k]]);
    });
  });
  const std::vector<ShardStats> all = comm::all_gather_vector(comm, mine);
  for (size_t k = 0; k < missing.size(); ++k)
    table[missing[k]] = all[(k % W) * per_rank + k / W];
  // Rank 0's table is the truth (its index entries included); everyone takes it.
  comm::broadcast_vector(comm, table, 0);
  out.shards.resize(S);
  for (size_t i = 0; i < S; ++i) {
    static_cast<ShardStats&>(out.shards[i]) = table[i];
    out.shards[i].path = paths[i];
    out.num_tokens += out.shards[i].num_tokens;
  }
  if (rank == 0 && !missing.empty()) {
    for (size_t i : missing)
      index.put(out.shards[i]);
    std::string why;
    if (!index.save(out.index_path, &why)) out.index_note = why;
  }
  run_agreed(comm, [&] { out.vocab_size = datasets::common_vocab_size(out.shards, option); });
  return out;
}

bool names_sample_shards(comm::Communicator& comm, const std::string& spec,
                         const std::string& option) {
  uint8_t samples = 0;
  run_agreed(comm, [&] {
    if (comm.rank() == 0)
      samples = datasets::is_sample_shard(datasets::resolve_shards(spec, option).front());
  });
  comm::broadcast_value(comm, samples, 0);
  return samples != 0;
}

IndexedSamples index_sample_shards(comm::Communicator& comm, storage::IoThread& io,
                                   const std::string& spec, const std::string& option,
                                   const std::string& index_cache_dir) {
  const int W = comm.world_size(), rank = comm.rank();
  std::vector<std::string> paths;
  std::vector<datasets::FileStamp> stamps;
  run_agreed(comm, [&] {
    paths = datasets::resolve_shards(spec, option);
    for (const auto& p : paths)
      stamps.push_back(datasets::stat_shard(p));
  });
  run_agreed(comm, [&] { check_same_files(comm, paths, stamps, spec, option); });
  IndexedSamples out;
  out.shards.resize(paths.size());
  // Rank 0's index decides which shards need inspecting ([Shard index]); all ranks share that
  // work, shard missing[k] by rank k % W, and each rank's facts travel as one string.
  const size_t S = paths.size();
  std::vector<uint8_t> cached(S, 0);
  datasets::SampleIndex index;
  out.index_path = datasets::sample_index_path_for(paths, index_cache_dir);
  if (rank == 0) {
    index = datasets::SampleIndex::load(out.index_path);
    for (size_t i = 0; i < S; ++i) {
      if (auto f = index.find(paths[i], stamps[i])) {
        cached[i] = 1;
        out.shards[i] = std::move(*f);
      }
    }
  }
  comm::broadcast_vector(comm, cached, 0);
  std::vector<size_t> missing;
  for (size_t i = 0; i < S; ++i)
    if (!cached[i]) missing.push_back(i);
  out.inspected = missing.size();
  std::string mine;
  run_agreed(comm, [&] {
    io.call([&] {
      for (size_t k = static_cast<size_t>(rank); k < missing.size(); k += W) {
        const std::string f =
            datasets::encode_sample_facts(datasets::inspect_sample_shard(paths[missing[k]]));
        mine += std::to_string(f.size()) + ":" + f;
      }
    });
  });
  const std::vector<std::string> all = comm::all_gather_strings(comm, mine);
  for (int r = 0; r < W; ++r) {
    size_t pos = 0;
    for (size_t k = static_cast<size_t>(r); k < missing.size(); k += W) {
      const size_t colon = all[r].find(':', pos);
      const size_t n = std::stoull(all[r].substr(pos, colon - pos));
      out.shards[missing[k]] = datasets::decode_sample_facts(all[r].substr(colon + 1, n));
      pos = colon + 1 + n;
    }
  }
  // Rank 0's table (its index entries included) is the truth; everyone takes it.
  std::string table;
  if (rank == 0) {
    for (const auto& f : out.shards) {
      const std::string e = datasets::encode_sample_facts(f);
      table += std::to_string(e.size()) + ":" + e;
    }
  }
  comm::broadcast_string(comm, table, 0);
  for (size_t i = 0, pos = 0; i < S; ++i) {
    const size_t colon = table.find(':', pos);
    const size_t n = std::stoull(table.substr(pos, colon - pos));
    out.shards[i] = datasets::decode_sample_facts(table.substr(colon + 1, n));
    out.shards[i].path = paths[i];
    pos = colon + 1 + n;
  }
  if (rank == 0 && !missing.empty()) {
    for (size_t i : missing)
      index.put(out.shards[i]);
    std::string why;
    if (!index.save(out.index_path, &why)) out.index_note = why;
  }
  run_agreed(comm, [&] { out.common = datasets::common_sample_facts(out.shards, option); });
  for (const auto& f : out.shards)
    out.num_samples += f.num_samples;
  return out;
}

void complete_model_from_samples(TrainConfig& cfg, const datasets::SampleShardFacts& f) {
  using datasets::SampleKind;
  ModelConfig& m = cfg.model;
  const Task data_task = f.task == datasets::SampleTask::classify ? Task::classify : Task::regress;
  if (!cfg.task_from_data && m.task != data_task) {
    throw UsageError(
        std::string("--task ") + task_name(m.task) + ", but --data " + cfg.data +
        " holds samples with " +
        (data_task == Task::classify ? "/labels (classification)" : "/targets (regression)") +
        ": pass --task " + task_name(data_task) + " or leave --task out");
  }
  m.task = data_task;
  m.num_outputs = static_cast<int>(data_task == Task::classify ? f.num_classes : f.num_targets);
  const auto& shape = f.sample_shape;
  int seq_len = 0;
  switch (f.kind) {
    case SampleKind::image: {
      m.input = InputKind::image;
      m.image_h = static_cast<int>(shape.at(0));
      m.image_w = static_cast<int>(shape.at(1));
      m.channels = static_cast<int>(shape.at(2));
      if (m.patch == 0) {
        // The smallest patch that divides both sides into at most 64 patches.
        for (int p = 1; p <= std::min(m.image_h, m.image_w); ++p) {
          if (m.image_h % p == 0 && m.image_w % p == 0 && (m.image_h / p) * (m.image_w / p) <= 64) {
            m.patch = p;
            break;
          }
        }
        if (m.patch == 0) m.patch = std::gcd(m.image_h, m.image_w);
      }
      if (m.image_h % m.patch != 0 || m.image_w % m.patch != 0) {
        throw UsageError("--patch " + std::to_string(m.patch) + " does not divide the images of " +
                         cfg.data + " (" + std::to_string(m.image_h) + " x " +
                         std::to_string(m.image_w) +
                         " pixels): choose a common divisor of both, or leave --patch out");
      }
      seq_len = (m.image_h / m.patch) * (m.image_w / m.patch);
      break;
    }
    case SampleKind::series:
      m.input = InputKind::series;
      seq_len = static_cast<int>(shape.at(0));
      m.features = static_cast<int>(shape.at(1));
      break;
    case SampleKind::text:
      m.input = InputKind::tokens;
      seq_len = static_cast<int>(shape.at(0));
      m.padded = f.has_lengths;
      if (cfg.vocab_from_data) {
        m.vocab_size = static_cast<int>(f.vocab_size);
      } else if (m.vocab_size < f.vocab_size) {
        throw UsageError("--vocab-size " + std::to_string(m.vocab_size) + ", but " + cfg.data +
                         " holds token ids up to " + std::to_string(f.vocab_size - 1) +
                         ": pass --vocab-size " + std::to_string(f.vocab_size) +
                         " or more, or leave it out");
      }
      break;
  }
  if (f.kind != SampleKind::image && m.patch != 0) {
    throw UsageError("--patch " + std::to_string(m.patch) + " cuts images, but --data " + cfg.data +
                     " holds " + datasets::sample_kind_name(f.kind) + ": leave --patch out");
  }
  if (cfg.seq_len_given && m.seq_len != seq_len) {
    throw UsageError("--seq-len " + std::to_string(m.seq_len) + ", but the samples of " + cfg.data +
                     " are " + std::to_string(seq_len) +
                     (f.kind == SampleKind::image ? " patches" : " positions") +
                     " long: leave --seq-len out for sample shards");
  }
  m.seq_len = seq_len;
}

}  // namespace dpt::trainer
