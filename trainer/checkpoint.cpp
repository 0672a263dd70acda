// Checkpoint files: rank files written with pwrite into an HDF5 skeleton, read back in one
// verified pass, meta.h5 through HDF5, and the directory operations of publication.
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <type_traits>

#include "common/aligned.h"
#include "common/crc32c.h"
#include "common/durable.h"
#include "common/errors.h"
#include "datasets/h5.h"

namespace dpt::trainer {

namespace fs = std::filesystem;
using datasets::H5Attr;
using datasets::H5Dataset;
using datasets::H5File;
using datasets::H5Plist;
using datasets::H5Space;
using datasets::H5Type;

static_assert(std::endian::native == std::endian::little,
              "rank files store little-endian float32 written straight from memory");

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08" PRId64, step);
  return buf;
}

std::string rank_file_name(int rank) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "rank_%05d.h5", rank);
  return buf;
}

namespace {

constexpr size_t kIoPiece = size_t{64} << 20;  // bytes per pread/pwrite: bounded, still large

// A file in offset order: the tensors' data regions and the HDF5 bytes between them.
struct Segment {
  uint64_t offset = 0, bytes = 0;
  int tensor = -1;  // -1: HDF5 structure, read from the file
};

std::vector<Segment> segments_of(const RankFileRecord& rec, uint64_t file_bytes) {
  const uint64_t n = (rec.hi - rec.lo) * sizeof(float);
  std::vector<Segment> data;
  for (int t = 0; t < kStateTensors; ++t)
    if (n > 0) data.push_back({rec.offsets[t], n, t});
  std::sort(data.begin(), data.end(),
            [](const Segment& a, const Segment& b) { return a.offset < b.offset; });
  std::vector<Segment> out;
  uint64_t at = 0;
  for (const Segment& s : data) {
    DPT_CHECK(s.offset >= at, "overlapping tensors in a rank file");
    if (s.offset > at) out.push_back({at, s.offset - at, -1});
    out.push_back(s);
    at = s.offset + s.bytes;
  }
  if (file_bytes > at) out.push_back({at, file_bytes - at, -1});
  return out;
}

uint64_t end_of(const std::vector<Segment>& segs) {
  return segs.empty() ? 0 : segs.back().offset + segs.back().bytes;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = o.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// [Direct I/O] A rank file opened twice: O_DIRECT for the page-aligned bulk of every region
// and buffered for HDF5's own bytes and the unaligned edges. Tensor data so skips the page
// cache: no copy into it, no eviction of the training data's cached pages by gigabytes of
// checkpoint, and no first touch of fresh cache pages (which a VM may have to fault in from
// its host). create_rank_file aligns each tensor's data to kPageAlign (H5Pset_alignment) and
// the snapshot buffers are page-aligned, so a save writes straight from them. Where the file
// system refuses O_DIRECT (tmpfs at open, some others with EINVAL at the first transfer), the
// file continues buffered. Every transfer folds its bytes into a CRC-32C in file order.
class RankFileIo {
 public:
  RankFileIo(const std::string& path, bool write) : buffered_(-1), direct_(-1) {
    const int mode = write ? O_RDWR : O_RDONLY;
    buffered_ = Fd(::open(path.c_str(), mode | O_CLOEXEC));
    if (buffered_.get() >= 0) direct_ = Fd(::open(path.c_str(), mode | O_CLOEXEC | O_DIRECT));
  }
  bool opened() const { return buffered_.get() >= 0; }
  int fd() const { return buffered_.get(); }

  // Reads [off, off + n) into mem (null: into scratch, for checking only). False with errno
  // set on failure (0 at an unexpected end of the file).
  bool read(uint64_t off, uint64_t n, char* mem, uint32_t* crc) {
    while (n > 0) {
      const uint64_t len = piece(off, n);
      char* to = mem;
      if (direct(off, len)) {
        to = mem && aligned(mem) ? mem : scratch(len);
        if (pread_all(direct_.get(), to, len, off)) {
          if (mem && to != mem) std::memcpy(mem, to, len);
          *crc = crc32c(to, len, *crc);
          advance(off, n, mem, len);
          continue;
        }
        if (errno != EINVAL) return false;
        direct_ = Fd(-1);  // refused mid-file: buffered from here on
        to = mem;
      }
      if (!to) to = scratch(len);
      if (!pread_all(buffered_.get(), to, len, off)) return false;
      *crc = crc32c(to, len, *crc);
      advance(off, n, mem, len);
    }
    return true;
  }

  // Writes [off, off + n) from mem. False with errno set on failure.
  bool write(uint64_t off, uint64_t n, const char* mem, uint32_t* crc) {
    while (n > 0) {
      const uint64_t len = piece(off, n);
      *crc = crc32c(mem, len, *crc);
      bool done = false;
      if (direct(off, len)) {
        const char* from = mem;
        if (!aligned(mem)) from = static_cast<char*>(std::memcpy(scratch(len), mem, len));
        done = pwrite_all(direct_.get(), from, len, off);
        if (!done && errno != EINVAL) return false;
        if (!done) direct_ = Fd(-1);
      }
      if (!done && !pwrite_all(buffered_.get(), mem, len, off)) return false;
      off += len;
      n -= len;
      mem += len;
    }
    return true;
  }

  // Data written either way is durable once this returns true.
  bool sync() { return ::fsync(buffered_.get()) == 0; }
  bool close() {
    direct_ = Fd(-1);
    return ::close(buffered_.release()) == 0;
  }

 private:
  static constexpr uint64_t kA = kPageAlign;
  static bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % kA == 0; }
  // The next transfer: up to the next page boundary (a head), whole pages (direct), or the
  // rest (a tail shorter than a page, or anything when direct I/O is off).
  uint64_t piece(uint64_t off, uint64_t n) const {
    if (direct_.get() < 0) return std::min<uint64_t>(n, kIoPiece);
    if (off % kA != 0) return std::min<uint64_t>(n, kA - off % kA);
    if (n < kA) return n;
    return std::min<uint64_t>(kIoPiece, n - n % kA);
  }
  bool direct(uint64_t off, uint64_t len) const {
    return direct_.get() >= 0 && off % kA == 0 && len % kA == 0;
  }
  char* scratch(uint64_t len) {
    if (bounce_.size() < len) bounce_.resize(len);  // at most kIoPiece; grows to what is used
    return bounce_.data();
  }
  static void advance(uint64_t& off, uint64_t& n, char*& mem, uint64_t len) {
    off += len;
    n -= len;
    if (mem) mem += len;
  }

  Fd buffered_, direct_;
  PageAlignedVector<char> bounce_;
};

[[noreturn]] void damaged(const std::string& path, const std::string& what) {
  throw UsageError("checkpoint file " + path + " " + what +
                   ": the checkpoint is damaged; resume from an earlier one (--resume auto "
                   "falls back by itself) or restore the file");
}

// ---- HDF5 attribute and dataset helpers for meta.h5 -------------------------------------------

struct MetaReader {
  std::string path;

