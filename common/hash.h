// 64-bit FNV-1a over bytes: the fingerprint that ranks compare to prove identical parameters.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dpt {

inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace dpt
