// ShardWriter: /tokens and /doc_offsets grow one chunk at a time in a temporary file that is
// fsynced and renamed into place by finish().
#include "datasets/shard_writer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <vector>

#include "common/errors.h"
#include "datasets/token_h5.h"
#include "storage/durable.h"
#include "storage/h5.h"

namespace dpt::datasets {

using storage::fsync_directory;
using storage::fsync_path;
using storage::h5_put_attr;
using storage::h5_quiet;
using storage::H5Dataset;
using storage::H5File;
using storage::H5Plist;
using storage::H5Space;

namespace {

// Document offsets per chunk of /doc_offsets (64 KiB of int64), or fewer when the token chunks
// are smaller: an uncompressed chunk takes its full size on disk even when partly filled.
constexpr uint64_t kDocChunk = 8192;

uint64_t max_id_of(TokenType t) {
  switch (t) {
    case TokenType::u8:
      return std::numeric_limits<uint8_t>::max();
    case TokenType::u16:
      return std::numeric_limits<uint16_t>::max();
    case TokenType::i32:
      return static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
    case TokenType::u32:
      return std::numeric_limits<uint32_t>::max();
  }
  return 0;
}

template <typename T>
void store_ids(const uint32_t* ids, size_t n, unsigned char* dst) {
  T* out = reinterpret_cast<T*>(dst);
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<T>(ids[i]);
}

// Errors a user can fix by choosing another output directory, as opposed to I/O failures.
bool is_path_problem(int err) {
  return err == EACCES || err == EPERM || err == ENOENT || err == ENOTDIR || err == EROFS ||
         err == EISDIR || err == ENAMETOOLONG || err == ELOOP;
}

// A 1-D dataset with unlimited max length, written a chunk at a time from a buffer of one
// chunk: the memory bound of the writer.
struct GrowingColumn {
  H5Dataset ds;
  hid_t mem_type = H5I_INVALID_HID;
  size_t elem_size = 0;
  uint64_t chunk = 0;
  uint64_t stored = 0;  // elements already in the file
  uint64_t fill = 0;    // elements waiting in buf
  std::vector<unsigned char> buf;

  void create(hid_t file, const char* name, hid_t file_type, hid_t mem_type_, size_t elem_size_,
              uint64_t chunk_, int gzip_level) {
    mem_type = mem_type_;
    elem_size = elem_size_;
    chunk = chunk_;
    buf.resize(chunk * elem_size);

    const hsize_t dims[1] = {0};
    const hsize_t maxdims[1] = {H5S_UNLIMITED};
    hid_t id;
    DPT_CHECK_H5(id = H5Screate_simple(1, dims, maxdims));
    H5Space space(id);
    DPT_CHECK_H5(id = H5Pcreate(H5P_DATASET_CREATE));
    H5Plist dcpl(id);
    const hsize_t chunk_dims[1] = {chunk};
    DPT_CHECK_H5(H5Pset_chunk(dcpl.get(), 1, chunk_dims));
    if (gzip_level > 0) DPT_CHECK_H5(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(gzip_level)));
    // No timestamps in object headers: the same input gives a byte-identical file.
    DPT_CHECK_H5(H5Pset_obj_track_times(dcpl.get(), 0));
    DPT_CHECK_H5(id = H5Pcreate(H5P_DATASET_ACCESS));
    H5Plist dapl(id);
    // Chunks are written whole and never revisited, so one chunk of cache is all that helps.
    DPT_CHECK_H5(H5Pset_chunk_cache(dapl.get(), 11, chunk * elem_size, 1.0));
    DPT_CHECK_H5(
        id = H5Dcreate2(file, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), dapl.get()));
    ds = H5Dataset(id);
  }

  uint64_t size() const { return stored + fill; }
  unsigned char* tail() { return buf.data() + fill * elem_size; }

  void flush() {
    if (fill == 0) return;
    const hsize_t new_len[1] = {stored + fill};
    DPT_CHECK_H5(H5Dset_extent(ds.get(), new_len));
    hid_t id;
    DPT_CHECK_H5(id = H5Dget_space(ds.get()));
    H5Space file_space(id);
    const hsize_t start[1] = {stored};
    const hsize_t count[1] = {fill};
    DPT_CHECK_H5(
        H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr));
    DPT_CHECK_H5(id = H5Screate_simple(1, count, nullptr));
    H5Space mem_space(id);
    DPT_CHECK_H5(
        H5Dwrite(ds.get(), mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, buf.data()));
    stored += fill;
    fill = 0;
  }
};

}  // namespace