  [[noreturn]] void fail(const std::string& what) const {
    throw UsageError("checkpoint metadata " + path + ": " + what + " (" +
                     datasets::h5_error_text() +
                     "): the checkpoint is damaged or not one of ours; resume from an earlier "
                     "one (--resume auto falls back by itself)");
  }

  template <typename T>
  std::vector<T> attr_vec(hid_t loc, const char* name) const {
    H5Attr a(H5Aopen(loc, name, H5P_DEFAULT));
    if (!a.valid()) fail(std::string("no attribute '") + name + "'");
    H5Space s(H5Aget_space(a.get()));
    const hssize_t n = H5Sget_simple_extent_npoints(s.get());
    if (n < 0) fail(std::string("attribute '") + name + "' unreadable");
    std::vector<T> v(static_cast<size_t>(n));
    if (n > 0 && H5Aread(a.get(), datasets::h5_native<T>(), v.data()) < 0)
      fail(std::string("attribute '") + name + "' unreadable");
    return v;
  }
  template <typename T>
  T attr(hid_t loc, const char* name) const {
    const auto v = attr_vec<T>(loc, name);
    if (v.size() != 1) fail(std::string("attribute '") + name + "' is not a scalar");
    return v[0];
  }
  std::string string_attr(hid_t loc, const char* name) const {
    H5Attr a(H5Aopen(loc, name, H5P_DEFAULT));
    if (!a.valid()) fail(std::string("no attribute '") + name + "'");
    H5Type t(H5Aget_type(a.get()));
    if (!t.valid() || H5Tget_class(t.get()) != H5T_STRING || H5Tis_variable_str(t.get()) > 0)
      fail(std::string("attribute '") + name + "' is not a fixed-length string");
    std::string v(H5Tget_size(t.get()), '\0');
    if (H5Aread(a.get(), t.get(), v.data()) < 0)
      fail(std::string("attribute '") + name + "' unreadable");
    v.resize(std::strlen(v.c_str()));
    return v;
  }
};

// [Meta fields] The root attributes of meta.h5, each once: write_meta, read_meta and
// canonical_text all walk this list. The order is that of canonical_text, which the stored
// meta_crc32c covers: changing it changes every checkpoint's checksum.
template <typename Meta, typename F>
void for_each_root_field(Meta& m, F&& f) {
  f("format_version", m.format_version);
  f("step", m.step);
  f("world_size", m.world_size);
  f("total_steps", m.total_steps);
  f("seed", m.seed);
  f("nonfinite_skipped", m.nonfinite_skipped);
  f("vocab_size", m.vocab_size);
  f("seq_len", m.seq_len);
  f("d_model", m.d_model);
  f("n_layer", m.n_layer);
  f("n_head", m.n_head);
  f("global_batch", m.global_batch);
  f("shuffle", m.shuffle);
  f("shuffle_window", m.shuffle_window);
  f("data_fingerprint", m.data_fingerprint);
  f("data_shards", m.data_shards);
  f("data_tokens", m.data_tokens);
  f("samples_seen", m.samples_seen);
  f("param_count", m.param_count);
  f("config", m.config);
}

// Every field of the metadata as text, one per line: what meta_crc32c covers, so that a flipped
// bit anywhere in what we read is caught whatever HDF5 itself checksums.
std::string canonical_text(const CheckpointMeta& m) {
  std::ostringstream s;
  for_each_root_field(m, [&](const char* name, const auto& v) { s << name << "=" << v << "\n"; });
  for (const auto& t : m.tensors) {
    s << "tensor " << t.name << " " << t.offset;
    for (size_t d : t.shape)
      s << " " << d;
    s << "\n";
  }
  for (const auto& f : m.files) {
    s << "file " << f.name << " " << f.bytes << " " << f.crc32c << " " << f.lo << " " << f.hi;
    for (uint64_t o : f.offsets)
      s << " " << o;
    s << "\n";
  }
  return s.str();
}

H5Plist file_access_latest() {
  H5Plist fapl(H5Pcreate(H5P_FILE_ACCESS));
  // Newest format: checksums on HDF5's own metadata, dense storage for many attributes.
  DPT_CHECK_H5(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST));
  DPT_CHECK_H5(H5Pset_file_locking(fapl.get(), false, true));
  return fapl;
}

}  // namespace

