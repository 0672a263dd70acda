// Hyperslab reads of /tokens, converted to int32 and checked against the vocabulary.
#include "datasets/shard_reader.h"

#include <fcntl.h>
#include <unistd.h>
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/crash_note.h"
#include "common/errors.h"
#include "datasets/h5_checks.h"
#include "datasets/shard_index.h"
#include "datasets/token_h5.h"
#include "storage/durable.h"
#include "storage/h5.h"

namespace dpt::datasets {

using storage::h5_error_text;
using storage::h5_quiet;
using storage::H5Dataset;
using storage::H5File;
using storage::H5Plist;
using storage::H5Space;
using storage::H5Type;
using storage::pread_all;

namespace {

template <typename S>
uint64_t widen(const void* src, uint64_t n, int32_t* out, int64_t vocab, uint64_t* bad_at) {
  const S* s = static_cast<const S*>(src);
  uint64_t max_id = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t v = static_cast<uint64_t>(s[i]);  // int32 ids were checked >= 0 at indexing
    max_id = std::max(max_id, v);
    out[i] = static_cast<int32_t>(v);
  }
  if (max_id >= static_cast<uint64_t>(vocab)) {
    for (uint64_t i = 0; i < n; ++i)
      if (static_cast<uint64_t>(s[i]) >= static_cast<uint64_t>(vocab)) {
        *bad_at = i;
        return static_cast<uint64_t>(s[i]);
      }
  }
  return UINT64_MAX;
}

// Smallest prime >= n: HDF5 advises a prime number of chunk-cache hash slots.
size_t prime_at_least(size_t n) {
  for (size_t p = std::max<size_t>(n, 2);; ++p) {
    bool prime = true;
    for (size_t d = 2; d * d <= p && prime; ++d)
      prime = p % d != 0;
    if (prime) return p;
  }
}

}  // namespace

struct ShardReader::Impl {
  struct OpenShard {
    H5File file;
    H5Dataset tokens;
    H5Space space;
    uint64_t last_use = 0;
    // [Direct reads] of unfiltered little-endian /tokens: pread at the file address of each
    // chunk (or of the contiguous data), skipping HDF5's per-read selection machinery.
    int fd = -1;
    uint64_t piece_tokens = 0;         // tokens per chunk; the whole dataset when contiguous
    std::vector<uint64_t> piece_addr;  // file address of each chunk
    ~OpenShard() {
      if (fd >= 0) ::close(fd);
    }
  };
  std::vector<ShardFacts> shards;
  ReaderOptions opt;
  std::vector<std::unique_ptr<OpenShard>> open;  // by shard; null when closed
  ShardWatch watch{0};                           // [Shards in training]
  size_t open_count = 0;
  uint64_t clock = 0;
  std::vector<unsigned char> staging;

  OpenShard& get(uint32_t s) {
    if (!open[s]) {
      if (open_count >= opt.max_open_files) close_least_recent();
      open[s] = open_shard(s);
      ++open_count;
    }
    open[s]->last_use = ++clock;
    return *open[s];
  }

  void close_least_recent() {
    size_t victim = SIZE_MAX;
    for (size_t i = 0; i < open.size(); ++i)
      if (open[i] && (victim == SIZE_MAX || open[i]->last_use < open[victim]->last_use)) victim = i;
    if (victim != SIZE_MAX) {
      open[victim].reset();
      --open_count;
    }
  }

  [[noreturn]] void damaged(const ShardFacts& f, const std::string& what) {
    throw UsageError(f.path + ": " + what + " (" + h5_error_text() +
                     "). The file changed or was damaged after it was indexed: restore or " +
                     "rewrite it; the next run re-validates it.");
  }

  // A hint only: the kernel queues sequential reads of the whole file, so that the window's
  // scattered chunk reads find their pages in the cache instead of seeking for each.
  static void read_ahead(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
    ::close(fd);
  }

  static bool unfiltered(hid_t file) {
    H5Dataset d(H5Dopen2(file, kTokensName, H5P_DEFAULT));
    if (!d.valid()) return false;
    H5Plist dcpl(H5Dget_create_plist(d.get()));
    return dcpl.valid() && H5Pget_nfilters(dcpl.get()) == 0;
  }

