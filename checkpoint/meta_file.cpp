// meta.h5 ([Checkpoint layout]) through HDF5: every field of CheckpointMeta, checked by a CRC-32C
// of its canonical text.
#include "checkpoint/meta_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <vector>

#include "common/crash_note.h"
#include "common/crc32c.h"
#include "common/errors.h"
#include "storage/durable.h"
#include "storage/h5.h"

namespace dpt::checkpoint {

using storage::fsync_path;

using storage::H5Attr;
using storage::H5Dataset;
using storage::H5File;
using storage::H5Plist;
using storage::H5Space;
using storage::H5Type;

namespace {

// A whole file into *out; false with errno set on failure.
bool read_whole(const std::string& path, std::string* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0;
  if (ok) {
    out->resize(static_cast<size_t>(st.st_size));
    ok = storage::pread_all(fd, out->data(), out->size(), 0);
  }
  const int err = errno;
  ::close(fd);
  errno = err;
  return ok;
}

// ---- HDF5 attribute and dataset helpers for meta.h5 -------------------------------------------

struct MetaReader {
  std::string path;

  [[noreturn]] void fail(const std::string& what) const {
    throw UsageError("checkpoint metadata " + path + ": " + what + " (" + storage::h5_error_text() +
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
    if (n > 0 && H5Aread(a.get(), storage::h5_native<T>(), v.data()) < 0)
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

}  // namespace

// ---- metadata ---------------------------------------------------------------------------------

void write_meta(const std::string& path, const CheckpointMeta& m) {
  storage::h5_quiet();
  {
    H5Plist fapl = storage::h5_file_access_latest();
    H5File f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
    if (!f.valid())
      throw RuntimeFailure("cannot create " + path + " (" + storage::h5_error_text() + ")");
    const hid_t root = f.get();
    for_each_root_field(m, [&](const char* name, const auto& v) {
      using T = std::decay_t<decltype(v)>;
      if constexpr (std::is_same_v<T, std::string>) {
        storage::h5_put_string_attr(root, name, v);
      } else {
        storage::h5_put_attr<T>(root, name, v);
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
      storage::h5_put_attr<uint64_t>(g, "offset", t.offset);
      storage::h5_put_attr<uint64_t>(g, "shape",
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
      storage::h5_put_attr<uint64_t>(g, "bytes", r.bytes);
      storage::h5_put_attr<uint32_t>(g, "crc32c", r.crc32c);
      storage::h5_put_attr<uint64_t>(g, "lo", r.lo);
      storage::h5_put_attr<uint64_t>(g, "hi", r.hi);
      storage::h5_put_attr<uint64_t>(
          g, "offsets", std::vector<uint64_t>(r.offsets.begin(), r.offsets.end()), false);
      H5Gclose(g);
    }
    H5Gclose(files);
    const std::string text = canonical_text(m);
    storage::h5_put_attr<uint32_t>(root, "meta_crc32c", crc32c(text.data(), text.size()));
    DPT_CHECK_H5(H5Fflush(f.get(), H5F_SCOPE_LOCAL));
  }
  fsync_path(path);
  // [Meta checksum], written and synced before publication renames the directory.
  std::string bytes;
  if (!read_whole(path, &bytes))
    throw RuntimeFailure("reading back " + path + ": " + errno_string(errno));
  char line[64];
  std::snprintf(line, sizeof(line), "crc32c %08x bytes %zu\n", crc32c(bytes.data(), bytes.size()),
                bytes.size());
  const std::string sum = path + kMetaChecksumSuffix;
  if (std::string why; !storage::write_file_atomic(sum, line, &why))
    throw RuntimeFailure("writing " + sum + ": " + why);
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
  storage::h5_quiet();
  const CrashNote note("reading checkpoint metadata " + path,
                       "the HDF5 library crashed on it, so it is damaged: move its checkpoint "
                       "directory away and resume from an earlier one");
  MetaReader r{path};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw UsageError("checkpoint metadata " + path + " is missing (" + errno_string(errno) +
                     "): the checkpoint is incomplete or damaged; resume from an earlier one");
  H5Plist fapl(H5Pcreate(H5P_FILE_ACCESS));
  DPT_CHECK_H5(H5Pset_file_locking(fapl.get(), false, true));
  // [Meta checksum] HDF5 parses only bytes that match their checksum: the library does not
  // survive every malformed file (fuzzing HDF5 1.10.8 crashes it on damaged link tables), so a
  // damaged meta.h5 is refused before HDF5 sees it, and HDF5 reads the checked bytes from
  // memory, not the file again. Checkpoints saved before the checksum existed have none and
  // are read from the file as before.
  std::string image;
  if (const std::string sum = path + kMetaChecksumSuffix; ::access(sum.c_str(), F_OK) == 0) {
    std::string line;
    unsigned crc = 0;
    size_t bytes = 0;
    if (!read_whole(sum, &line) ||
        std::sscanf(line.c_str(), "crc32c %8x bytes %zu", &crc, &bytes) != 2)
      r.fail("its checksum file " + sum + " is unreadable");
    if (!read_whole(path, &image)) r.fail("cannot be read (" + errno_string(errno) + ")");
    if (image.size() != bytes || crc32c(image.data(), image.size()) != crc) {
      throw UsageError("checkpoint metadata " + path + " fails its file checksum (" + sum +
                       "): the checkpoint is damaged; resume from an earlier one (--resume auto "
                       "falls back by itself)");
    }
    DPT_CHECK_H5(H5Pset_fapl_core(fapl.get(), 64 << 10, false));
    DPT_CHECK_H5(H5Pset_file_image(fapl.get(), image.data(), image.size()));
  }
  // An image is opened under a name of its own: HDF5 would take the file's name for a file it
  // already knows.
  const std::string name = image.empty() ? path : path + " (checked image)";
  H5File f(H5Fopen(name.c_str(), H5F_ACC_RDONLY, fapl.get()));
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
  // A rank file is a plain name inside the checkpoint directory; a record that leads out of it
  // (a "..", or a name the loaders would join into another path) is refused before any file is
  // opened, whatever its checksum says.
  for (const RankFileRecord& f : m.files) {
    if (f.name.empty() || f.name == "." || f.name == ".." ||
        f.name.find_first_of(std::string("/\\\0", 3)) != std::string::npos) {
      throw UsageError("checkpoint metadata " + path + ": file record '" + f.name +
                       "' names a path outside the checkpoint directory (a checkpoint's files are "
                       "rank_NNNNN.h5 beside meta.h5): the metadata was damaged or edited; "
                       "resume from an earlier checkpoint");
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

}  // namespace dpt::checkpoint
