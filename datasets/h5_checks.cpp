// The checks shared by the shard readers ([Shard format], [Sample format]).
#include "datasets/h5_checks.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "common/errors.h"

namespace dpt::datasets::h5check {

using storage::h5_error_text;
using storage::H5Attr;
using storage::H5Dataset;
using storage::H5File;
using storage::H5Handle;
using storage::H5Plist;
using storage::H5Space;
using storage::H5Type;

namespace {
using H5Object = H5Handle<H5Oclose>;
}  // namespace

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

// "shard PATH: WHAT (HDF5: DETAIL); FIX", on one line.
[[noreturn]] void reject(const std::string& path, const std::string& what, const std::string& fix,
                         const std::string& h5_detail) {
  std::string msg = "shard " + path + ": " + what;
  if (!h5_detail.empty()) msg += " (HDF5: " + h5_detail + ")";
  msg += "; " + fix;
  throw UsageError(one_line(std::move(msg)));
}

// An HDF5 call failed on a file that opened: its structures are damaged (or the file was cut
// short in a way the open did not notice). Call right after the failing call, before any other
// HDF5 call clears the error stack.
[[noreturn]] void damaged(const std::string& path, const std::string& what) {
  reject(path, what + " failed: the file is damaged or truncated",
         "copy it again or re-create it with prepare-data", h5_error_text());
}

std::string int_type_name(bool is_signed, size_t bytes) {
  return std::string(is_signed ? "int" : "uint") + std::to_string(bytes * 8);
}

std::string class_name(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER:
      return "integer";
    case H5T_FLOAT:
      return "floating-point";
    case H5T_STRING:
      return "string";
    case H5T_BITFIELD:
      return "bitfield";
    case H5T_OPAQUE:
      return "opaque";
    case H5T_COMPOUND:
      return "compound";
    case H5T_REFERENCE:
      return "reference";
    case H5T_ENUM:
      return "enum";
    case H5T_VLEN:
      return "variable-length";
    case H5T_ARRAY:
      return "array";
    default:
      return "unknown";
  }
}

std::string shape_text(hid_t space) {
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank <= 0) return "a scalar";
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  std::string s = "shape (";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")";
}

namespace {

// [Foreign data] A shard holds its own data. HDF5 can make a name in one file read bytes from
// another three ways: an external link (the name points into another HDF5 file), a virtual
// dataset (its elements are mapped from datasets in other files) and external storage (the raw
// data lives in plain files named by the dataset). Each would let a shard read whatever file
// its writer named, outside the dataset's directory and outside the checks, the checksums of
// the index and the fingerprint of a checkpoint, so each is refused before any data is read.
constexpr const char* kKeepInside =
    "a shard must hold its own data: copy the data into the shard (h5py: "
    "f.create_dataset(name, data=src[...])) instead of linking to it";

// The file an open object lives in, as HDF5 opened it.
std::string object_file_name(hid_t obj) {
  const ssize_t n = H5Fget_name(obj, nullptr, 0);
  if (n < 0) return {};
  std::string s(static_cast<size_t>(n) + 1, '\0');
  H5Fget_name(obj, s.data(), s.size());
  s.resize(static_cast<size_t>(n));
  return s;
}

// Refuses /name when its link leads out of the file: an external or user-defined link. Soft
// links stay inside the file by construction; where one leads to an external link, the file
// check after opening catches it.
void refuse_foreign_link(const std::string& path, hid_t file, const char* name,
                         const std::string& obj) {
  H5L_info_t link{};
  if (H5Lget_info(file, name, &link, H5P_DEFAULT) < 0) damaged(path, "looking up " + obj);
  if (link.type == H5L_TYPE_HARD || link.type == H5L_TYPE_SOFT) return;
  if (link.type != H5L_TYPE_EXTERNAL) {
    reject(path, obj + " is a user-defined link, which HDF5 resolves outside the file",
           kKeepInside);
  }
  std::string target = "another file";
  std::vector<char> val(link.u.val_size);
  unsigned flags = 0;
  const char* file_name = nullptr;
  const char* obj_path = nullptr;
  if (!val.empty() && H5Lget_val(file, name, val.data(), val.size(), H5P_DEFAULT) >= 0 &&
      H5Lunpack_elink_val(val.data(), val.size(), &flags, &file_name, &obj_path) >= 0) {
    target = std::string(file_name) + ":" + obj_path;
  }
  reject(path, obj + " is an external link to " + target, kKeepInside);
}

// Refuses a dataset whose elements live outside the file: a virtual dataset or one with
// external storage.
void refuse_foreign_storage(const std::string& path, hid_t dset, const std::string& obj) {
  H5Plist dcpl(H5Dget_create_plist(dset));
  if (!dcpl.valid()) damaged(path, "reading the storage of " + obj);
  if (H5Pget_layout(dcpl.get()) == H5D_VIRTUAL) {
    size_t count = 0;
    std::string source = "other datasets";
    if (H5Pget_virtual_count(dcpl.get(), &count) >= 0 && count > 0) {
      const ssize_t n = H5Pget_virtual_filename(dcpl.get(), 0, nullptr, 0);
      if (n > 0) {
        std::string s(static_cast<size_t>(n) + 1, '\0');
        H5Pget_virtual_filename(dcpl.get(), 0, s.data(), s.size());
        s.resize(static_cast<size_t>(n));
        source = s == "." ? std::string("datasets of the shard itself") : s;
      }
    }
    reject(path,
           obj + " is a virtual dataset mapping " + std::to_string(count) +
               " source(s), the first from " + source,
           kKeepInside);
  }
  const int external = H5Pget_external_count(dcpl.get());
  if (external < 0) damaged(path, "reading the storage of " + obj);
  if (external > 0) {
    char name[1024] = {};
    off_t offset = 0;
    hsize_t size = 0;
    std::string where = "other files";
    if (H5Pget_external(dcpl.get(), 0, sizeof(name) - 1, name, &offset, &size) >= 0) {
      where = name;
    }
    reject(path,
           obj + " keeps its data in " + std::to_string(external) +
               " external file(s), the first " + where,
           kKeepInside);
  }
}

}  // namespace