// ---- rank files -----------------------------------------------------------------------------

RankFileRecord create_rank_file(const std::string& path, int rank, uint64_t lo, uint64_t hi,
                                int64_t step) {
  datasets::h5_quiet();
  RankFileRecord rec;
  rec.name = fs::path(path).filename().string();
  rec.lo = lo;
  rec.hi = hi;
  {
    H5Plist fapl = file_access_latest();
    // Each tensor's data on a page boundary, for O_DIRECT ([Direct I/O]).
    DPT_CHECK_H5(H5Pset_alignment(fapl.get(), kPageAlign, kPageAlign));
    H5File f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
    if (!f.valid())
      throw RuntimeFailure("cannot create checkpoint file " + path + " (" +
                           datasets::h5_error_text() + "): check that --ckpt-dir is writable");
    datasets::h5_put_attr<int32_t>(f.get(), "rank", rank);
    datasets::h5_put_attr<int64_t>(f.get(), "step", step);
    datasets::h5_put_attr<uint64_t>(f.get(), "lo", lo);
    datasets::h5_put_attr<uint64_t>(f.get(), "hi", hi);
    const hsize_t n[1] = {hi - lo};
    H5Space space(H5Screate_simple(1, n, nullptr));
    H5Plist dcpl(H5Pcreate(H5P_DATASET_CREATE));
    DPT_CHECK_H5(H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS));
    // Space reserved now and never filled by HDF5: fill_rank_file writes the data itself.
    DPT_CHECK_H5(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY));
    DPT_CHECK_H5(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER));
    for (int t = 0; t < kStateTensors; ++t) {
      H5Dataset d(H5Dcreate2(f.get(), kStateTensorNames[t], H5T_IEEE_F32LE, space.get(),
                             H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
      DPT_CHECK_H5(d.get());
      const haddr_t at = H5Dget_offset(d.get());
      DPT_CHECK(hi == lo || at != HADDR_UNDEF, "HDF5 gave no address for a rank file tensor");
      rec.offsets[t] = hi == lo ? 0 : static_cast<uint64_t>(at);
    }
    DPT_CHECK_H5(H5Fflush(f.get(), H5F_SCOPE_LOCAL));
  }
  return rec;
}

