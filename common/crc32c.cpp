// CRC-32C ([CRC-32C contract] in crc32c.h): a slicing-by-8 table version for any CPU and, on
// x86-64 with SSE4.2, a version that runs the crc32 instruction on three streams at once.
//
// [CRC-32C state algebra]
// Inside this file a CRC is handled as its raw register state s = ~crc, a polynomial over GF(2)
// with x^0 in bit 31 and x^31 in bit 0 (the reflected convention of the crc32 instruction).
// Feeding bytes D to a register holding s gives  s * x^(8|D|) + R(D)  (mod P), where R(D) is what
// D alone gives from a zero register. So three consecutive blocks A, B, C of L bytes each can be
// fed to three registers at once (A from s, B and C from 0) and joined afterwards:
//   s_ABC = ((s_A * x^8L + s_B) * x^8L + s_C)  (mod P).
// Multiplying by the constant x^8L is linear in s, so it is four table lookups, one per byte of
// s (kShiftLong, kShiftShort below).
#include "common/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DPT_CRC32C_X86 1
#include <nmmintrin.h>
#endif

namespace dpt {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // 0x1EDC6F41 reflected
constexpr uint32_t kOne = 0x80000000u;   // the polynomial 1 (x^0) in the reflected convention

using Table = std::array<uint32_t, 256>;

// a * b mod P, both reflected.
constexpr uint32_t multiply_mod(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (uint32_t bit = kOne; bit != 0; bit >>= 1) {
    if (a & bit) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;  // b *= x
  }
  return product;
}

// x^(8 * n_bytes) mod P, by square-and-multiply.
constexpr uint32_t x_pow_bytes(uint64_t n_bytes) {
  uint32_t result = kOne;
  uint32_t base = kOne >> 1;  // x^1
  for (uint64_t e = 8 * n_bytes; e != 0; e >>= 1) {
    if (e & 1) result = multiply_mod(result, base);
    base = multiply_mod(base, base);
  }
  return result;
}

// kSlice[k][b]: the register after byte b followed by k zero bytes, from a zero register.
constexpr std::array<Table, 8> make_slice_tables() {
  std::array<Table, 8> t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t s = b;
    for (int bit = 0; bit < 8; ++bit)
      s = (s & 1) ? (s >> 1) ^ kPoly : s >> 1;
    t[0][b] = s;
  }
  for (int k = 1; k < 8; ++k) {
    for (uint32_t b = 0; b < 256; ++b)
      t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
  }
  return t;
}

constexpr std::array<Table, 8> kSlice = make_slice_tables();

// Reads 8 bytes as a little-endian integer (the order in which CRC-32C consumes them) on any
// host; compilers turn this into one load on little-endian machines.
inline uint64_t load_le64(const unsigned char* p) {
  uint64_t w = 0;
  for (int i = 7; i >= 0; --i)
    w = (w << 8) | p[i];
  return w;
}

uint32_t portable_state(const unsigned char* p, size_t n, uint32_t s) {
  for (; n >= 8; p += 8, n -= 8) {
    const uint64_t w = load_le64(p) ^ s;
    s = kSlice[7][w & 0xff] ^ kSlice[6][(w >> 8) & 0xff] ^ kSlice[5][(w >> 16) & 0xff] ^
        kSlice[4][(w >> 24) & 0xff] ^ kSlice[3][(w >> 32) & 0xff] ^ kSlice[2][(w >> 40) & 0xff] ^
        kSlice[1][(w >> 48) & 0xff] ^ kSlice[0][w >> 56];
  }
  for (; n > 0; ++p, --n)
    s = (s >> 8) ^ kSlice[0][(s ^ *p) & 0xff];
  return s;
}

#ifdef DPT_CRC32C_X86

// Stream lengths of the three-way split ([CRC-32C state algebra]). Long blocks make the join
// negligible; short blocks keep medium inputs (768 B to 24 KiB) on three streams too.
constexpr size_t kLongStream = 8192;
constexpr size_t kShortStream = 256;

// kShift[k][b] = (b << 8k) * x^(8 * stream_bytes) mod P: shifting a register past that many
// zero bytes, one lookup per register byte.
constexpr std::array<Table, 4> make_shift_tables(size_t stream_bytes) {
  const uint32_t x_pow = x_pow_bytes(stream_bytes);
  std::array<Table, 4> t{};
  for (int k = 0; k < 4; ++k) {
    for (uint32_t b = 0; b < 256; ++b)
      t[k][b] = multiply_mod(b << (8 * k), x_pow);
  }
  return t;
}

constexpr std::array<Table, 4> kShiftLong = make_shift_tables(kLongStream);
constexpr std::array<Table, 4> kShiftShort = make_shift_tables(kShortStream);

inline uint64_t shift(const std::array<Table, 4>& t, uint64_t s) {
  return t[0][s & 0xff] ^ t[1][(s >> 8) & 0xff] ^ t[2][(s >> 16) & 0xff] ^ t[3][s >> 24];
}

inline uint64_t load64(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// Feeds 3 * kStream bytes at *p to register s: three independent crc32 chains hide the
// instruction's 3-cycle latency, then the registers are joined.
template <size_t kStream>
__attribute__((target("sse4.2"))) inline uint64_t three_streams(const unsigned char** p, uint64_t s,
                                                                const std::array<Table, 4>& t) {
  const unsigned char* a = *p;
  const unsigned char* const end = a + kStream;
  uint64_t s1 = 0, s2 = 0;
  for (; a < end; a += 8) {
    s = _mm_crc32_u64(s, load64(a));
    s1 = _mm_crc32_u64(s1, load64(a + kStream));
    s2 = _mm_crc32_u64(s2, load64(a + 2 * kStream));
  }
  *p += 3 * kStream;
  s = shift(t, s) ^ s1;
  return shift(t, s) ^ s2;
}

__attribute__((target("sse4.2"))) uint32_t sse42_state(const unsigned char* p, size_t n,
                                                       uint32_t state) {
  uint64_t s = state;
  // Align the loads to 8 bytes, so that none of them straddles a cache line.
  for (; n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0; ++p, --n) {
    s = _mm_crc32_u8(static_cast<uint32_t>(s), *p);
  }
  for (; n >= 3 * kLongStream; n -= 3 * kLongStream) {
    s = three_streams<kLongStream>(&p, s, kShiftLong);
  }
  for (; n >= 3 * kShortStream; n -= 3 * kShortStream) {
    s = three_streams<kShortStream>(&p, s, kShiftShort);
  }
  for (; n >= 8; p += 8, n -= 8) {
    s = _mm_crc32_u64(s, load64(p));
  }
  for (; n > 0; ++p, --n) {
    s = _mm_crc32_u8(static_cast<uint32_t>(s), *p);
  }
  return static_cast<uint32_t>(s);
}

#endif  // DPT_CRC32C_X86

using StateFn = uint32_t (*)(const unsigned char*, size_t, uint32_t);

StateFn pick_implementation() {
#ifdef DPT_CRC32C_X86
  __builtin_cpu_init();  // needed if the first call comes from a static initializer
  if (__builtin_cpu_supports("sse4.2")) return sse42_state;
#endif
  return portable_state;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  static const StateFn impl = pick_implementation();
  return ~impl(static_cast<const unsigned char*>(data), n, ~crc);
}

uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc) {
  return ~portable_state(static_cast<const unsigned char*>(data), n, ~crc);
}

}  // namespace dpt
