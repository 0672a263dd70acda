// The sample index file: a magic line, then one length-prefixed encode_sample_facts() record
// per shard ("<bytes>:<record>\n"), sorted by canonical path.
#include "datasets/sample_index.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "datasets/sample_inspect.h"
#include "storage/durable.h"

namespace dpt::datasets {

namespace {

// Version 2: entries were inspected with [Foreign data] refused; an index of version 1 is
// rebuilt, so a shard it admitted is inspected again.
constexpr const char* kMagic = "dptrain-sample-index 2";

std::string canonical(const std::string& path) {
  std::error_code ec;
  const auto p = std::filesystem::weakly_canonical(path, ec);
  return ec ? path : p.string();
}

}  // namespace

std::string sample_index_path_for(const std::vector<std::string>& shards,
                                  const std::string& cache_dir) {
  return index_path_for(shards, cache_dir) + ".samples";
}

SampleIndex SampleIndex::load(const std::string& file) {
  SampleIndex index;
  std::ifstream in(file, std::ios::binary);
  if (!in) return index;
  std::ostringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  const std::string magic = std::string(kMagic) + "\n";
  if (in.bad() || all.compare(0, magic.size(), magic) != 0) return index;
  SampleIndex parsed;
  try {
    for (size_t pos = magic.size(); pos < all.size();) {
      const size_t colon = all.find(':', pos);
      if (colon == std::string::npos) return index;
      const size_t n = std::stoull(all.substr(pos, colon - pos));
      if (colon + 1 + n >= all.size() || all[colon + 1 + n] != '\n') return index;
      SampleShardFacts f = decode_sample_facts(all.substr(colon + 1, n));
      parsed.entries_[f.path] = std::move(f);
      pos = colon + 2 + n;
    }
  } catch (const std::exception&) {
    return index;  // damaged: inspect again
  }
  return parsed;
}

std::optional<SampleShardFacts> SampleIndex::find(const std::string& path, FileStamp stamp) const {
  const auto it = entries_.find(canonical(path));
  if (it == entries_.end() || it->second.file_size != stamp.size ||
      it->second.mtime_ns != stamp.mtime_ns) {
    return std::nullopt;
  }
  SampleShardFacts f = it->second;
  f.path = path;
  return f;
}

void SampleIndex::put(const SampleShardFacts& facts) {
  SampleShardFacts f = facts;
  f.path = canonical(facts.path);
  entries_[f.path] = std::move(f);
}

bool SampleIndex::save(const std::string& file, std::string* why) const {
  std::vector<const SampleShardFacts*> sorted;
  for (const auto& [path, f] : entries_)
    sorted.push_back(&f);
  std::sort(sorted.begin(), sorted.end(),
            [](const SampleShardFacts* a, const SampleShardFacts* b) { return a->path < b->path; });
  std::string text = std::string(kMagic) + "\n";
  for (const SampleShardFacts* f : sorted) {
    const std::string rec = encode_sample_facts(*f);
    text += std::to_string(rec.size()) + ":" + rec + "\n";
  }
  std::string scratch;
  return storage::write_file_atomic(file, text, why ? why : &scratch);
}

}  // namespace dpt::datasets