void fill_rank_file(const std::string& path, const std::array<const float*, kStateTensors>& data,
                    RankFileRecord* rec) {
  RankFileIo io(path, /*write=*/true);
  DPT_CHECK_POSIX(io.fd());
  struct stat st {};
  DPT_CHECK_POSIX(::fstat(io.fd(), &st));
  const auto segs = segments_of(*rec, static_cast<uint64_t>(st.st_size));
  uint32_t crc = 0;
  std::vector<char> gap;
  for (const Segment& s : segs) {
    if (s.tensor < 0) {
      // HDF5's bytes, already on disk (zeros past the skeleton's end).
      gap.assign(s.bytes, 0);
      const uint64_t have = std::min<uint64_t>(
          s.bytes, static_cast<uint64_t>(st.st_size) - std::min<uint64_t>(s.offset, st.st_size));
      if (have > 0 && !pread_all(io.fd(), gap.data(), have, s.offset))
        throw RuntimeFailure("reading back " + path + " failed: " + errno_string(errno));
      crc = crc32c(gap.data(), gap.size(), crc);
      continue;
    }
    if (!io.write(s.offset, s.bytes, reinterpret_cast<const char*>(data[s.tensor]), &crc))
      throw RuntimeFailure("writing " + path + " failed: " + errno_string(errno) +
                           " (is the disk under --ckpt-dir full?)");
  }
  if (!io.sync()) throw RuntimeFailure("fsync of " + path + " failed: " + errno_string(errno));
  DPT_CHECK_POSIX(::fstat(io.fd(), &st));
  DPT_CHECK(static_cast<uint64_t>(st.st_size) == end_of(segs),
            path + " does not have the size its layout gives");
  if (!io.close()) throw RuntimeFailure("closing " + path + " failed: " + errno_string(errno));
  rec->bytes = end_of(segs);
  rec->crc32c = crc;
}