struct ShardWriter::State {
  std::string path;
  std::string tmp_path;
  ShardWriterOptions opt;
  uint64_t max_id = 0;  // the largest id both vocab_size and dtype allow
  H5File file;
  GrowingColumn tokens;
  GrowingColumn docs;
  uint64_t num_docs = 0;
  bool doc_pending = false;
  bool finished = false;

  ~State() {
    if (finished || tmp_path.empty()) return;
    discard_writes();
    docs.ds.reset();
    tokens.ds.reset();
    file.reset();
    ::unlink(tmp_path.c_str());
  }

  // Closing flushes cached chunks and metadata. After a write error (a full disk) that flush
  // fails again, a failed H5Fclose leaves the file inside the library, and HDF5 1.10.8 then
  // crashes at exit closing it. The file is being thrown away, so its descriptor is pointed at
  // an anonymous memory file first: the closing writes succeed and go nowhere.
  void discard_writes() noexcept {
    if (!file.valid()) return;
    void* handle = nullptr;
    if (H5Fget_vfd_handle(file.get(), H5P_DEFAULT, &handle) < 0 || handle == nullptr) return;
    const int fd = *static_cast<int*>(handle);  // the sec2 (default) driver's handle
    const int sink = ::memfd_create("dpt-discarded-shard", MFD_CLOEXEC);
    if (sink < 0) return;
    ::dup2(sink, fd);
    ::close(sink);
  }

  void record_doc_start() {
    ++num_docs;
    if (!opt.write_doc_offsets) return;
    if (docs.fill == docs.chunk) docs.flush();
    const int64_t offset = static_cast<int64_t>(tokens.size());
    std::memcpy(docs.tail(), &offset, sizeof(offset));
    ++docs.fill;
  }
};

namespace {

// Runs f, prefixing the shard's path to a RuntimeFailure (HDF5 and libc failures name only the
// call) and keeping the message on one line.
template <typename F>
void naming_path(const std::string& path, F&& f) {
  try {
    f();
  } catch (const RuntimeFailure& e) {
    // HDF5's error text can span lines (a time stamp ends with one); messages are one line.
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    throw RuntimeFailure("writing shard " + path + ": " + what);
  }
}

}  // namespace

ShardWriter::ShardWriter(std::string path, const ShardWriterOptions& options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.path = std::move(path);
  s.opt = options;
  const ShardWriterOptions& o = s.opt;
  const size_t elem = token_type_size(o.dtype);
  if (o.vocab_size < 1) {
    throw UsageError("shard " + s.path + ": vocab_size must be positive, got " +
                     std::to_string(o.vocab_size) + ".");
  }
  if (o.chunk_tokens < 1 || o.chunk_tokens * elem > std::numeric_limits<uint32_t>::max()) {
    throw UsageError("shard " + s.path + ": chunk_tokens " + std::to_string(o.chunk_tokens) +
                     " is out of range: an HDF5 chunk holds 1 element up to 4 GiB; 65536 is a "
                     "good choice.");
  }
  if (o.gzip_level < 0 || o.gzip_level > 9) {
    throw UsageError("shard " + s.path + ": gzip level " + std::to_string(o.gzip_level) +
                     " is not in 0..9 (0: no compression).");
  }
  s.max_id = std::min(static_cast<uint64_t>(o.vocab_size - 1), max_id_of(o.dtype));

  const std::filesystem::path final_path(s.path);
  std::filesystem::path dir = final_path.parent_path();
  if (dir.empty()) dir = ".";
  std::string tmp_name = ".";  // appended piece by piece: GCC 12 warns on "." + string
  tmp_name += final_path.filename().string();
  tmp_name += ".tmp." + std::to_string(static_cast<long>(::getpid()));
  s.tmp_path = (dir / tmp_name).string();

  // Create the file ourselves first: errno names the problem more plainly than HDF5 does.
  const int fd = ::open(s.tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    const std::string msg = "cannot create " + s.tmp_path + " (temporary file of shard " + s.path +
                            "): " + errno_string(err);
    s.tmp_path.clear();  // nothing to remove
    if (is_path_problem(err)) {
      throw UsageError(msg + "; check that the directory exists and is writable.");
    }
    throw RuntimeFailure(msg);
  }
  ::close(fd);

  h5_quiet();
  naming_path(s.path, [&] {
    if (o.gzip_level > 0) {
      DPT_CHECK(H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0,
                "this HDF5 library has no deflate (gzip) filter; write without compression");
    }
    hid_t id;
    DPT_CHECK_H5(id = H5Pcreate(H5P_FILE_CREATE));
    H5Plist fcpl(id);
    DPT_CHECK_H5(H5Pset_obj_track_times(fcpl.get(), 0));  // the root group's header too
    DPT_CHECK_H5(id = H5Fcreate(s.tmp_path.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT));
    s.file = H5File(id);
    s.tokens.create(s.file.get(), kTokensName, h5_file_type(o.dtype), h5_native_type(o.dtype), elem,
                    o.chunk_tokens, o.gzip_level);
    if (o.write_doc_offsets) {
      s.docs.create(s.file.get(), kDocOffsetsName, H5T_STD_I64LE, H5T_NATIVE_INT64, sizeof(int64_t),
                    std::min(kDocChunk, o.chunk_tokens), o.gzip_level);
    }
  });
}

