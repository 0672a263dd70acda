// Page-aligned storage: buffers handed to O_DIRECT reads and writes must start on a multiple of
// the device's logical block size, which a page (4096 bytes) covers on the usual devices.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace dpt::storage {

inline constexpr size_t kPageAlign = 4096;

template <class T>
struct PageAlignedAllocator {
  using value_type = T;
  PageAlignedAllocator() = default;
  template <class U>
  PageAlignedAllocator(const PageAlignedAllocator<U>&) noexcept {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{kPageAlign}));
  }
  void deallocate(T* p, size_t) noexcept { ::operator delete (p, std::align_val_t{kPageAlign}); }
  template <class U>
  bool operator==(const PageAlignedAllocator<U>&) const noexcept {
    return true;
  }
};

template <class T>
using PageAlignedVector = std::vector<T, PageAlignedAllocator<T>>;

}  // namespace dpt::storage
