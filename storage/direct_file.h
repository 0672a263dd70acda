// [Direct I/O] A file opened twice: O_DIRECT for the page-aligned bulk of every transfer and
// buffered for the unaligned edges (and for whatever the caller interleaves, such as HDF5's own
// bytes). Bulk data so skips the page cache: no copy into it, no eviction of the training data's
// cached pages by gigabytes of checkpoint, and no first touch of fresh cache pages (which a VM
// may have to fault in from its host). Buffers that start on a page (storage/aligned.h) go
// straight to the device; others go through a bounce buffer. Where the file system refuses
// O_DIRECT (tmpfs at open, some others with EINVAL at the first transfer), the file continues
// buffered. Every transfer folds its bytes into a CRC-32C in file order.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "storage/aligned.h"

namespace dpt::storage {

// A move-only owner of a file descriptor; close errors in the destructor are ignored.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

class DirectFile {
 public:
  // Opens path read-only, or read-write when `write`; opened() says whether it worked (errno
  // tells why not).
  DirectFile(const std::string& path, bool write);
  bool opened() const { return buffered_.get() >= 0; }
  // The buffered descriptor, for reads that need no alignment.
  int fd() const { return buffered_.get(); }

  // Reads [off, off + n) into mem (null: into scratch, for checking only), folding the bytes
  // into *crc. False with errno set on failure (0 at an unexpected end of the file).
  bool read(uint64_t off, uint64_t n, char* mem, uint32_t* crc);
  // Writes [off, off + n) from mem, folding the bytes into *crc. False with errno set.
  bool write(uint64_t off, uint64_t n, const char* mem, uint32_t* crc);
  // Data written either way is durable once this returns true.
  bool sync();
  bool close();

 private:
  uint64_t piece(uint64_t off, uint64_t n) const;
  bool direct(uint64_t off, uint64_t len) const;
  char* scratch(uint64_t len);

  UniqueFd buffered_, direct_;
  PageAlignedVector<char> bounce_;
};

}  // namespace dpt::storage
