// [Direct I/O]: transfers split into an unaligned head, whole pages through O_DIRECT, and a tail.
#include "storage/direct_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/crc32c.h"
#include "storage/durable.h"

namespace dpt::storage {

namespace {

constexpr uint64_t kA = kPageAlign;
constexpr uint64_t kIoPiece = uint64_t{64} << 20;  // bytes per pread/pwrite: bounded, still large

bool aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % kA == 0;
}

}  // namespace

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

DirectFile::DirectFile(const std::string& path, bool write) {
  const int mode = write ? O_RDWR : O_RDONLY;
  buffered_ = UniqueFd(::open(path.c_str(), mode | O_CLOEXEC));
  if (buffered_.get() >= 0) direct_ = UniqueFd(::open(path.c_str(), mode | O_CLOEXEC | O_DIRECT));
}

bool DirectFile::read(uint64_t off, uint64_t n, char* mem, uint32_t* crc) {
  while (n > 0) {
    const uint64_t len = piece(off, n);
    char* to = mem;
    bool done = false;
    if (direct(off, len)) {
      to = mem && aligned(mem) ? mem : scratch(len);
      done = pread_all(direct_.get(), to, len, off);
      if (done && mem && to != mem) std::memcpy(mem, to, len);
      if (!done && errno != EINVAL) return false;
      if (!done) {
        direct_ = UniqueFd();  // refused mid-file: buffered from here on
        to = mem;
      }
    }
    if (!done) {
      if (!to) to = scratch(len);
      if (!pread_all(buffered_.get(), to, len, off)) return false;
    }
    *crc = crc32c(to, len, *crc);
    off += len;
    n -= len;
    if (mem) mem += len;
  }
  return true;
}

bool DirectFile::write(uint64_t off, uint64_t n, const char* mem, uint32_t* crc) {
  while (n > 0) {
    const uint64_t len = piece(off, n);
    *crc = crc32c(mem, len, *crc);
    bool done = false;
    if (direct(off, len)) {
      const char* from = mem;
      if (!aligned(mem)) from = static_cast<char*>(std::memcpy(scratch(len), mem, len));
      done = pwrite_all(direct_.get(), from, len, off);
      if (!done && errno != EINVAL) return false;
      if (!done) direct_ = UniqueFd();
    }
    if (!done && !pwrite_all(buffered_.get(), mem, len, off)) return false;
    off += len;
    n -= len;
    mem += len;
  }
  return true;
}

bool DirectFile::sync() {
  return ::fsync(buffered_.get()) == 0;
}

bool DirectFile::close() {
  direct_ = UniqueFd();
  return ::close(buffered_.release()) == 0;
}

// The next transfer: up to the next page boundary (a head), whole pages (direct), or the rest
// (a tail shorter than a page, or anything when direct I/O is off).
uint64_t DirectFile::piece(uint64_t off, uint64_t n) const {
  if (direct_.get() < 0) return std::min<uint64_t>(n, kIoPiece);
  if (off % kA != 0) return std::min<uint64_t>(n, kA - off % kA);
  if (n < kA) return n;
  return std::min<uint64_t>(kIoPiece, n - n % kA);
}

bool DirectFile::direct(uint64_t off, uint64_t len) const {
  return direct_.get() >= 0 && off % kA == 0 && len % kA == 0;
}

char* DirectFile::scratch(uint64_t len) {
  if (bounce_.size() < len) bounce_.resize(len);  // at most kIoPiece; grows to what is used
  return bounce_.data();
}

}  // namespace dpt::storage
