// Counter-based random numbers: a value depends only on (seed, stream, index), never on how
// many draws came before. That is what lets every rank, and a resumed run, reproduce any
// sample order or initial weight without replaying a generator.
#pragma once

#include <cmath>
#include <cstdint>

namespace dpt {

// SplitMix64 finalizer (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The index-th 64-bit value of stream `stream` under `seed`.
inline uint64_t random_u64(uint64_t seed, uint64_t stream, uint64_t index) {
  return mix64(mix64(mix64(seed) ^ stream) ^ index);
}

// Uniform in [0, 1) with 53 random bits.
inline double random_unit(uint64_t seed, uint64_t stream, uint64_t index) {
  return static_cast<double>(random_u64(seed, stream, index) >> 11) * 0x1.0p-53;
}

// Standard normal by Box-Muller from two counter draws (indices 2i and 2i+1).
inline double random_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  const double u1 = 1.0 - random_unit(seed, stream, 2 * index);  // (0, 1]
  const double u2 = random_unit(seed, stream, 2 * index + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// Uniform integer in [0, bound) without modulo bias (Lemire 2019), drawing further counter
// values of the same stream when a draw is rejected. `*index` advances past what was used.
__extension__ typedef unsigned __int128 uint128_t;  // GCC/Clang extension, 64x64->128 product

inline uint64_t random_below(uint64_t seed, uint64_t stream, uint64_t* index, uint64_t bound) {
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint128_t m = static_cast<uint128_t>(random_u64(seed, stream, (*index)++)) * bound;
    if (static_cast<uint64_t>(m) >= threshold) return static_cast<uint64_t>(m >> 64);
  }
}

}  // namespace dpt
