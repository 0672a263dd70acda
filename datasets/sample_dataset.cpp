// Sample shards read in cached blocks on the I/O thread.
#include "datasets/sample_dataset.h"

#include <algorithm>
#include <cstring>

#include "common/crash_note.h"
#include "common/errors.h"
#include "datasets/h5_checks.h"
#include "datasets/shard_index.h"

namespace dpt::datasets {

using storage::H5Dataset;
using storage::H5Space;
using namespace h5check;

namespace {

// Input bytes of one block: a few hundred KiB reads at disk speed and caches well.
constexpr size_t kBlockBytes = 256 << 10;

std::string shape_of(const SampleShardFacts& f) {
  std::string s = "[";
  for (size_t i = 0; i < f.sample_shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(f.sample_shape[i]);
  return s + "]";
}

hid_t memory_type(SampleKind k) {
  switch (k) {
    case SampleKind::image:
      return H5T_NATIVE_UINT8;
    case SampleKind::series:
      return H5T_NATIVE_FLOAT;
    case SampleKind::text:
      return H5T_NATIVE_INT32;
  }
  return H5T_NATIVE_UINT8;
}

size_t memory_bytes(SampleKind k) {
  return k == SampleKind::image ? 1 : 4;
}

uint64_t product(const std::vector<uint64_t>& v) {
  uint64_t p = 1;
  for (uint64_t x : v)
    p *= x;
  return p;
}

// Samples [first, first + count) of dataset `d` (any rank) into out, as mem_type.
void read_rows(const std::string& path, const char* name, const H5Dataset& d, hid_t mem_type,
               uint64_t first, uint64_t count, void* out) {
  H5Space space(H5Dget_space(d.get()));
  if (!space.valid()) damaged(path, std::string("reading the shape of /") + name);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 1)));
  if (rank < 1 || H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0)
    damaged(path, std::string("reading the shape of /") + name);
  if (first + count > dims[0]) {
    reject(path,
           std::string("/") + name + " holds " + std::to_string(dims[0]) +
               " samples now, fewer than when the dataset was indexed",
           "the file changed during training: restore it, or start a new run");
  }
  std::vector<hsize_t> off(dims.size(), 0), cnt(dims);
  off[0] = first;
  cnt[0] = count;
  if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr) <
      0) {
    damaged(path, std::string("selecting /") + name);
  }
  H5Space mem(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr));
  if (H5Dread(d.get(), mem_type, mem.get(), space.get(), H5P_DEFAULT, out) < 0) {
    damaged(path, std::string("reading /") + name + " samples [" + std::to_string(first) + ", " +
                      std::to_string(first + count) + ")");
  }
}

}  // namespace

SampleShardFacts common_sample_facts(const std::vector<SampleShardFacts>& shards,
                                     const std::string& option) {
  DPT_CHECK(!shards.empty(), "no sample shards");
  SampleShardFacts c = shards.front();
  for (const SampleShardFacts& f : shards) {
    auto differ = [&](const std::string& what, const std::string& here, const std::string& there) {
      throw UsageError(option + ": shard " + f.path + " holds " + what + " " + here + " but " +
                       shards.front().path + " holds " + there +
                       ": every shard of one dataset holds the same kind of sample; write them "
                       "with the same shapes, or train on them separately");
    };
    if (f.kind != c.kind)
      differ("samples of kind", sample_kind_name(f.kind), sample_kind_name(c.kind));
    if (f.sample_shape != c.sample_shape) differ("samples of shape", shape_of(f), shape_of(c));
    if (f.task != c.task) differ("samples for", sample_task_name(f.task), sample_task_name(c.task));
    if (f.num_targets != c.num_targets)
      differ("targets per sample:", std::to_string(f.num_targets), std::to_string(c.num_targets));
    if (f.has_lengths != c.has_lengths)
      differ("lengths:", f.has_lengths ? "yes" : "no", c.has_lengths ? "yes" : "no");
    if (!f.class_names.empty() && !c.class_names.empty() && f.class_names != c.class_names)
      differ("class_names", std::to_string(f.class_names.size()) + " names",
             "other names (" + std::to_string(c.class_names.size()) + ")");
    c.num_classes = std::max(c.num_classes, f.num_classes);
    c.vocab_size = std::max(c.vocab_size, f.vocab_size);
    if (c.class_names.empty()) c.class_names = f.class_names;
  }
  if (!c.class_names.empty() && static_cast<int64_t>(c.class_names.size()) != c.num_classes) {
    throw UsageError(option + ": the shards name " + std::to_string(c.class_names.size()) +
                     " classes but hold labels up to " + std::to_string(c.num_classes - 1) +
                     ": set num_classes and class_names alike in every shard");
  }
  return c;
}