ShardWriter::~ShardWriter() = default;
ShardWriter::ShardWriter(ShardWriter&&) noexcept = default;
ShardWriter& ShardWriter::operator=(ShardWriter&&) noexcept = default;

void ShardWriter::begin_document() {
  DPT_CHECK(state_ && !state_->finished, "begin_document() on a finished or moved-from writer");
  state_->doc_pending = true;
}

void ShardWriter::append(const uint32_t* ids, size_t n) {
  DPT_CHECK(state_ && !state_->finished, "append() on a finished or moved-from writer");
  State& s = *state_;
  if (n == 0) return;
  // Validate the whole call first, so a rejected call leaves the shard as it was.
  if (*std::max_element(ids, ids + n) > s.max_id) {
    const size_t i = static_cast<size_t>(
        std::find_if(ids, ids + n, [&](uint32_t id) { return id > s.max_id; }) - ids);
    const uint64_t id = ids[i];
    const std::string where = "shard " + s.path + ": token id " + std::to_string(id) +
                              " (at token " + std::to_string(s.tokens.size() + i) + ")";
    if (id >= static_cast<uint64_t>(s.opt.vocab_size)) {
      throw UsageError(where + " is >= vocab_size " + std::to_string(s.opt.vocab_size) +
                       "; raise vocab_size or check the tokenizer.");
    }
    throw UsageError(where + " does not fit dtype " + token_type_name(s.opt.dtype) +
                     "; choose a wider dtype for this vocabulary.");
  }
  naming_path(s.path, [&] {
    if (s.doc_pending || s.num_docs == 0) s.record_doc_start();
    s.doc_pending = false;
    while (n > 0) {
      const size_t take =
          static_cast<size_t>(std::min<uint64_t>(n, s.tokens.chunk - s.tokens.fill));
      unsigned char* dst = s.tokens.tail();
      switch (s.opt.dtype) {
        case TokenType::u8:
          store_ids<uint8_t>(ids, take, dst);
          break;
        case TokenType::u16:
          store_ids<uint16_t>(ids, take, dst);
          break;
        case TokenType::i32:
          store_ids<int32_t>(ids, take, dst);
          break;
        case TokenType::u32:
          store_ids<uint32_t>(ids, take, dst);
          break;
      }
      s.tokens.fill += take;
      ids += take;
      n -= take;
      if (s.tokens.fill == s.tokens.chunk) s.tokens.flush();
    }
  });
}

uint64_t ShardWriter::size() const {
  return state_ ? state_->tokens.size() : 0;
}
uint64_t ShardWriter::num_documents() const {
  return state_ ? state_->num_docs : 0;
}
const std::string& ShardWriter::path() const {
  static const std::string empty;
  return state_ ? state_->path : empty;
}

void ShardWriter::finish() {
  DPT_CHECK(state_ && !state_->finished, "finish() on a finished or moved-from writer");
  State& s = *state_;
  naming_path(s.path, [&] {
    s.tokens.flush();
    if (s.opt.write_doc_offsets) s.docs.flush();
    const int64_t vocab = s.opt.vocab_size;
    const int32_t version = kShardFormatVersion;
    h5_put_attr(s.file.get(), kVocabSizeAttr, vocab);
    h5_put_attr(s.file.get(), kFormatVersionAttr, version);
    // Flushing reports write errors (a full disk) that a close would swallow.
    DPT_CHECK_H5(H5Fflush(s.file.get(), H5F_SCOPE_LOCAL));
    s.docs.ds.reset();
    s.tokens.ds.reset();
    s.file.reset();
    s.docs.buf = {};
    s.tokens.buf = {};
    fsync_path(s.tmp_path);
    DPT_CHECK_POSIX(::rename(s.tmp_path.c_str(), s.path.c_str()));
    s.finished = true;
    // The rename itself is durable once the directory is synced.
    fsync_directory(std::filesystem::path(s.path).parent_path().string());
  });
}

}  // namespace dpt::datasets