void read_rank_file(const std::string& path, const RankFileRecord& rec,
                    const std::array<float*, kStateTensors>& dst) {
  RankFileIo io(path, /*write=*/false);
  if (!io.opened()) damaged(path, "cannot be opened (" + errno_string(errno) + ")");
  struct stat st {};
  DPT_CHECK_POSIX(::fstat(io.fd(), &st));
  if (static_cast<uint64_t>(st.st_size) != rec.bytes)
    damaged(path, "has " + std::to_string(st.st_size) + " bytes where meta.h5 records " +
                      std::to_string(rec.bytes) +
                      (static_cast<uint64_t>(st.st_size) < rec.bytes ? " (truncated)" : ""));
  (void)::posix_fadvise(io.fd(), 0, 0, POSIX_FADV_SEQUENTIAL);
  const auto segs = segments_of(rec, rec.bytes);
  if (end_of(segs) != rec.bytes) damaged(path, "does not match the layout meta.h5 records");
  uint32_t crc = 0;
  for (const Segment& s : segs) {
    // Tensor data into place (through the aligned bounce buffer where the destination is not
    // page-aligned); HDF5's bytes through scratch, for the CRC only.
    char* out = s.tensor >= 0 && dst[s.tensor] != nullptr
                    ? reinterpret_cast<char*>(dst[s.tensor] + rec.lo)
                    : nullptr;
    if (!io.read(s.offset, s.bytes, out, &crc))
      damaged(path, "cannot be read (" + (errno ? errno_string(errno) : "unexpected end") + ")");
  }
  if (crc != rec.crc32c) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "fails its checksum (CRC-32C %08x, meta.h5 records %08x)", crc,
                  rec.crc32c);
    damaged(path, buf);
  }
}

void verify_file(const std::string& path, uint64_t bytes, uint32_t crc32c_want) {
  RankFileRecord whole;  // no tensors: the whole file is one structure segment
  whole.bytes = bytes;
  whole.crc32c = crc32c_want;
  read_rank_file(path, whole, {nullptr, nullptr, nullptr});
}

// ---- metadata ---------------------------------------------------------------------------------

void write_meta(const std::string& path, const CheckpointMeta& m) {
  datasets::h5_quiet();
  {
    H5Plist fapl = file_access_latest();
    H5File f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
    if (!f.valid())
      throw RuntimeFailure("cannot create " + path + " (" + datasets::h5_error_text() + ")");
    const hid_t root = f.get();
    for_each_root_field(m, [&](const char* name, const auto& v) {
      using T = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<T, std::string>) {
        datasets::h5_put_string_attr(root, name, v);
      } else {
        datasets::h5_put_attr<T>(root, name, v);
      }
    });

    // /tensors/<name>: offset and shape of each parameter tensor in the flat buffers.
    H5Plist gcpl(H5Pcreate(H5P_GROUP_CREATE));
    DPT_CHECK_H5(H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED));
    const hid_t tensors = H5Gcreate2(root, "tensors", H5P_DEFAULT, gcpl.get(), H5P_DEFAULT);
    DPT_CHECK_H5(tensors);
    for (const auto& t : m.tensors) {
      const hid_t g = H5Gcreate2(tensors, t.name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      DPT_CHECK_H5(g);
      datasets::h5_put_attr<uint64_t>(g, "offset", t.offset);
      datasets::h5_put_attr<uint64_t>(g, "shape",
                                      std::vector<uint64_t>(t.shape.begin(), t.shape.end()), false);
      H5Gclose(g);
    }
    H5Gclose(tensors);

    // /files/<rank_NNNNN.h5>: size, checksum, range and data offsets of each rank file.
    const hid_t files = H5Gcreate2(root, "files", H5P_DEFAULT, gcpl.get(), H5P_DEFAULT);
    DPT_CHECK_H5(files);
    for (const auto& r : m.files) {
      const hid_t g = H5Gcreate2(files, r.name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      DPT_CHECK_H5(g);
      datasets::h5_put_attr<uint64_t>(g, "bytes", r.bytes);
      datasets::h5_put_attr<uint32_t>(g, "crc32c", r.crc32c);
      datasets::h5_put_attr<uint64_t>(g, "lo", r.lo);
      datasets::h5_put_attr<uint64_t>(g, "hi", r.hi);
      datasets::h5_put_attr<uint64_t>(
          g, "offsets", std::vector<uint64_t>(r.offsets.begin(), r.offsets.end()), false);
      H5Gclose(g);
    }
    H5Gclose(files);
    const std::string text = canonical_text(m);
    datasets::h5_put_attr<uint32_t>(root, "meta_crc32c", crc32c(text.data(), text.size()));
    DPT_CHECK_H5(H5Fflush(f.get(), H5F_SCOPE_LOCAL));
  }
  fsync_path(path);
}

