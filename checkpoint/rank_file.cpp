// Rank files ([Checkpoint layout]): an HDF5 skeleton made by HDF5, its tensor data written with
// pwrite through [Direct I/O], and read back in one verified pass.
#include "checkpoint/rank_file.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/crc32c.h"
#include "common/errors.h"
#include "storage/aligned.h"
#include "storage/direct_file.h"
#include "storage/durable.h"
#include "storage/h5.h"

namespace dpt::checkpoint {

namespace fs = std::filesystem;

using storage::kPageAlign;
using storage::pread_all;

using storage::H5Attr;
using storage::H5Dataset;
using storage::H5File;
using storage::H5Plist;
using storage::H5Space;
using storage::H5Type;

static_assert(std::endian::native == std::endian::little,
              "rank files store little-endian float32 written straight from memory");

namespace {

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

[[noreturn]] void damaged(const std::string& path, const std::string& what) {
  throw UsageError("checkpoint file " + path + " " + what +
                   ": the checkpoint is damaged; resume from an earlier one (--resume auto "
                   "falls back by itself) or restore the file");
}

}  // namespace

// ---- rank files -----------------------------------------------------------------------------

RankFileRecord create_rank_file(const std::string& path, int rank, uint64_t lo, uint64_t hi,
                                int64_t step) {
  storage::h5_quiet();
  RankFileRecord rec;
  rec.name = fs::path(path).filename().string();
  rec.lo = lo;
  rec.hi = hi;
  {
    H5Plist fapl = storage::h5_file_access_latest();
    // Each tensor's data on a page boundary, for O_DIRECT ([Direct I/O]).
    DPT_CHECK_H5(H5Pset_alignment(fapl.get(), kPageAlign, kPageAlign));
    H5File f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()));
    if (!f.valid())
      throw RuntimeFailure("cannot create checkpoint file " + path + " (" +
                           storage::h5_error_text() + "): check that --ckpt-dir is writable");
    storage::h5_put_attr<int32_t>(f.get(), "rank", rank);
    storage::h5_put_attr<int64_t>(f.get(), "step", step);
    storage::h5_put_attr<uint64_t>(f.get(), "lo", lo);
    storage::h5_put_attr<uint64_t>(f.get(), "hi", hi);
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
  storage::DirectFile io(path, /*write=*/true);
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
  storage::DirectFile io(path, /*write=*/false);
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

}  // namespace dpt::checkpoint
