// The checks every shard reader shares ([Shard format], [Sample format]): opening a file the way
// a user fixes problems (exists, readable, HDF5, not truncated or locked), typed lookups of
// datasets and attributes, and one-line UsageErrors "shard PATH: WHAT (HDF5: DETAIL); FIX".
// Every call is an HDF5 call: [HDF5 thread].
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>

#include "storage/h5.h"

namespace dpt::datasets::h5check {

// The fix for a shard that breaks the format.
inline constexpr const char* kRewrite =
    "rewrite it with prepare-data or as docs/data-format.md shows";

// s with its line breaks turned into spaces.
std::string one_line(std::string s);
// Throws UsageError("shard PATH: WHAT (HDF5: DETAIL); FIX") on one line.
[[noreturn]] void reject(const std::string& path, const std::string& what, const std::string& fix,
                         const std::string& h5_detail = {});
// An HDF5 call failed on a file that opened: its structures are damaged (or the file was cut
// short in a way the open did not notice). Call right after the failing call.
[[noreturn]] void damaged(const std::string& path, const std::string& what);

std::string int_type_name(bool is_signed, size_t bytes);  // "uint16"
std::string class_name(H5T_class_t c);                    // "floating-point"
std::string shape_text(hid_t space);                      // "shape (3, 4)"

// /name as a dataset, or an invalid handle when the link does not exist; anything else there
// (a group, a broken link) is rejected with `fix`, and so is a dataset whose data lives in
// another file ([Foreign data] in h5_checks.cpp).
storage::H5Dataset open_dataset(const std::string& path, hid_t file, const char* name,
                                const std::string& fix);
// A required scalar integer attribute of the root group; `fix` says how to add a good one.
int64_t read_int_attr(const std::string& path, hid_t file, const char* name,
                      const std::string& fix);
// [Stored data] A dataset must store every element it declares: HDF5 reads chunks that were
// never written (and a contiguous dataset never allocated) as fill values, so a file of a few
// KB could declare a trillion tokens and keep the validator scanning fill for hours (fuzzing
// found one). Refused: a chunked dataset with fewer chunks stored than its shape needs, a
// contiguous one with less storage than its elements, and unfiltered data larger than the file.
void require_stored(const std::string& path, hid_t dset, const std::string& obj,
                    uint64_t file_size);

// [Crash note] for the HDF5 calls on a shard: names the file when the library crashes on it.
std::string crash_fix();

// Opens path read-only with a shared lock, after the checks a user fixes in order; `size` is
// its size in bytes from stat(2).
storage::H5File open_shard_file(const std::string& path, uint64_t size);

}  // namespace dpt::datasets::h5check