namespace {
// Names of a group's members in creation order.
std::vector<std::string> members(const MetaReader& r, hid_t group) {
  H5G_info_t info{};
  if (H5Gget_info(group, &info) < 0) r.fail("a group is unreadable");
  std::vector<std::string> out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n =
        H5Lget_name_by_idx(group, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) r.fail("a member name is unreadable");
    std::string name(static_cast<size_t>(n) + 1, '\0');
    H5Lget_name_by_idx(group, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name.data(), name.size(),
                       H5P_DEFAULT);
    name.resize(static_cast<size_t>(n));
    out.push_back(name);
  }
  return out;
}

struct Group {
  hid_t id;
  explicit Group(hid_t g) : id(g) {}
  ~Group() {
    if (id >= 0) H5Gclose(id);
  }
};
}  // namespace

CheckpointMeta read_meta(const std::string& path) {
  datasets::h5_quiet();
  MetaReader r{path};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw UsageError("checkpoint metadata " + path + " is missing (" + errno_string(errno) +
                     "): the checkpoint is incomplete or damaged; resume from an earlier one");
  H5Plist fapl(H5Pcreate(H5P_FILE_ACCESS));
  DPT_CHECK_H5(H5Pset_file_locking(fapl.get(), false, true));
  H5File f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!f.valid()) r.fail("cannot be opened as HDF5");
  const hid_t root = f.get();
  CheckpointMeta m;
  m.format_version = r.attr<int32_t>(root, "format_version");
  if (m.format_version != kCheckpointFormatVersion)
    throw UsageError("checkpoint metadata " + path + " has format version " +
                     std::to_string(m.format_version) + "; this build reads version " +
                     std::to_string(kCheckpointFormatVersion) +
                     ": resume with the build that saved it");
  for_each_root_field(m, [&](const char* name, auto& v) {
    using T = std::decay_t<decltype(v)>;
    if constexpr (std::is_same_v<T, std::string>) {
      v = r.string_attr(root, name);
    } else {
      v = r.attr<T>(root, name);
    }
  });
  {
    Group tensors(H5Gopen2(root, "tensors", H5P_DEFAULT));
    if (tensors.id < 0) r.fail("no group 'tensors'");
    for (const std::string& name : members(r, tensors.id)) {
      Group g(H5Gopen2(tensors.id, name.c_str(), H5P_DEFAULT));
      if (g.id < 0) r.fail("tensor '" + name + "' unreadable");
      TensorView t;
      t.name = name;
      t.offset = r.attr<uint64_t>(g.id, "offset");
      for (uint64_t d : r.attr_vec<uint64_t>(g.id, "shape"))
        t.shape.push_back(d);
      m.tensors.push_back(std::move(t));
    }
  }
  {
    Group files(H5Gopen2(root, "files", H5P_DEFAULT));
    if (files.id < 0) r.fail("no group 'files'");
    for (const std::string& name : members(r, files.id)) {
      Group g(H5Gopen2(files.id, name.c_str(), H5P_DEFAULT));
      if (g.id < 0) r.fail("file record '" + name + "' unreadable");
      RankFileRecord f;
      f.name = name;
      f.bytes = r.attr<uint64_t>(g.id, "bytes");
      f.crc32c = r.attr<uint32_t>(g.id, "crc32c");
      f.lo = r.attr<uint64_t>(g.id, "lo");
      f.hi = r.attr<uint64_t>(g.id, "hi");
      const auto off = r.attr_vec<uint64_t>(g.id, "offsets");
      if (off.size() != kStateTensors) r.fail("file record '" + name + "' has bad offsets");
      std::copy(off.begin(), off.end(), f.offsets.begin());
      m.files.push_back(std::move(f));
    }
  }
  const std::string text = canonical_text(m);
  if (crc32c(text.data(), text.size()) != r.attr<uint32_t>(root, "meta_crc32c"))
    throw UsageError("checkpoint metadata " + path +
                     " fails its checksum (meta_crc32c): the checkpoint is damaged; resume from "
                     "an earlier one (--resume auto falls back by itself)");
  // What the loaders rely on, checked once here.
  bool ok = m.world_size > 0 && m.files.size() == static_cast<size_t>(m.world_size) &&
            m.param_count > 0 && m.step >= 0;
  for (int i = 0; ok && i < m.world_size; ++i) {
    const auto& f = m.files[static_cast<size_t>(i)];
    ok = f.name == rank_file_name(i) &&
         f.lo == slice_begin(static_cast<uint64_t>(m.param_count), i, m.world_size) &&
         f.hi == slice_begin(static_cast<uint64_t>(m.param_count), i + 1, m.world_size);
  }
  if (!ok) r.fail("its rank files do not cover the state tensors");
  return m;
}