SampleDataset::SampleDataset(storage::IoThread& io, std::vector<SampleShardFacts> shards,
                             size_t cache_bytes)
    : io_(io),
      shards_(std::move(shards)),
      common_(common_sample_facts(shards_, "dataset")),
      cache_bytes_(cache_bytes) {
  const uint64_t per = product(common_.sample_shape);
  switch (common_.kind) {
    case SampleKind::image:
    case SampleKind::series:
      fields_.values = per;
      break;
    case SampleKind::text:
      fields_.tokens = per;
      fields_.lengths = common_.has_lengths;
      break;
  }
  if (common_.task == SampleTask::classify) {
    fields_.labels = 1;
  } else {
    fields_.targets = common_.num_targets;
  }
  input_bytes_per_sample_ = per * memory_bytes(common_.kind);
  block_samples_ =
      std::max<uint64_t>(1, kBlockBytes / std::max<size_t>(1, input_bytes_per_sample_));
  starts_.push_back(0);
  for (const SampleShardFacts& f : shards_) {
    samples_per_shard_.push_back(f.num_samples);
    starts_.push_back(starts_.back() + f.num_samples);
  }
  num_samples_ = starts_.back();
  open_.resize(shards_.size());
  watch_ = ShardWatch(shards_.size());
}

SampleDataset::~SampleDataset() {
  try {
    io_.call([&] {
      blocks_.clear();
      open_.clear();
    });
  } catch (...) {  // destructors never throw; the files close with the process
  }
}

SampleRef SampleDataset::sample_in_order(uint64_t i) const {
  DPT_CHECK(i < num_samples_, "sample index out of range");
  const auto it = std::upper_bound(starts_.begin(), starts_.end() - 1, i) - 1;
  return SampleRef{static_cast<uint32_t>(it - starts_.begin()), i - *it};
}

SampleDataset::OpenShard& SampleDataset::open(uint32_t shard) {
  std::unique_ptr<OpenShard>& o = open_.at(shard);
  if (o) return *o;
  const SampleShardFacts& f = shards_[shard];
  auto s = std::make_unique<OpenShard>();
  s->file = open_shard_file(f.path, f.file_size);
  const std::string fix = "the file changed since it was indexed: restore it or re-index";
  s->inputs = open_dataset(f.path, s->file.get(), kInputsName, fix);
  if (f.task == SampleTask::classify) {
    s->labels = open_dataset(f.path, s->file.get(), kLabelsName, fix);
  } else {
    s->targets = open_dataset(f.path, s->file.get(), kTargetsName, fix);
  }
  if (f.has_lengths) s->lengths = open_dataset(f.path, s->file.get(), kLengthsName, fix);
  o = std::move(s);
  return *o;
}

