// inspect_shard(): checks one shard against [Shard format] and scans every token for the facts
// the shard index caches. Every problem with the file is a one-line UsageError with its fix.
#include "datasets/shard_inspect.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <future>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "common/crash_note.h"
#include "common/errors.h"
#include "common/hash.h"
#include "datasets/h5_checks.h"
#include "datasets/shard_index.h"
#include "datasets/token_h5.h"
#include "storage/h5.h"

namespace dpt::datasets {

using namespace h5check;  // NOLINT: the shared checks read as this file's own
using storage::h5_quiet;
using storage::H5Dataset;
using storage::H5File;
using storage::H5Handle;
using storage::H5Plist;
using storage::H5Space;
using storage::H5Type;
namespace {

// The checksum is defined over little-endian bytes, and the scan hashes ids as they sit in
// memory after HDF5 converted them to the native type: the two agree only on little-endian
// hosts (x86-64, aarch64). A big-endian port must byte-swap each block before hashing.
static_assert(std::endian::native == std::endian::little,
              "ShardFacts::checksum hashes native-memory bytes as little-endian bytes");

// Each read of /tokens covers a whole number of chunks and at least this much, so per-call
// overhead is amortized while memory stays bounded (two buffers: one read, one scanned).
constexpr size_t kReadBytes = size_t{8} << 20;
constexpr uint64_t kMinReadTokens = uint64_t{1} << 20;
constexpr uint64_t kDocOffsetsPerRead = uint64_t{1} << 20;

// The token type of /tokens, or a rejection that says which type to store instead.
TokenType classify_tokens(const std::string& path, hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  if (cls == H5T_FLOAT) {
    reject(path,
           "/tokens holds floating-point values (" + std::to_string(H5Tget_size(type) * 8) +
               "-bit float), not token ids",
           "store ids as integers: uint16 when vocab_size <= 65536, else uint32 (numpy: "
           "tokens.astype(np.uint16)), or " +
               std::string(kRewrite));
  }
  if (cls != H5T_INTEGER) {
    reject(path, "/tokens has HDF5 type class " + class_name(cls) + ", not integer",
           "store ids as uint8, uint16, int32 or uint32; " + std::string(kRewrite));
  }
  const size_t size = H5Tget_size(type);
  const H5T_sign_t sign = H5Tget_sign(type);
  if (sign == H5T_SGN_ERROR) damaged(path, "reading the type of /tokens");
  const bool is_signed = sign != H5T_SGN_NONE;
  const std::string name = int_type_name(is_signed, size);
  if (!is_signed && size == 1) return TokenType::u8;
  if (!is_signed && size == 2) return TokenType::u16;
  if (!is_signed && size == 4) return TokenType::u32;
  if (is_signed && size == 4) return TokenType::i32;
  std::string fix;
  if (size == 1) {
    fix = "store ids as uint8 (vocab_size <= 256) or uint16";
  } else if (size == 2) {
    fix = "store ids as uint16 (vocab_size <= 65536) or uint32";
  } else if (size == 8) {
    fix =
        "store ids as uint32 or int32 (64-bit ids are not supported; vocabularies fit in 32 "
        "bits)";
  } else {
    fix = "store ids as uint8, uint16, int32 or uint32";
  }
  reject(path, "/tokens has type " + name + ", which is not a token type", fix);
}

// Validates /doc_offsets when present; returns its length (0 when absent).
uint64_t check_doc_offsets(const std::string& path, hid_t file, uint64_t num_tokens) {
  const std::string fix =
      "store the start of each document in /tokens as a 1-D int64 dataset (first 0, strictly "
      "increasing, each < len(tokens)), remove /doc_offsets, or " +
      std::string(kRewrite);
  H5Dataset d = open_dataset(path, file, kDocOffsetsName, fix);
  if (!d.valid()) return 0;
  H5Type type(H5Dget_type(d.get()));
  if (!type.valid()) damaged(path, "reading the type of /doc_offsets");
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_INTEGER) {
    reject(path, "/doc_offsets is of type " + class_name(cls) + ", not integer", fix);
  }
  H5Space space(H5Dget_space(d.get()));
  if (!space.valid()) damaged(path, "reading the shape of /doc_offsets");
  if (H5Sget_simple_extent_ndims(space.get()) != 1) {
    reject(path, "/doc_offsets has " + shape_text(space.get()) + ", not 1-D", fix);
  }
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  if (n == 0) reject(path, "/doc_offsets is empty (it must start with 0)", fix);