// ---- the checkpoint directory -----------------------------------------------------------------

std::vector<CheckpointEntry> list_checkpoints(const std::string& ckpt_dir) {
  std::vector<CheckpointEntry> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() < 13 || name.rfind("step_", 0) != 0) continue;
    const std::string digits = name.substr(5);
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 18) continue;
    if (!fs::is_regular_file(e.path() / kMetaFileName, ec)) continue;
    out.push_back({std::stoll(digits), e.path().string()});
  }
  std::sort(out.begin(), out.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step < b.step; });
  return out;
}

std::optional<int64_t> read_latest(const std::string& ckpt_dir) {
  std::ifstream in(ckpt_dir + "/" + kLatestFileName);
  std::string name;
  if (!(in >> name) || name.rfind("step_", 0) != 0) return std::nullopt;
  const std::string digits = name.substr(5);
  if (digits.empty() || digits.size() > 18 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return std::stoll(digits);
}

std::string partial_dir_path(const std::string& ckpt_dir, int64_t step) {
  // temp_suffix() is ".tmp.<host>.<pid>"; keep host and pid.
  return ckpt_dir + "/.partial." + step_dir_name(step) + temp_suffix().substr(4);
}

std::string publish_checkpoint(const std::string& ckpt_dir, const std::string& partial,
                               int64_t step) {
  fsync_directory(partial);
  const std::string final_path = ckpt_dir + "/" + step_dir_name(step);
  std::error_code ec;
  std::string stale;
  if (fs::exists(final_path, ec)) {
    // A checkpoint of the same step from an earlier attempt: moved aside, then removed, so
    // that at every moment the directory holds one complete version or none.
    stale = ckpt_dir + "/.partial.replaced." + step_dir_name(step) + temp_suffix().substr(4);
    DPT_CHECK_POSIX(::rename(final_path.c_str(), stale.c_str()));
  }
  DPT_CHECK_POSIX(::rename(partial.c_str(), final_path.c_str()));
  fsync_directory(ckpt_dir);
  std::string why;
  if (!write_file_atomic(ckpt_dir + "/" + kLatestFileName, step_dir_name(step) + "\n", &why))
    throw RuntimeFailure("updating " + ckpt_dir + "/latest: " + why);
  if (!stale.empty()) fs::remove_all(stale, ec);
  return final_path;
}

std::vector<std::string> prune_checkpoints(const std::string& ckpt_dir, int keep) {
  std::vector<std::string> removed;
  if (keep <= 0) return removed;
  const auto all = list_checkpoints(ckpt_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    fs::remove_all(all[i].path, ec);
    if (!ec) removed.push_back(all[i].path);
  }
  return removed;
}

std::vector<std::string> remove_partials(const std::string& ckpt_dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  std::vector<fs::path> victims;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec))
    if (e.path().filename().string().rfind(".partial.", 0) == 0) victims.push_back(e.path());
  for (const auto& p : victims) {
    fs::remove_all(p, ec);
    if (!ec) removed.push_back(p.string());
  }
  return removed;
}

}  // namespace dpt::trainer