const SampleDataset::Block& SampleDataset::block(uint32_t shard, uint64_t index) {
  const uint64_t key = (uint64_t{shard} << 40) | index;
  if (auto it = blocks_.find(key); it != blocks_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second;
  }
  const SampleShardFacts& f = shards_[shard];
  const uint64_t first = index * block_samples_;
  const uint64_t count = std::min(block_samples_, f.num_samples - first);
  watch_.check(shard, f.path, FileStamp{f.file_size, f.mtime_ns});  // [Shards in training]
  const CrashNote note("reading shard " + f.path, crash_fix());
  OpenShard& s = open(shard);
  Block b;
  b.inputs.resize(count * input_bytes_per_sample_);
  read_rows(f.path, kInputsName, s.inputs, memory_type(f.kind), first, count, b.inputs.data());
  if (fields_.labels) {
    b.labels.resize(count);
    read_rows(f.path, kLabelsName, s.labels, H5T_NATIVE_INT32, first, count, b.labels.data());
    for (uint64_t i = 0; i < count; ++i) {
      if (b.labels[i] < 0 || b.labels[i] >= common_.num_classes) {
        reject(f.path,
               "/labels[" + std::to_string(first + i) + "] = " + std::to_string(b.labels[i]) +
                   " is outside [0, " + std::to_string(common_.num_classes) +
                   ") now; the file changed since it was indexed",
               "restore it, or start a new run");
      }
    }
  }
  if (fields_.targets) {
    b.targets.resize(count * fields_.targets);
    read_rows(f.path, kTargetsName, s.targets, H5T_NATIVE_FLOAT, first, count, b.targets.data());
  }
  if (fields_.lengths) {
    b.lengths.resize(count);
    read_rows(f.path, kLengthsName, s.lengths, H5T_NATIVE_INT32, first, count, b.lengths.data());
  }
  if (fields_.tokens) {
    const int32_t* ids = reinterpret_cast<const int32_t*>(b.inputs.data());
    for (size_t i = 0; i < count * fields_.tokens; ++i) {
      if (ids[i] < 0 || ids[i] >= common_.vocab_size) {
        reject(f.path,
               "/inputs sample " + std::to_string(first + i / fields_.tokens) + " holds token id " +
                   std::to_string(ids[i]) +
                   " now, outside the vocabulary indexed; the file changed",
               "restore it, or start a new run");
      }
    }
  }
  ++block_reads_;
  b.bytes = b.inputs.size() + 4 * (b.labels.size() + b.lengths.size() + b.targets.size());
  // Evict the least recently used blocks until this one fits (it stays even when it alone is
  // over the budget: the batch needs it now).
  while (!lru_.empty() && cached_bytes_ + b.bytes > cache_bytes_) {
    const auto victim = blocks_.find(lru_.back());
    cached_bytes_ -= victim->second.bytes;
    blocks_.erase(victim);
    lru_.pop_back();
  }
  cached_bytes_ += b.bytes;
  lru_.push_front(key);
  b.lru = lru_.begin();
  return blocks_.emplace(key, std::move(b)).first->second;
}

void SampleDataset::read_sample(SampleRef ref, BatchBuffer& out, size_t row) {
  DPT_CHECK(out.fields() == fields_, "the batch buffer was made for another dataset");
  const Block& b = block(ref.shard, ref.index / block_samples_);
  const size_t i = static_cast<size_t>(ref.index % block_samples_);
  const uint8_t* in = b.inputs.data() + i * input_bytes_per_sample_;
  switch (common_.kind) {
    case SampleKind::image: {
      // Pixels scaled to [0, 1], as torchvision's ToTensor does.
      float* v = out.values(row);
      for (size_t k = 0; k < fields_.values; ++k)
        v[k] = static_cast<float>(in[k]) * (1.0f / 255.0f);
      break;
    }
    case SampleKind::series:
      std::memcpy(out.values(row), in, fields_.values * sizeof(float));
      break;
    case SampleKind::text:
      std::memcpy(out.tokens(row), in, fields_.tokens * sizeof(int32_t));
      if (fields_.lengths) *out.length(row) = b.lengths[i];
      break;
  }
  if (fields_.labels) *out.labels(row) = b.labels[i];
  if (fields_.targets)
    std::copy_n(b.targets.data() + i * fields_.targets, fields_.targets, out.targets(row));
}

}  // namespace dpt::datasets