// Opens /name as an object and checks it is a dataset. Returns an invalid handle when the link
// does not exist, so the caller decides whether that is an error.
H5Dataset open_dataset(const std::string& path, hid_t file, const char* name,
                       const std::string& fix) {
  const std::string obj = std::string("/") + name;
  const htri_t exists = H5Lexists(file, name, H5P_DEFAULT);
  if (exists < 0) damaged(path, "looking up " + obj);
  if (exists == 0) return H5Dataset();
  refuse_foreign_link(path, file, name, obj);
  H5Object o(H5Oopen(file, name, H5P_DEFAULT));
  if (!o.valid()) {
    reject(path, obj + " is a link to an object that cannot be opened", fix, h5_error_text());
  }
  const H5I_type_t kind = H5Iget_type(o.get());
  if (kind != H5I_DATASET) {
    const char* what = kind == H5I_GROUP      ? "a group"
                       : kind == H5I_DATATYPE ? "a named type"
                                              : "not a dataset";
    reject(path, obj + " is " + std::string(what) + ", not a dataset", fix);
  }
  if (object_file_name(o.get()) != object_file_name(file)) {
    reject(path, obj + " leads to an object in another file, " + object_file_name(o.get()),
           kKeepInside);
  }
  H5Dataset d(H5Dopen2(file, name, H5P_DEFAULT));
  if (!d.valid()) damaged(path, "opening " + obj);
  refuse_foreign_storage(path, d.get(), obj);
  return d;
}

// A required integer attribute of the root group. `fix` says how to add a good one.
int64_t read_int_attr(const std::string& path, hid_t file, const char* name,
                      const std::string& fix) {
  const std::string obj = std::string("attribute ") + name + " of /";
  const htri_t exists = H5Aexists(file, name);
  if (exists < 0) damaged(path, "looking up " + obj);
  if (exists == 0) reject(path, "no " + std::string(name) + " attribute on /", fix);
  H5Attr attr(H5Aopen(file, name, H5P_DEFAULT));
  if (!attr.valid()) damaged(path, "opening " + obj);
  H5Type type(H5Aget_type(attr.get()));
  if (!type.valid()) damaged(path, "reading the type of " + obj);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_INTEGER) {
    reject(path, obj + " is of type " + class_name(cls) + ", not integer", fix);
  }
  H5Space space(H5Aget_space(attr.get()));
  if (!space.valid()) damaged(path, "reading the shape of " + obj);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n != 1) reject(path, obj + " holds " + std::to_string(n) + " values, not one", fix);
  int64_t value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &value) < 0) damaged(path, "reading " + obj);
  return value;
}