  std::unique_ptr<OpenShard> open_shard(uint32_t s) {
    const ShardFacts& f = shards[s];
    h5_quiet();
    auto o = std::make_unique<OpenShard>();
    H5Plist fapl(H5Pcreate(H5P_FILE_ACCESS));
    // Shared read locks, ignored where the filesystem has none (Lustre and NFS mounts often do
    // not), so that opening works there without HDF5_USE_FILE_LOCKING=FALSE.
    DPT_CHECK_H5(H5Pset_file_locking(fapl.get(), true, true));
    o->file = H5File(H5Fopen(f.path.c_str(), H5F_ACC_RDONLY, fapl.get()));
    if (!o->file.valid()) damaged(f, "cannot open it as HDF5");
    if (opt.read_ahead_whole_file) read_ahead(f.path);
    size_t nbytes = opt.cache_bytes_per_file;
    if (opt.bypass_cache_if_unfiltered && unfiltered(o->file.get())) nbytes = 0;
    H5Plist dapl(H5Pcreate(H5P_DATASET_ACCESS));
    const size_t chunk_bytes = std::max<size_t>(1, f.chunk_tokens * token_type_size(f.dtype));
    const size_t slots = prime_at_least(std::max<size_t>(101, 100 * (nbytes / chunk_bytes)));
    // w0 = 1: a chunk read in full is evicted first; partially read chunks stay for the
    // windows that straddle them.
    DPT_CHECK_H5(H5Pset_chunk_cache(dapl.get(), slots, nbytes, 1.0));
    o->tokens = H5Dataset(H5Dopen2(o->file.get(), kTokensName, dapl.get()));
    if (!o->tokens.valid()) damaged(f, "cannot open /tokens");
    o->space = H5Space(H5Dget_space(o->tokens.get()));
    hsize_t dims[1] = {0};
    if (!o->space.valid() || H5Sget_simple_extent_ndims(o->space.get()) != 1 ||
        H5Sget_simple_extent_dims(o->space.get(), dims, nullptr) != 1 || dims[0] != f.num_tokens)
      damaged(f, "/tokens no longer has the " + std::to_string(f.num_tokens) + " tokens indexed");
    if (opt.direct_reads) map_for_direct_reads(f, *o);
    return o;
  }

  // [Direct reads] The map is used only when every piece is allocated, the data is stored
  // unfiltered in the machine's byte order and with no user block, and a probe read through
  // pread matches HDF5's own read of the same tokens; anything else keeps the HDF5 path.
  void map_for_direct_reads(const ShardFacts& f, OpenShard& o) {
    const hid_t d = o.tokens.get();
    const size_t width = token_type_size(f.dtype);
    H5Plist dcpl(H5Dget_create_plist(d));
    H5Type type(H5Dget_type(d));
    H5Plist fcpl(H5Fget_create_plist(o.file.get()));
    hsize_t userblock = 1;
    if (!dcpl.valid() || !type.valid() || !fcpl.valid() || H5Pget_nfilters(dcpl.get()) != 0 ||
        H5Tget_size(type.get()) != width || H5Tget_order(type.get()) != H5T_ORDER_LE ||
        std::endian::native != std::endian::little ||
        H5Pget_userblock(fcpl.get(), &userblock) < 0 || userblock != 0 || f.num_tokens == 0)
      return;
    std::vector<uint64_t> addr;
    uint64_t piece = 0;
    const H5D_layout_t layout = H5Pget_layout(dcpl.get());
    if (layout == H5D_CONTIGUOUS) {
      const haddr_t a = H5Dget_offset(d);
      if (a == HADDR_UNDEF) return;
      piece = f.num_tokens;
      addr.push_back(a);
    } else if (layout == H5D_CHUNKED && f.chunk_tokens > 0) {
      piece = f.chunk_tokens;
      for (uint64_t c = 0; c * piece < f.num_tokens; ++c) {
        const hsize_t at[1] = {c * piece};
        unsigned mask = 0;
        haddr_t a = HADDR_UNDEF;
        hsize_t bytes = 0;
        if (H5Dget_chunk_info_by_coord(d, at, &mask, &a, &bytes) < 0 || a == HADDR_UNDEF ||
            bytes != piece * width)
          return;
        addr.push_back(a);
      }
    } else {
      return;
    }
    const int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    // Probe: the last tokens of the first piece, both ways.
    const uint64_t n = std::min<uint64_t>({piece, f.num_tokens, 64});
    const uint64_t first = std::min(piece, f.num_tokens) - n;
    std::vector<unsigned char> via_h5(n * width), via_pread(n * width);
    const hsize_t offset[1] = {first}, count[1] = {n};
    H5Space mem(H5Screate_simple(1, count, nullptr));
    const bool same =
        H5Sselect_hyperslab(o.space.get(), H5S_SELECT_SET, offset, nullptr, count, nullptr) >= 0 &&
        H5Dread(d, h5_native_type(f.dtype), mem.get(), o.space.get(), H5P_DEFAULT, via_h5.data()) >=
            0 &&
        pread_all(fd, via_pread.data(), n * width, addr[0] + first * width) && via_h5 == via_pread;
    if (!same) {
      ::close(fd);
      return;
    }
    o.fd = fd;
    o.piece_tokens = piece;
    o.piece_addr = std::move(addr);
  }

  // Tokens [start, start + count) as stored, into staging: pread piece by piece.
  bool read_direct(const OpenShard& o, size_t width, uint64_t start, uint64_t count) {
    unsigned char* dst = staging.data();
    while (count > 0) {
      const uint64_t piece = start / o.piece_tokens, within = start % o.piece_tokens;
      const uint64_t n = std::min(count, o.piece_tokens - within);
      if (!pread_all(o.fd, dst, n * width, o.piece_addr[piece] + within * width)) return false;
      dst += n * width;
      start += n;
      count -= n;
    }
    return true;
  }
};

