// The distributed shard index: stat on every rank, inspect in parallel, agree, broadcast.
#include "trainer/data_setup.h"

#include <filesystem>

#include "common/errors.h"
#include "common/hash.h"
#include "datasets/shard_index.h"
#include "datasets/shard_inspect.h"
#include "datasets/shard_set.h"
#include "trainer/agreement.h"

namespace dpt::trainer {

namespace {

using datasets::ShardFacts;

// ShardFacts without its path as fixed-size words, for collectives (paths are known locally).
constexpr size_t kWords = 10;

void pack(const ShardFacts& f, uint64_t* w) {
  w[0] = f.file_size;
  w[1] = static_cast<uint64_t>(f.mtime_ns);
  w[2] = static_cast<uint64_t>(f.dtype);
  w[3] = f.num_tokens;
  w[4] = f.min_id;
  w[5] = f.max_id;
  w[6] = static_cast<uint64_t>(f.vocab_size);
  w[7] = f.num_docs;
  w[8] = f.chunk_tokens;
  w[9] = f.checksum;
}

void unpack(const uint64_t* w, ShardFacts* f) {
  f->file_size = w[0];
  f->mtime_ns = static_cast<int64_t>(w[1]);
  f->dtype = static_cast<datasets::TokenType>(w[2]);
  f->num_tokens = w[3];
  f->min_id = w[4];
  f->max_id = w[5];
  f->vocab_size = static_cast<int64_t>(w[6]);
  f->num_docs = w[7];
  f->chunk_tokens = w[8];
  f->checksum = w[9];
}

}  // namespace

IndexedShards index_shards(comm::Communicator& comm, datasets::IoThread& io,
                           const std::string& spec, const std::string& option,
                           const std::string& index_cache_dir) {
  const int W = comm.world_size(), rank = comm.rank();
  IndexedShards out;
  std::vector<std::string> paths;
  std::vector<datasets::FileStamp> stamps;
  run_agreed(comm, [&] {
    paths = datasets::resolve_shards(spec, option);
    for (const auto& p : paths)
      stamps.push_back(datasets::stat_shard(p));
  });

  // Every rank must see the same shards (a shared filesystem, or identical copies), or the
  // global batch of a step would differ between ranks while nothing fails.
  run_agreed(comm, [&] {
    uint64_t h = fnv1a64(nullptr, 0);
    for (size_t i = 0; i < paths.size(); ++i) {
      const std::string name = std::filesystem::path(paths[i]).filename().string();
      h = fnv1a64(name.data(), name.size(), h);
      h = fnv1a64(&stamps[i].size, sizeof(stamps[i].size), h);
    }
    const uint64_t mine[2] = {paths.size(), h};
    std::vector<uint64_t> all(2 * static_cast<size_t>(W));
    comm.all_gather(mine, all.data(), 2, comm::DType::u64);
    for (int r = 1; r < W; ++r) {
      if (all[2 * r] != all[0] || all[2 * r + 1] != all[1]) {
        throw UsageError(option + " " + spec + " resolves to different shards on rank 0 (" +
                         std::to_string(all[0]) + " files) and rank " + std::to_string(r) + " (" +
                         std::to_string(all[2 * r]) +
                         " files, or other names or sizes): put the data on a filesystem every "
                         "node sees, or copy the same files to every node.");
      }
    }
  });

  // Rank 0's index decides which shards need inspecting; all ranks share that work.
  const size_t S = paths.size();
  std::vector<uint64_t> table(S * kWords, 0);
  std::vector<uint8_t> cached(S, 0);
  datasets::ShardIndex index;
  out.index_path = datasets::index_path_for(paths, index_cache_dir);
  if (rank == 0) {
    index = datasets::ShardIndex::load(out.index_path);
    for (size_t i = 0; i < S; ++i) {
      if (auto f = index.find(paths[i], stamps[i])) {
        cached[i] = 1;
        pack(*f, &table[i * kWords]);
      }
    }
  }
  comm.broadcast(std::span<uint8_t>(cached), 0);
  std::vector<size_t> missing;
  for (size_t i = 0; i < S; ++i)
    if (!cached[i]) missing.push_back(i);
  out.inspected = missing.size();

  // Shard missing[k] is inspected by rank k % W; one all-gather of fixed-size records.
  const size_t per_rank = (missing.size() + W - 1) / W;
  std::vector<uint64_t> mine(std::max<size_t>(1, per_rank) * kWords, 0);
  run_agreed(comm, [&] {
    io.call([&] {
      for (size_t k = static_cast<size_t>(rank), j = 0; k < missing.size(); k += W, ++j)
        pack(datasets::inspect_shard(paths[missing[k]]), &mine[j * kWords]);
    });
  });
  if (per_rank > 0) {
    std::vector<uint64_t> all(mine.size() * W);
    comm.all_gather(mine.data(), all.data(), mine.size(), comm::DType::u64);
    for (size_t k = 0; k < missing.size(); ++k) {
      const size_t r = k % W, j = k / W;
      std::copy_n(&all[(r * per_rank + j) * kWords], kWords, &table[missing[k] * kWords]);
    }
  }
  // Rank 0's table is the truth (its index entries included); everyone takes it.
  comm.broadcast(std::span<uint64_t>(table), 0);
  out.shards.resize(S);
  for (size_t i = 0; i < S; ++i) {
    out.shards[i].path = paths[i];
    unpack(&table[i * kWords], &out.shards[i]);
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

}  // namespace dpt::trainer