  // Whatever integer type is stored, HDF5 converts to int64 (uint64 values beyond int64 clip to
  // its maximum, which the bound check below then refuses).
  std::vector<int64_t> buf(static_cast<size_t>(std::min<uint64_t>(n, kDocOffsetsPerRead)));
  int64_t prev = -1;
  for (uint64_t start = 0; start < n; start += buf.size()) {
    const hsize_t off[1] = {start}, count[1] = {std::min<uint64_t>(buf.size(), n - start)};
    if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, off, nullptr, count, nullptr) < 0) {
      damaged(path, "selecting /doc_offsets");
    }
    H5Space mem(H5Screate_simple(1, count, nullptr));
    if (H5Dread(d.get(), H5T_NATIVE_INT64, mem.get(), space.get(), H5P_DEFAULT, buf.data()) < 0) {
      damaged(path, "reading /doc_offsets [" + std::to_string(start) + ", " +
                        std::to_string(start + count[0]) + ")");
    }
    for (uint64_t i = 0; i < count[0]; ++i) {
      const int64_t v = buf[i];
      const std::string at =
          "/doc_offsets[" + std::to_string(start + i) + "] = " + std::to_string(v);
      if (start + i == 0 && v != 0) reject(path, at + ", but the first offset must be 0", fix);
      if (v <= prev) {
        reject(path,
               at + " is not greater than the entry before it (" + std::to_string(prev) +
                   "); offsets must be strictly increasing",
               fix);
      }
      if (static_cast<uint64_t>(v) >= num_tokens) {
        reject(path,
               at + " is not below len(tokens) = " + std::to_string(num_tokens) +
                   "; every document must start inside /tokens",
               fix);
      }
      prev = v;
    }
  }
  return n;
}

// What the check of one block found.
struct BlockIds {
  uint64_t min_id = 0, max_id = 0;
  uint64_t bad_at = UINT64_MAX;  // first id outside [0, vocab_size) in the block
  int64_t bad_id = 0;
};

// The smallest and largest id of a block. The min/max loop vectorizes; only a block holding a
// bad id is searched a second time, for the position to report.
template <typename T>
BlockIds check_block(const T* p, size_t n, int64_t vocab_size) {
  T lo = p[0], hi = p[0];
  for (size_t i = 1; i < n; ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
  }
  BlockIds r;
  r.min_id = static_cast<uint64_t>(lo);
  r.max_id = static_cast<uint64_t>(hi);
  bool bad = static_cast<int64_t>(hi) >= vocab_size;
  if constexpr (std::is_signed_v<T>) bad = bad || lo < 0;
  for (size_t i = 0; bad && i < n; ++i) {
    const int64_t v = static_cast<int64_t>(p[i]);
    if (v < 0 || v >= vocab_size) {
      r.bad_at = i;
      r.bad_id = v;
      break;
    }
  }
  return r;
}

[[noreturn]] void reject_id(const std::string& path, uint64_t pos, int64_t id, int64_t vocab_size) {
  const std::string at = "/tokens[" + std::to_string(pos) + "] = " + std::to_string(id);
  if (id < 0) {
    reject(path, at + " is a negative id (signed-negative)",
           "token ids must be >= 0: fix the tokenizer output, store ids as uint16/uint32, or " +
               std::string(kRewrite));
  }
  reject(path, at + " is not below the shard's vocab_size " + std::to_string(vocab_size),
         "set vocab_size to the tokenizer's vocabulary size (greater than every id) or "
         "re-tokenize with the right tokenizer");
}

struct TokensLayout {
  uint64_t num_tokens = 0;
  uint64_t chunk_tokens = 0;  // 0: contiguous (or compact)
  bool filtered = false;
};

