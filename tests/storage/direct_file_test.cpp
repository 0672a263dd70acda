// storage/: [Direct I/O] writes and reads any offset and length from aligned and unaligned
// buffers, with the CRC-32C of the bytes in file order, on a disk file system and on tmpfs (which
// refuses O_DIRECT: the file goes on buffered); write_file_atomic replaces a file whole and
// leaves no temporary behind.
#include "storage/direct_file.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/crc32c.h"
#include "common/rng.h"
#include "storage/aligned.h"
#include "storage/durable.h"

namespace dpt::storage {
namespace {

namespace fs = std::filesystem;

std::vector<char> random_bytes(size_t n, uint64_t seed) {
  std::vector<char> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<char>(random_u64(seed, 0, i) & 0xff);
  return v;
}

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

class DirectFileTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DirectFileTest, RegionsOfAnyAlignmentRoundTripWithTheirChecksum) {
  const std::string dir = GetParam();
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " does not exist here";
  const std::string path = dir + "/dpt_direct_file_test.bin";
  // Regions: a head shorter than a page, whole pages, an unaligned middle, a tail.
  const uint64_t offsets[] = {0, 100, kPageAlign, 3 * kPageAlign + 7};
  const uint64_t lengths[] = {100, kPageAlign - 100, 2 * kPageAlign + 7, 5 * kPageAlign + 13};
  const uint64_t total = offsets[3] + lengths[3];
  const std::vector<char> data = random_bytes(total, 11);
  for (const bool aligned_source : {true, false}) {
    { std::ofstream(path, std::ios::binary | std::ios::trunc).put('\0'); }
    PageAlignedVector<char> source(total + 1);
    char* from = source.data() + (aligned_source ? 0 : 1);
    std::copy(data.begin(), data.end(), from);
    DirectFile w(path, /*write=*/true);
    ASSERT_TRUE(w.opened());
    uint32_t crc_written = 0;
    for (int k = 0; k < 4; ++k)
      ASSERT_TRUE(w.write(offsets[k], lengths[k], from + offsets[k], &crc_written)) << k;
    ASSERT_TRUE(w.sync());
    ASSERT_TRUE(w.close());
    const std::vector<char> on_disk = file_bytes(path);
    ASSERT_EQ(on_disk, data) << "aligned source " << aligned_source;
    EXPECT_EQ(crc_written, crc32c(data.data(), data.size()));

    DirectFile r(path, /*write=*/false);
    PageAlignedVector<char> back(total + 1, 'x');
    char* to = back.data() + (aligned_source ? 0 : 1);
    uint32_t crc_read = 0, crc_checked = 0;
    ASSERT_TRUE(r.read(0, total, to, &crc_read));
    EXPECT_TRUE(std::equal(data.begin(), data.end(), to));
    EXPECT_EQ(crc_read, crc_written);
    ASSERT_TRUE(r.read(0, total, nullptr, &crc_checked));  // checked, not kept
    EXPECT_EQ(crc_checked, crc_written);
    // Past the end: false, errno 0.
    uint32_t ignored = 0;
    EXPECT_FALSE(r.read(total - 10, 20, to, &ignored));
  }
  fs::remove(path);
}

INSTANTIATE_TEST_SUITE_P(FileSystems, DirectFileTest,
                         ::testing::Values(::testing::TempDir(), std::string("/dev/shm")));

TEST(WriteFileAtomic, ReplacesTheFileWholeAndLeavesNoTemporary) {
  const std::string dir = ::testing::TempDir() + "/dpt_atomic_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string file = dir + "/latest";
  std::string why;
  ASSERT_TRUE(write_file_atomic(file, "step_00000001\n", &why)) << why;
  ASSERT_TRUE(write_file_atomic(file, "step_00000002\n", &why)) << why;
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "step_00000002\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);
  EXPECT_FALSE(write_file_atomic(dir + "/no/such/dir/file", "x", &why));
  EXPECT_NE(why.find("no/such/dir"), std::string::npos) << why;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dpt::storage