void require_stored(const std::string& path, hid_t dset, const std::string& obj,
                    uint64_t file_size) {
  H5Space space(H5Dget_space(dset));
  H5Type type(H5Dget_type(dset));
  H5Plist dcpl(H5Dget_create_plist(dset));
  if (!space.valid() || !type.valid() || !dcpl.valid())
    damaged(path, "reading the storage of " + obj);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) damaged(path, "reading the shape of " + obj);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  const size_t width = H5Tget_size(type.get());
  // Elements and bytes, saturating: a product past 2^64 is as wrong as any other too large one.
  uint64_t elements = 1;
  for (hsize_t d : dims)
    elements = d != 0 && elements > UINT64_MAX / d ? UINT64_MAX : elements * d;
  const uint64_t bytes =
      width != 0 && elements > UINT64_MAX / width ? UINT64_MAX : elements * width;
  if (elements == 0) return;
  const std::string fix =
      "write every element (h5py writes them all when it creates a dataset "
      "from an array), or " +
      std::string(kRewrite);
  const int nfilters = H5Pget_nfilters(dcpl.get());
  if (nfilters == 0 && bytes > file_size) {
    reject(path,
           obj + " declares " + std::to_string(elements) + " elements (" + std::to_string(bytes) +
               " bytes), more than the file's " + std::to_string(file_size) + " bytes hold",
           fix);
  }
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  if (layout == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(dims.size());
    if (H5Pget_chunk(dcpl.get(), rank, chunk.data()) < 0)
      damaged(path, "reading the chunks of " + obj);
    uint64_t need = 1;
    for (size_t i = 0; i < dims.size(); ++i) {
      const uint64_t along = chunk[i] == 0 ? 0 : (dims[i] + chunk[i] - 1) / chunk[i];
      need = along != 0 && need > UINT64_MAX / along ? UINT64_MAX : need * along;
    }
    hsize_t stored = 0;
    if (H5Dget_num_chunks(dset, space.get(), &stored) < 0)
      damaged(path, "counting the chunks of " + obj);
    if (stored < need) {
      reject(path,
             obj + " stores " + std::to_string(stored) + " of the " + std::to_string(need) +
                 " chunks its shape needs (the others would read as fill values)",
             fix);
    }
  } else if (layout == H5D_CONTIGUOUS && H5Dget_storage_size(dset) < bytes) {
    reject(path,
           obj + " stores " + std::to_string(H5Dget_storage_size(dset)) + " of its " +
               std::to_string(bytes) + " bytes (the rest would read as fill values)",
           fix);
  }
}

std::string crash_fix() {
  return "the HDF5 library crashed on this file, which must be malformed: re-create it with "
         "prepare-data or h5py, or remove it from the dataset";
}

// The file-level checks, in the order a user fixes them: exists, is a file, readable, HDF5.
H5File open_shard_file(const std::string& path, uint64_t size) {
  {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      reject(path, "unreadable: " + errno_string(errno),
             "make it readable by this user (chmod a+r) or point the dataset elsewhere");
    }
    ::close(fd);
  }
  const std::string not_hdf5_fix =
      "shards are HDF5 files: convert text or token files with prepare-data, or write them as "
      "docs/data-format.md shows";
  if (size == 0) reject(path, "empty file (0 bytes), not an HDF5 file", not_hdf5_fix);
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 == 0) reject(path, "not an HDF5 file (no HDF5 signature)", not_hdf5_fix);
  if (is_hdf5 < 0) {
    reject(path, "cannot be checked for an HDF5 signature", not_hdf5_fix, h5_error_text());
  }

  H5Plist fapl(H5Pcreate(H5P_FILE_ACCESS));
  DPT_CHECK_H5(fapl.get());
  // A shared lock keeps us from reading a shard while prepare-data still writes it; on file
  // systems without locks (some Lustre and NFS mounts) go on without one.
  DPT_CHECK_H5(H5Pset_file_locking(fapl.get(), true, true));
  H5File file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  if (!file.valid()) {
    const std::string detail = h5_error_text();
    if (detail.find("truncated") != std::string::npos) {
      reject(path, "truncated: its HDF5 header describes a larger file",
             "the copy or write was cut short: copy it again or re-create it with prepare-data",
             detail);
    }
    if (detail.find("lock") != std::string::npos) {
      reject(path, "locked by another process (is it still being written?)",
             "wait for the writer to finish, or set HDF5_USE_FILE_LOCKING=FALSE if the lock is "
             "stale",
             detail);
    }
    reject(path, "damaged: it has an HDF5 signature but HDF5 cannot open it",
           "copy it again or re-create it with prepare-data", detail);
  }
  return file;
}

}  // namespace dpt::datasets::h5check
