// RAII handles for HDF5 identifiers, DPT_CHECK_H5 and typed attribute helpers: what the token
// shards (datasets/) and the checkpoint files (checkpoint/) share. Internal to those folders:
// their public headers do not include <hdf5.h>.
//
// [HDF5 thread] HDF5 gives no concurrency, even in its thread-safe build, so every HDF5 call of
// a process is made by one thread at a time: the training reader makes them all on its I/O
// thread (io_thread.h), prepare-data on its writer thread.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/errors.h"

// An HDF5 call that returns a negative herr_t or hid_t on failure.
#define DPT_CHECK_H5(call) \
  DPT_CHECK_GEN("HDF5", call, _dpt_rc >= 0, ::dpt::storage::h5_error_text())

namespace dpt::storage {

// A move-only owner of one hid_t, closed with Close (H5Fclose, H5Dclose, ...). A failed close
// in the destructor is ignored: destructors never throw.
template <herr_t (*Close)(hid_t)>
class H5Handle {
 public:
  H5Handle() = default;
  explicit H5Handle(hid_t id) : id_(id) {}
  H5Handle(H5Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
  H5Handle& operator=(H5Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0) Close(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using H5File = H5Handle<H5Fclose>;
using H5Dataset = H5Handle<H5Dclose>;
using H5Space = H5Handle<H5Sclose>;
using H5Type = H5Handle<H5Tclose>;
using H5Plist = H5Handle<H5Pclose>;
using H5Attr = H5Handle<H5Aclose>;

// Switches off HDF5's printing of its error stack to stderr (once per process): our messages
// say what failed; h5_error_text() carries HDF5's own words into them.
void h5_quiet();

// The innermost and outermost descriptions on the current thread's HDF5 error stack, joined
// into one line ("" when the stack is empty).
std::string h5_error_text();

// The HDF5 types of a C++ integer or float type: in memory (native) and in a file
// (little-endian, as every file of ours stores numbers).
template <typename T>
hid_t h5_native() {
  if constexpr (std::is_same_v<T, uint8_t>) return H5T_NATIVE_UINT8;
  if constexpr (std::is_same_v<T, int8_t>) return H5T_NATIVE_INT8;
  if constexpr (std::is_same_v<T, uint16_t>) return H5T_NATIVE_UINT16;
  if constexpr (std::is_same_v<T, int16_t>) return H5T_NATIVE_INT16;
  if constexpr (std::is_same_v<T, uint32_t>) return H5T_NATIVE_UINT32;
  if constexpr (std::is_same_v<T, int32_t>) return H5T_NATIVE_INT32;
  if constexpr (std::is_same_v<T, uint64_t>) return H5T_NATIVE_UINT64;
  if constexpr (std::is_same_v<T, int64_t>) return H5T_NATIVE_INT64;
  if constexpr (std::is_same_v<T, float>) return H5T_NATIVE_FLOAT;
  if constexpr (std::is_same_v<T, double>) return H5T_NATIVE_DOUBLE;
}
template <typename T>
hid_t h5_little_endian() {
  if constexpr (std::is_same_v<T, uint8_t>) return H5T_STD_U8LE;
  if constexpr (std::is_same_v<T, int8_t>) return H5T_STD_I8LE;
  if constexpr (std::is_same_v<T, uint16_t>) return H5T_STD_U16LE;
  if constexpr (std::is_same_v<T, int16_t>) return H5T_STD_I16LE;
  if constexpr (std::is_same_v<T, uint32_t>) return H5T_STD_U32LE;
  if constexpr (std::is_same_v<T, int32_t>) return H5T_STD_I32LE;
  if constexpr (std::is_same_v<T, uint64_t>) return H5T_STD_U64LE;
  if constexpr (std::is_same_v<T, int64_t>) return H5T_STD_I64LE;
  if constexpr (std::is_same_v<T, float>) return H5T_IEEE_F32LE;
  if constexpr (std::is_same_v<T, double>) return H5T_IEEE_F64LE;
}

// Creates attribute `name` on `loc`: a 1-D array of v, or its single element as a scalar.
template <typename T>
void h5_put_attr(hid_t loc, const char* name, const std::vector<T>& v, bool scalar) {
  const hsize_t n[1] = {v.size()};
  H5Space space(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, n, nullptr));
  DPT_CHECK_H5(space.get());
  H5Attr a(H5Acreate2(loc, name, h5_little_endian<T>(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  DPT_CHECK_H5(a.get());
  if (!v.empty()) DPT_CHECK_H5(H5Awrite(a.get(), h5_native<T>(), v.data()));
}
template <typename T>
void h5_put_attr(hid_t loc, const char* name, T value) {
  h5_put_attr<T>(loc, name, std::vector<T>{value}, true);
}
// File access for files of our own making: the newest format (checksums on HDF5's own metadata,
// dense storage for many attributes) and no file locking (NFS and Lustre refuse it).
H5Plist h5_file_access_latest();

// A scalar fixed-length string attribute (h5py reads it as bytes).
void h5_put_string_attr(hid_t loc, const char* name, const std::string& value);

}  // namespace dpt::storage