ShardReader::ShardReader(const std::vector<ShardFacts>& shards, ReaderOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->shards = shards;
  impl_->opt = options;
  impl_->opt.max_open_files = std::max<size_t>(1, options.max_open_files);
  impl_->open.resize(shards.size());
  impl_->watch = ShardWatch(shards.size());
  impl_->staging.resize(std::max<size_t>(1, options.max_read_tokens) * 4);
}

ShardReader::~ShardReader() = default;

size_t ShardReader::open_files() const {
  return impl_->open_count;
}

size_t ShardReader::direct_files() const {
  size_t n = 0;
  for (const auto& o : impl_->open)
    n += o && o->fd >= 0;
  return n;
}

void ShardReader::read(uint32_t shard, uint64_t start, uint64_t count, int32_t* out) {
  Impl& m = *impl_;
  DPT_CHECK(shard < m.shards.size(), "shard index out of range");
  const ShardFacts& f = m.shards[shard];
  DPT_CHECK(start + count <= f.num_tokens, f.path + ": read past the end of /tokens");
  const size_t width = token_type_size(f.dtype);
  if (m.staging.size() < count * width)
    m.staging.resize(count * width);  // only if a caller
                                      // reads longer spans
  m.watch.check(shard, f.path, FileStamp{f.file_size, f.mtime_ns});
  const CrashNote note("reading shard " + f.path, h5check::crash_fix());
  auto& o = m.get(shard);
  const auto range = [&] {
    std::string r = "[";
    r += std::to_string(start);
    r += ", ";
    r += std::to_string(start + count);
    return r + ")";
  };
  if (o.fd >= 0) {
    if (!m.read_direct(o, width, start, count))
      m.damaged(f, "reading /tokens " + range() + " with pread failed: " + errno_string(errno));
  } else {
    const hsize_t offset[1] = {start}, n[1] = {count};
    DPT_CHECK_H5(H5Sselect_hyperslab(o.space.get(), H5S_SELECT_SET, offset, nullptr, n, nullptr));
    H5Space mem(H5Screate_simple(1, n, nullptr));
    if (H5Dread(o.tokens.get(), h5_native_type(f.dtype), mem.get(), o.space.get(), H5P_DEFAULT,
                m.staging.data()) < 0)
      m.damaged(f, "reading /tokens " + range() + " failed");
  }
  uint64_t bad_at = 0, bad = UINT64_MAX;
  switch (f.dtype) {
    case TokenType::u8:
      bad = widen<uint8_t>(m.staging.data(), count, out, m.opt.vocab_size, &bad_at);
      break;
    case TokenType::u16:
      bad = widen<uint16_t>(m.staging.data(), count, out, m.opt.vocab_size, &bad_at);
      break;
    case TokenType::i32:
      bad = widen<int32_t>(m.staging.data(), count, out, m.opt.vocab_size, &bad_at);
      break;
    case TokenType::u32:
      bad = widen<uint32_t>(m.staging.data(), count, out, m.opt.vocab_size, &bad_at);
      break;
  }
  if (bad != UINT64_MAX) {
    throw UsageError(f.path + ": /tokens[" + std::to_string(start + bad_at) +
                     "] = " + std::to_string(bad) + " is not below the model's vocabulary size " +
                     std::to_string(m.opt.vocab_size) +
                     " (the file changed after it was indexed): restore the shard, or rewrite "
                     "it with ids below the vocabulary size.");
  }
}

ReaderOptions plan_reader(const std::vector<ShardFacts>& shards, const ShuffleConfig& shuffle,
                          size_t budget_bytes, int64_t vocab_size, int seq_len) {
  ReaderOptions o;
  o.vocab_size = vocab_size;
  o.max_read_tokens = static_cast<size_t>(seq_len) + 1;
  size_t largest_chunk = 0, largest_shard = 0;
  for (const auto& f : shards) {
    largest_chunk = std::max(largest_chunk, f.chunk_tokens * token_type_size(f.dtype));
    largest_shard = std::max(largest_shard, f.num_tokens * token_type_size(f.dtype));
  }
  if (shuffle.mode == ShuffleMode::local) {
    // The window's shards plus one: at a window boundary a batch reads from both windows.
    o.max_open_files = static_cast<size_t>(shuffle.window_shards) + 1;
    o.read_ahead_whole_file = true;
    o.cache_bytes_per_file =
        std::min(largest_shard + largest_chunk, budget_bytes / o.max_open_files);
  } else {
    o.max_open_files = 64;
    o.bypass_cache_if_unfiltered = true;
    o.cache_bytes_per_file = std::min(2 * largest_chunk, budget_bytes / o.max_open_files);
  }
  return o;
}

}  // namespace dpt::datasets
