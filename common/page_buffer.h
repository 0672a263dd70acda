// A zero-filled array in anonymous pages of its own (mmap), whose whole pages can be given back
// to the kernel while the array lives: they read as zero again and cost no memory until
// written. The sharded gradient of [ZeRO] stage 2 keeps only the pages of the buckets in flight.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/errors.h"

// glibc declares it from 2.35; the kernel has it from 5.14 and answers EINVAL before.
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace dpt {

template <typename T>
class PageBuffer {
 public:
  PageBuffer() = default;
  explicit PageBuffer(size_t n) : size_(n) {
    if (n == 0) return;
    void* p =
        ::mmap(nullptr, n * sizeof(T), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      throw RuntimeFailure("mmap of " + std::to_string(n * sizeof(T)) +
                           " bytes failed: " + errno_string(errno));
    }
    data_ = static_cast<T*>(p);
  }
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  PageBuffer(PageBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        in_core_(std::move(o.in_core_)),
        populate_works_(o.populate_works_) {}
  PageBuffer& operator=(PageBuffer&& o) noexcept {
    if (this != &o) {
      unmap();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      in_core_ = std::move(o.in_core_);
      populate_works_ = o.populate_works_;
    }
    return *this;
  }
  ~PageBuffer() { unmap(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }

  // Gives back every whole page inside elements [first, first + count): those elements read as
  // zero afterwards; the elements of pages shared with neighbours keep their values. Returns
  // the bytes given back.
  size_t release(size_t first, size_t count) {
    DPT_CHECK(first <= size_ && count <= size_ - first, "PageBuffer::release out of range");
    const size_t page = page_bytes();
    const uintptr_t base = reinterpret_cast<uintptr_t>(data_);
    const uintptr_t lo = (base + first * sizeof(T) + page - 1) / page * page;
    // The last element's page is whole when the range reaches the mapping's end.
    const uintptr_t end_bytes = base + (first + count) * sizeof(T);
    const uintptr_t hi =
        first + count == size_ ? (end_bytes + page - 1) / page * page : end_bytes / page * page;
    if (hi <= lo) return 0;
    DPT_CHECK_POSIX(::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED));
    return hi - lo;
  }

  // Backs every page that holds an element of [first, first + count) with memory now, zeroed
  // where it was given back (MADV_POPULATE_WRITE, Linux 5.14): one call instead of a fault per
  // page, and a read-modify-write of a given-back page (the zero page, then a copy) faulting
  // twice. A kernel without it leaves the pages to fault as they are touched.
  void populate(size_t first, size_t count) {
    DPT_CHECK(first <= size_ && count <= size_ - first, "PageBuffer::populate out of range");
    if (count == 0 || !populate_works_) return;
    const size_t page = page_bytes();
    const uintptr_t base = reinterpret_cast<uintptr_t>(data_);
    const uintptr_t lo = (base + first * sizeof(T)) / page * page;
    const uintptr_t hi = (base + (first + count) * sizeof(T) + page - 1) / page * page;
    if (::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_WRITE) != 0) {
      const int err = errno;
      if (err != EINVAL)
        throw RuntimeFailure("madvise(MADV_POPULATE_WRITE) of " + std::to_string(hi - lo) +
                             " bytes failed: " + errno_string(err));
      populate_works_ = false;  // before Linux 5.14
    }
  }

  // Bytes of the array's pages, resident or not.
  size_t mapped_bytes() const {
    const size_t page = page_bytes();
    return (size_ * sizeof(T) + page - 1) / page * page;
  }

  // Bytes of the array's pages that hold memory now (mincore): written and not given back.
  // The first call allocates a byte per page, which later calls reuse.
  size_t resident_bytes() {
    if (size_ == 0) return 0;
    const size_t page = page_bytes();
    in_core_.resize((size_ * sizeof(T) + page - 1) / page);
    DPT_CHECK_POSIX(::mincore(data_, size_ * sizeof(T), in_core_.data()));
    size_t resident = 0;
    for (unsigned char c : in_core_)
      resident += c & 1u;
    return resident * page;
  }

  static size_t page_bytes() { return static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }

 private:
  void unmap() noexcept {
    if (data_) ::munmap(data_, size_ * sizeof(T));
    data_ = nullptr;
    size_ = 0;
  }
  T* data_ = nullptr;
  size_t size_ = 0;
  std::vector<unsigned char> in_core_;  // resident_bytes()'s scratch
  bool populate_works_ = true;
};

}  // namespace dpt