// Reads /tokens block by block. This thread reads block k and checks its ids while the cache
// is warm, while a helper thread hashes block k-1; no HDF5 call leaves this thread ([HDF5
// thread]). FNV-1a is a serial chain of about 1 GB/s, slower than an uncompressed read, so
// hiding the read, the decompression and the id check behind it is most of the speed there is.
template <typename T>
void scan_tokens(const std::string& path, hid_t dset, const TokensLayout& layout,
                 int64_t vocab_size, ShardFacts* facts) {
  const uint64_t n = layout.num_tokens;
  uint64_t per_read = std::max<uint64_t>(kMinReadTokens, kReadBytes / sizeof(T));
  if (layout.chunk_tokens > 0) {
    const uint64_t chunks = (per_read + layout.chunk_tokens - 1) / layout.chunk_tokens;
    per_read = std::max<uint64_t>(1, chunks) * layout.chunk_tokens;
  }
  per_read = std::min(per_read, n);

  H5Space space(H5Dget_space(dset));
  if (!space.valid()) damaged(path, "reading the shape of /tokens");
  // Declared before `hashing` so that, when we throw, the future (whose destructor waits for
  // its thread) goes first and the buffer it hashes outlives it.
  std::vector<T> buffers[2] = {std::vector<T>(per_read), std::vector<T>(per_read)};
  uint64_t checksum = fnv1a64(nullptr, 0);
  uint64_t lo = UINT64_MAX, hi = 0;
  std::future<void> hashing;

  for (uint64_t start = 0, k = 0; start < n; start += per_read, ++k) {
    const hsize_t off[1] = {start}, count[1] = {std::min(per_read, n - start)};
    if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, off, nullptr, count, nullptr) < 0) {
      damaged(path, "selecting /tokens");
    }
    H5Space mem(H5Screate_simple(1, count, nullptr));
    T* block = buffers[k % 2].data();
    if (H5Dread(dset, h5_native_type(facts->dtype), mem.get(), space.get(), H5P_DEFAULT, block) <
        0) {
      damaged(path, "reading /tokens [" + std::to_string(start) + ", " +
                        std::to_string(start + count[0]) + ")");
    }
    const size_t len = static_cast<size_t>(count[0]);
    const BlockIds ids = check_block(block, len, vocab_size);
    if (ids.bad_at != UINT64_MAX) reject_id(path, start + ids.bad_at, ids.bad_id, vocab_size);
    lo = std::min(lo, ids.min_id);
    hi = std::max(hi, ids.max_id);
    // The hash of block k-1 must end before block k's starts (one chain), and before the next
    // read reuses its buffer.
    if (hashing.valid()) hashing.get();
    // async|deferred: when no thread can be started, the block is hashed at get() instead.
    hashing = std::async(std::launch::async | std::launch::deferred, [block, len, &checksum] {
      checksum = fnv1a64(block, len * sizeof(T), checksum);
    });
  }
  hashing.get();
  facts->min_id = lo;
  facts->max_id = hi;
  facts->checksum = checksum;
}

TokensLayout tokens_layout(const std::string& path, hid_t dset, uint64_t file_size) {
  TokensLayout layout;
  H5Space space(H5Dget_space(dset));
  if (!space.valid()) damaged(path, "reading the shape of /tokens");
  if (H5Sget_simple_extent_ndims(space.get()) != 1) {
    reject(path, "/tokens has " + shape_text(space.get()) + ", not 1-D",
           "store the token stream as one flat 1-D dataset (concatenate the documents; "
           "numpy: tokens.reshape(-1)), or " +
               std::string(kRewrite));
  }
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space.get(), &n, nullptr);
  layout.num_tokens = n;

  H5Plist dcpl(H5Dget_create_plist(dset));
  if (!dcpl.valid()) damaged(path, "reading the storage layout of /tokens");
  if (H5Pget_layout(dcpl.get()) == H5D_CHUNKED) {
    hsize_t chunk = 0;
    if (H5Pget_chunk(dcpl.get(), 1, &chunk) < 0) damaged(path, "reading the chunk size of /tokens");
    layout.chunk_tokens = chunk;
  }
  require_stored(path, dset, "/tokens", file_size);
  const int nfilters = H5Pget_nfilters(dcpl.get());
  if (nfilters < 0) damaged(path, "reading the filters of /tokens");
  layout.filtered = nfilters > 0;
  for (int i = 0; i < nfilters; ++i) {
    unsigned flags = 0, config = 0;
    size_t nvalues = 0;
    char name[64] = {};
    const H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nvalues,
                                           nullptr, sizeof(name), name, &config);
    if (id < 0) damaged(path, "reading the filters of /tokens");
    if (H5Zfilter_avail(id) <= 0) {
      reject(path,
             "/tokens is compressed with HDF5 filter " + std::to_string(id) +
                 (name[0] ? " (" + std::string(name) + ")" : std::string()) +
                 ", which this HDF5 library cannot decode",
             "rewrite it uncompressed or with gzip (prepare-data --compression none|gzip), or "
             "install "
             "the filter plugin and set HDF5_PLUGIN_PATH");
    }
  }
  return layout;
}

}  // namespace

