// [CRC-32C contract] (common/crc32c.h): published check values, the hardware path equal to the
// table path at every length and alignment (through the three-stream block sizes), chaining, and
// every single-bit flip of a 4 KiB block caught. DPT_CRC_BENCH=1 also prints throughput.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/crc32c.h"
#include "common/rng.h"

namespace dpt {
namespace {

std::vector<unsigned char> random_bytes(size_t n, uint64_t seed) {
  std::vector<unsigned char> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<unsigned char>(random_u64(seed, 0, i));
  return v;
}

TEST(Crc32c, MatchesPublishedCheckValues) {
  // "123456789" is the standard check string; the 32-byte vectors are RFC 3720, appendix B.4.
  const char* check = "123456789";
  std::vector<unsigned char> zeros(32, 0x00), ones(32, 0xff), ascending(32);
  for (int i = 0; i < 32; ++i)
    ascending[i] = static_cast<unsigned char>(i);
  for (auto* crc : {&crc32c, &crc32c_portable}) {
    EXPECT_EQ(crc(check, 9, 0), 0xE3069283u);
    EXPECT_EQ(crc(zeros.data(), zeros.size(), 0), 0x8A9136AAu);
    EXPECT_EQ(crc(ones.data(), ones.size(), 0), 0x62A8AB43u);
    EXPECT_EQ(crc(ascending.data(), ascending.size(), 0), 0x46DD794Eu);
    EXPECT_EQ(crc(nullptr, 0, 0), 0u);
    EXPECT_EQ(crc(nullptr, 0, 0x12345678u), 0x12345678u);  // nothing fed: the chain value
  }
}

TEST(Crc32c, HardwareEqualsPortableForEveryLengthAndAlignment) {
  // Lengths around every switch of the hardware path: the 8-byte alignment prologue, the
  // single-stream loop, 3 x 256 B and 3 x 8 KiB three-stream blocks, and mixtures of them.
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 300; ++n)
    lengths.push_back(n);
  for (size_t n : {767, 768, 769, 775, 776, 1535, 1536, 1537, 2311, 24575, 24576, 24577, 24583,
                   25343, 25344, 25352, 49152 + 768 + 13, 100003}) {
    lengths.push_back(n);
  }
  lengths.push_back((1u << 20) + 13);
  const auto buf = random_bytes((1u << 20) + 13 + 16, 11);
  for (size_t n : lengths) {
    for (size_t offset = 0; offset < 16; ++offset) {
      const unsigned char* p = buf.data() + offset;
      ASSERT_EQ(crc32c(p, n), crc32c_portable(p, n)) << "length " << n << ", offset " << offset;
      // A nonzero incoming chain value reaches both paths the same way.
      ASSERT_EQ(crc32c(p, n, 0xDEADBEEFu), crc32c_portable(p, n, 0xDEADBEEFu))
          << "length " << n << ", offset " << offset << ", chained";
    }
  }
}

TEST(Crc32c, ChainedEqualsWhole) {
  const size_t n = 3 * 8192 * 2 + 3 * 256 + 101;  // two long blocks, a short one and a tail
  const auto buf = random_bytes(n, 12);
  for (auto* crc : {&crc32c, &crc32c_portable}) {
    const uint32_t whole = crc(buf.data(), n, 0);
    std::vector<size_t> cuts;
    for (size_t c = 0; c <= 40; ++c)
      cuts.push_back(c);
    for (size_t c = 41; c < n; c += 997)
      cuts.push_back(c);
    cuts.push_back(n - 1);
    cuts.push_back(n);
    for (size_t cut : cuts) {
      const uint32_t head = crc(buf.data(), cut, 0);
      ASSERT_EQ(crc(buf.data() + cut, n - cut, head), whole) << "split at " << cut;
    }
    // Many small uneven pieces, as a streaming checkpoint writer would feed them.
    uint32_t running = 0;
    for (size_t at = 0, piece = 1; at < n; at += piece, piece = piece * 7 % 1009 + 1) {
      running = crc(buf.data() + at, std::min(piece, n - at), running);
    }
    EXPECT_EQ(running, whole);
  }
}

TEST(Crc32c, DetectsEverySingleBitFlip) {
  auto buf = random_bytes(4096, 13);
  const uint32_t clean = crc32c(buf.data(), buf.size());
  const uint32_t clean_portable = crc32c_portable(buf.data(), buf.size());
  ASSERT_EQ(clean, clean_portable);
  for (size_t bit = 0; bit < buf.size() * 8; ++bit) {
    buf[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    ASSERT_NE(crc32c(buf.data(), buf.size()), clean) << "bit " << bit;
    if (bit % 61 == 0) {
      ASSERT_NE(crc32c_portable(buf.data(), buf.size()), clean) << "bit " << bit;
    }
    buf[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
  }
  EXPECT_EQ(crc32c(buf.data(), buf.size()), clean);  // every flip was undone
}

// Median GB/s (1e9 bytes per second) of `repeats` timed runs after one warm-up run.
template <typename Fn>
double median_gbps(const std::vector<unsigned char>& buf, int repeats, Fn fn, uint32_t* out) {
  *out = fn(buf.data(), buf.size(), 0);  // warm-up: pages touched, caches and tables loaded
  std::vector<double> gbps;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint32_t c = fn(buf.data(), buf.size(), 0);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(c, *out);
    gbps.push_back(static_cast<double>(buf.size()) / s * 1e-9);
  }
  std::sort(gbps.begin(), gbps.end());
  return gbps[gbps.size() / 2];
}

TEST(Crc32c, ReportsThroughput) {
  const char* bench = std::getenv("DPT_CRC_BENCH");
  if (bench == nullptr || std::strcmp(bench, "1") != 0) {
    GTEST_SKIP() << "set DPT_CRC_BENCH=1 to measure throughput on a 256 MiB buffer";
  }
  const auto buf = random_bytes(size_t{256} << 20, 14);
  uint32_t hw = 0, portable = 0;
  const double hw_gbps = median_gbps(buf, 9, crc32c, &hw);
  const double portable_gbps = median_gbps(buf, 5, crc32c_portable, &portable);
  EXPECT_EQ(hw, portable);
  std::printf("crc32c on 256 MiB, median GB/s (1e9 B/s) after warm-up\n");
  std::printf("  %-22s %8s\n", "path", "GB/s");
  std::printf("  %-22s %8.2f\n", "crc32c (dispatched)", hw_gbps);
  std::printf("  %-22s %8.2f\n", "crc32c_portable", portable_gbps);
  std::printf("  speed-up %.1fx\n", hw_gbps / portable_gbps);
}

}  // namespace
}  // namespace dpt