ShardFacts inspect_shard(const std::string& path) try {
  h5_quiet();
  const CrashNote note("validating shard " + path, h5check::crash_fix());
  // The stamp is taken before reading: if the file changes during the scan, its new size or
  // mtime no longer matches what the index stores, and the next run inspects it again.
  const FileStamp stamp = stat_shard(path);
  H5File file = open_shard_file(path, stamp.size);

  const std::string tokens_fix =
      "a shard stores its token ids in a 1-D integer dataset named tokens; " +
      std::string(kRewrite);
  H5Dataset tokens = open_dataset(path, file.get(), kTokensName, tokens_fix);
  if (!tokens.valid()) reject(path, "no /tokens dataset", tokens_fix);

  const std::string version_fix =
      "set the root attribute format_version = " + std::to_string(kShardFormatVersion) +
      " (h5py: f.attrs['format_version'] = 1) if the file follows "
      "docs/data-format.md, or " +
      std::string(kRewrite);
  const int64_t version = read_int_attr(path, file.get(), kFormatVersionAttr, version_fix);
  if (version != kShardFormatVersion) {
    reject(path,
           "format_version " + std::to_string(version) +
               " is not supported: this program reads format " +
               std::to_string(kShardFormatVersion),
           "re-create it with this release's prepare-data, or train with the release that "
           "wrote it");
  }

  const TokensLayout layout = tokens_layout(path, tokens.get(), stamp.size);
  ShardFacts facts;
  {
    H5Type type(H5Dget_type(tokens.get()));
    if (!type.valid()) damaged(path, "reading the type of /tokens");
    facts.dtype = classify_tokens(path, type.get());
  }
  if (layout.num_tokens == 0) {
    reject(path, "/tokens is empty (0 tokens)",
           "remove the file from the dataset, or re-create it from non-empty input");
  }

  const std::string vocab_fix =
      "set the root attribute vocab_size to the tokenizer's vocabulary size, an integer greater "
      "than every id (h5py: f.attrs['vocab_size'] = 50257), or " +
      std::string(kRewrite);
  facts.vocab_size = read_int_attr(path, file.get(), kVocabSizeAttr, vocab_fix);
  if (facts.vocab_size < 1) {
    reject(path,
           "attribute vocab_size of / is " + std::to_string(facts.vocab_size) +
               ", but it must be at least 1",
           vocab_fix);
  }
  facts.num_docs = check_doc_offsets(path, file.get(), layout.num_tokens);

  // Reopen /tokens with a chunk cache for the scan. Every read covers whole chunks, so each
  // chunk is fetched once; a one-chunk cache with w0 = 1 (evict chunks read in full first)
  // holds a compressed chunk while it is decompressed and copied out. Uncompressed chunks get
  // no cache at all: HDF5 then reads chunks that do not fit straight into our buffer, saving a
  // copy through the cache.
  tokens.reset();
  H5Plist dapl(H5Pcreate(H5P_DATASET_ACCESS));
  DPT_CHECK_H5(dapl.get());
  const size_t chunk_bytes = layout.chunk_tokens * token_type_size(facts.dtype);
  const size_t cache_bytes = layout.filtered ? chunk_bytes : 0;
  DPT_CHECK_H5(H5Pset_chunk_cache(dapl.get(), 101, cache_bytes, 1.0));
  tokens = H5Dataset(H5Dopen2(file.get(), kTokensName, dapl.get()));
  if (!tokens.valid()) damaged(path, "opening /tokens");

  facts.num_tokens = layout.num_tokens;
  facts.chunk_tokens = layout.chunk_tokens;
  switch (facts.dtype) {
    case TokenType::u8:
      scan_tokens<uint8_t>(path, tokens.get(), layout, facts.vocab_size, &facts);
      break;
    case TokenType::u16:
      scan_tokens<uint16_t>(path, tokens.get(), layout, facts.vocab_size, &facts);
      break;
    case TokenType::i32:
      scan_tokens<int32_t>(path, tokens.get(), layout, facts.vocab_size, &facts);
      break;
    case TokenType::u32:
      scan_tokens<uint32_t>(path, tokens.get(), layout, facts.vocab_size, &facts);
      break;
  }

  facts.file_size = stamp.size;
  facts.mtime_ns = stamp.mtime_ns;
  std::unique_ptr<char, decltype(&std::free)> canonical(::realpath(path.c_str(), nullptr),
                                                        &std::free);
  facts.path = canonical ? std::string(canonical.get()) : path;
  return facts;
} catch (const std::bad_alloc&) {
  // Sizes declared by the file that no check above caught: still the file's fault.
  reject(path, "declares sizes this reader cannot allocate", kRewrite);
} catch (const std::length_error&) {
  reject(path, "declares sizes this reader cannot allocate", kRewrite);
}

}  // namespace dpt::datasets
