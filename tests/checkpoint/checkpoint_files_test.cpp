// Checkpoint files without a training run: rank files round-trip any size and are real HDF5,
// their streamed CRC-32C is the CRC of the bytes on disk, every kind of damage is caught, meta.h5
// round-trips and never reads back altered, and the directory operations publish atomically.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoint/directory.h"
#include "checkpoint/format.h"
#include "checkpoint/meta_file.h"
#include "checkpoint/rank_file.h"
#include "common/crc32c.h"
#include "common/errors.h"
#include "common/rng.h"
#include "storage/aligned.h"
#include "storage/h5.h"

namespace dpt::checkpoint {

using storage::kPageAlign;
using storage::PageAlignedVector;
namespace {

namespace fs = std::filesystem;

class CheckpointFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "dpt-ckpt-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    dir_ = t;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  static std::vector<char> bytes_of(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  static void write_bytes(const std::string& p, const std::vector<char>& b) {
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(b.data(), std::streamsize(b.size()));
  }

  // A rank file holding elements [lo, hi) of three random tensors of n elements.
  RankFileRecord make_rank_file(const std::string& p, uint64_t n, int rank, int world,
                                std::vector<float> (&full)[kStateTensors]) {
    for (int t = 0; t < kStateTensors; ++t) {
      full[t].resize(n);
      for (uint64_t i = 0; i < n; ++i)
        full[t][i] = static_cast<float>(random_normal(1234 + t, n, i));
    }
    const uint64_t lo = slice_begin(n, rank, world), hi = slice_begin(n, rank + 1, world);
    RankFileRecord rec = create_rank_file(p, rank, lo, hi, 42);
    fill_rank_file(p, {full[0].data() + lo, full[1].data() + lo, full[2].data() + lo}, &rec);
    return rec;
  }

  // Expects read_rank_file to throw a one-line UsageError containing every needle.
  static void expect_damaged(const std::string& p, const RankFileRecord& rec,
                             std::initializer_list<std::string> needles) {
    std::vector<float> a(rec.hi + 1), b(rec.hi + 1), c(rec.hi + 1);
    try {
      read_rank_file(p, rec, {a.data(), b.data(), c.data()});
      ADD_FAILURE() << "damage to " << p << " went unnoticed";
    } catch (const UsageError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
      for (const auto& n : needles)
        EXPECT_NE(msg.find(n), std::string::npos) << n << " in: " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }

  // Whether O_DIRECT on p's file system bypasses a page cache: it takes an O_DIRECT read and
  // is not tmpfs (whose files live in the page cache).
  static bool bypasses_page_cache(const std::string& p) {
    struct statfs sf {};
    if (::statfs(p.c_str(), &sf) != 0 || sf.f_type == TMPFS_MAGIC) return false;
    const int fd = ::open(p.c_str(), O_RDONLY | O_DIRECT);
    if (fd < 0) return false;
    PageAlignedVector<char> page(kPageAlign);
    const bool ok = ::pread(fd, page.data(), kPageAlign, 0) >= 0;
    ::close(fd);
    return ok;
  }
  // The fraction of the pages of [off, off + len) of p held in the page cache (mincore).
  static double resident_fraction(const std::string& p, uint64_t off, uint64_t len) {
    const int fd = ::open(p.c_str(), O_RDONLY);
    EXPECT_GE(fd, 0) << p;
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t lo = off / page * page, n = (off + len - lo + page - 1) / page;
    void* map = ::mmap(nullptr, n * page, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(lo));
    ::close(fd);
    EXPECT_NE(map, MAP_FAILED) << p;
    std::vector<unsigned char> in(n);
    EXPECT_EQ(::mincore(map, n * page, in.data()), 0) << p;
    ::munmap(map, n * page);
    size_t resident = 0;
    for (unsigned char c : in)
      resident += c & 1;
    return static_cast<double>(resident) / static_cast<double>(n);
  }

  std::string dir_;
};

TEST_F(CheckpointFiles, RankFilesRoundTripOddSizesAndCrcIsTheCrcOfTheBytesOnDisk) {
  for (const uint64_t n : {1ull, 7ull, 13ull, 1001ull, 300007ull}) {
    for (const int world : {1, 3}) {
      for (int rank = 0; rank < world; ++rank) {
        const std::string p = path("r" + std::to_string(n) + "_" + std::to_string(rank) + ".h5");
        std::vector<float> full[kStateTensors];
        const RankFileRecord rec = make_rank_file(p, n, rank, world, full);
        const auto disk = bytes_of(p);
        ASSERT_EQ(disk.size(), rec.bytes) << p;
        EXPECT_EQ(crc32c(disk.data(), disk.size()), rec.crc32c) << p;
        // Poisoned outputs: every element of the slice must be written, nothing outside it.
        std::vector<float> got[kStateTensors];
        for (auto& g : got)
          g.assign(n, -777.0f);
        read_rank_file(p, rec, {got[0].data(), got[1].data(), got[2].data()});
        for (int t = 0; t < kStateTensors; ++t)
          for (uint64_t i = 0; i < n; ++i) {
            const bool mine = i >= rec.lo && i < rec.hi;
            ASSERT_EQ(got[t][i], mine ? full[t][i] : -777.0f) << p << " tensor " << t << " @" << i;
          }
      }
    }
  }
}

// [Direct I/O]: tensor data starts on a page in the file, so page-aligned sources (the
// snapshot buffers) go to disk without a copy and unaligned ones through the bounce buffer; the
// bytes and CRC are the same either way, in /tmp and wherever else O_DIRECT may differ (/dev/shm).
TEST_F(CheckpointFiles, TensorDataIsPageAlignedAndAlignedAndUnalignedSourcesRoundTrip) {
  const uint64_t n = 1000003;  // 4 MB a tensor: whole pages through O_DIRECT plus a tail
  PageAlignedVector<float> full[kStateTensors];
  for (int t = 0; t < kStateTensors; ++t) {
    full[t].resize(n + 1);
    for (uint64_t i = 0; i < n + 1; ++i)
      full[t][i] = static_cast<float>(random_normal(99 + t, n, i));
  }
  std::vector<std::string> dirs = {dir_};
  std::string shm = "/dev/shm/dpt-ckpt-XXXXXX";
  if (fs::is_directory("/dev/shm") && ::mkdtemp(shm.data()) != nullptr) dirs.push_back(shm);
  for (const std::string& d : dirs) {
    for (const int shift : {0, 1}) {  // 0: page-aligned sources; 1: one float past a page
      const std::string p = d + "/aligned" + std::to_string(shift) + ".h5";
      RankFileRecord rec = create_rank_file(p, 0, 0, n, 7);
      for (int t = 0; t < kStateTensors; ++t)
        EXPECT_EQ(rec.offsets[t] % kPageAlign, 0u) << p << " tensor " << t;
      fill_rank_file(p, {full[0].data() + shift, full[1].data() + shift, full[2].data() + shift},
                     &rec);
      if (bypasses_page_cache(p)) {
        // Written past the page cache: (almost) none of the tensor pages are resident.
        EXPECT_LT(resident_fraction(p, rec.offsets[1], n * 4), 0.05) << p;
      }
      const auto disk = bytes_of(p);
      ASSERT_EQ(disk.size(), rec.bytes) << p;
      EXPECT_EQ(crc32c(disk.data(), disk.size()), rec.crc32c) << p;
      for (int t = 0; t < kStateTensors; ++t)
        ASSERT_EQ(std::memcmp(disk.data() + rec.offsets[t], full[t].data() + shift, n * 4), 0)
            << p << " tensor " << t;
      // Read back into an unaligned and into an aligned destination.
      std::vector<float> got[kStateTensors];
      PageAlignedVector<float> got_aligned[kStateTensors];
      for (int t = 0; t < kStateTensors; ++t) {
        got[t].assign(n, -1.0f);
        got_aligned[t].assign(n, -1.0f);
      }
      read_rank_file(p, rec, {got[0].data(), got[1].data(), got[2].data()});
      read_rank_file(p, rec, {got_aligned[0].data(), got_aligned[1].data(), got_aligned[2].data()});
      for (int t = 0; t < kStateTensors; ++t) {
        ASSERT_EQ(std::memcmp(got[t].data(), full[t].data() + shift, n * 4), 0) << p;
        ASSERT_EQ(std::memcmp(got_aligned[t].data(), full[t].data() + shift, n * 4), 0) << p;
      }
      verify_file(p, rec.bytes, rec.crc32c);
    }
  }
  if (dirs.size() > 1) fs::remove_all(dirs[1]);
}

TEST_F(CheckpointFiles, RankFilesAreHdf5ThatTheCApiReads) {
  std::vector<float> full[kStateTensors];
  const RankFileRecord rec = make_rank_file(path("h.h5"), 4099, 1, 2, full);
  storage::H5File f(H5Fopen(path("h.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  ASSERT_TRUE(f.valid());
  for (int t = 0; t < kStateTensors; ++t) {
    storage::H5Dataset d(H5Dopen2(f.get(), kStateTensorNames[t], H5P_DEFAULT));
    ASSERT_TRUE(d.valid()) << kStateTensorNames[t];
    std::vector<float> got(rec.hi - rec.lo);
    ASSERT_GE(H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got.data()), 0);
    EXPECT_TRUE(std::equal(got.begin(), got.end(), full[t].begin() + long(rec.lo)))
        << kStateTensorNames[t];
  }
}

TEST_F(CheckpointFiles, BitFlipsTruncationAndMissingFilesAreCaught) {
  std::vector<float> full[kStateTensors];
  const std::string p = path("d.h5");
  const RankFileRecord rec = make_rank_file(p, 5003, 0, 1, full);
  const auto good = bytes_of(p);
  // A flipped bit anywhere: HDF5's header, the first tensor, the last byte.
  for (const size_t at : {size_t{5}, size_t{300}, size_t(rec.offsets[0] + 17),
                          size_t(rec.offsets[2] + 4), good.size() - 1}) {
    auto bad = good;
    bad[at] ^= 0x04;
    write_bytes(p, bad);
    expect_damaged(p, rec, {"fails its checksum"});
  }
  write_bytes(p, std::vector<char>(good.begin(), good.begin() + long(good.size() / 2)));
  expect_damaged(p, rec, {"(truncated)"});
  auto longer = good;
  longer.push_back(0);
  write_bytes(p, longer);
  expect_damaged(p, rec, {"bytes where meta.h5 records"});
  fs::remove(p);
  expect_damaged(p, rec, {"cannot be opened"});
}

CheckpointMeta sample_meta() {
  CheckpointMeta m;
  m.step = 1200;
  m.world_size = 2;
  m.total_steps = 5000;
  m.seed = 18446744073709551557ull;
  m.nonfinite_skipped = 3;
  m.config = "# options\nseq-len = 64\nglobal-batch = 8\n";
  m.vocab_size = 257;
  m.seq_len = 64;
  m.d_model = 48;
  m.n_layer = 3;
  m.n_head = 4;
  m.global_batch = 8;
  m.shuffle = "local";
  m.shuffle_window = 5;
  m.data_fingerprint = 0x0123456789abcdefull;
  m.data_shards = 7;
  m.data_tokens = 123456789;
  m.samples_seen = 9600;
  m.param_count = 1001;
  m.tensors = {TensorView{"wte.weight", 0, {257, 3}}, TensorView{"ln_f.bias", 771, {230}}};
  for (int r = 0; r < 2; ++r) {
    RankFileRecord f;
    f.name = rank_file_name(r);
    f.bytes = 4096 + static_cast<uint64_t>(r);
    f.crc32c = 0xdeadbeefu - static_cast<uint32_t>(r);
    f.lo = slice_begin(1001, r, 2);
    f.hi = slice_begin(1001, r + 1, 2);
    f.offsets = {2048, 4048, 6048};
    m.files.push_back(f);
  }
  return m;
}

void expect_same_meta(const CheckpointMeta& a, const CheckpointMeta& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.world_size, b.world_size);
  EXPECT_EQ(a.total_steps, b.total_steps);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.nonfinite_skipped, b.nonfinite_skipped);
  EXPECT_EQ(a.config, b.config);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.seq_len, b.seq_len);
  EXPECT_EQ(a.d_model, b.d_model);
  EXPECT_EQ(a.n_layer, b.n_layer);
  EXPECT_EQ(a.n_head, b.n_head);
  EXPECT_EQ(a.global_batch, b.global_batch);
  EXPECT_EQ(a.shuffle, b.shuffle);
  EXPECT_EQ(a.shuffle_window, b.shuffle_window);
  EXPECT_EQ(a.data_fingerprint, b.data_fingerprint);
  EXPECT_EQ(a.data_shards, b.data_shards);
  EXPECT_EQ(a.data_tokens, b.data_tokens);
  EXPECT_EQ(a.samples_seen, b.samples_seen);
  EXPECT_EQ(a.param_count, b.param_count);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].offset, b.tensors[i].offset);
    EXPECT_EQ(a.tensors[i].shape, b.tensors[i].shape);
  }
  ASSERT_EQ(a.files.size(), b.files.size());
  for (size_t i = 0; i < a.files.size(); ++i) {
    EXPECT_EQ(a.files[i].name, b.files[i].name);
    EXPECT_EQ(a.files[i].bytes, b.files[i].bytes);
    EXPECT_EQ(a.files[i].crc32c, b.files[i].crc32c);
    EXPECT_EQ(a.files[i].lo, b.files[i].lo);
    EXPECT_EQ(a.files[i].hi, b.files[i].hi);
    EXPECT_EQ(a.files[i].offsets, b.files[i].offsets);
  }
}

TEST_F(CheckpointFiles, MetaRoundTripsEveryField) {
  const CheckpointMeta m = sample_meta();
  write_meta(path("meta.h5"), m);
  expect_same_meta(read_meta(path("meta.h5")), m);
}

// A file record that leads out of the checkpoint directory is refused by name, even with a
// checksum that matches (metadata edited on purpose, not damaged).
TEST_F(CheckpointFiles, MetaFileNamesThatLeaveTheDirectoryAreRefused) {
  for (const std::string bad : {"..", "..\\etc"}) {
    CheckpointMeta m = sample_meta();
    m.files[1].name = bad;
    const std::string p = path("meta.h5");
    write_meta(p, m);
    try {
      read_meta(p);
      ADD_FAILURE() << "file record '" << bad << "' was accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("file record '" + bad +
                                           "' names a path outside the checkpoint directory"),
                std::string::npos)
          << e.what();
    }
  }
}

// Every 5th byte of meta.h5 flipped in turn: each read either fails with a UsageError naming
// the file or gives back exactly what was written (a byte HDF5 never reads); never anything
// else, and never a crash.
TEST_F(CheckpointFiles, AFlippedByteInMetaIsCaughtOrHarmless) {
  const CheckpointMeta m = sample_meta();
  const std::string p = path("meta.h5");
  write_meta(p, m);
  const auto good = bytes_of(p);
  int caught = 0, harmless = 0;
  for (size_t at = 0; at < good.size(); at += 5) {
    auto bad = good;
    bad[at] ^= 0x20;
    write_bytes(p, bad);
    try {
      const CheckpointMeta back = read_meta(p);
      expect_same_meta(back, m);
      if (::testing::Test::HasFailure()) {
        ADD_FAILURE() << "byte " << at << " changed what meta.h5 reads back";
        return;
      }
      ++harmless;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
      ++caught;
    }
  }
  EXPECT_GT(caught, harmless) << "most bytes of meta.h5 carry information";
  std::printf("meta.h5 (%zu bytes): %d flips caught, %d in bytes HDF5 never reads\n", good.size(),
              caught, harmless);
}

TEST_F(CheckpointFiles, PublicationIsAtomicAndPruningKeepsTheNewest) {
  const std::string ck = path("ck");
  fs::create_directories(ck);
  auto save = [&](int64_t step) {
    const std::string partial = partial_dir_path(ck, step);
    fs::create_directories(partial);
    write_meta(partial + "/" + kMetaFileName, sample_meta());
    return publish_checkpoint(ck, partial, step);
  };
  EXPECT_EQ(save(4), ck + "/step_00000004");
  EXPECT_EQ(read_latest(ck), 4);
  save(8);
  save(12);
  // A partial directory and a step directory without meta.h5 are not checkpoints.
  fs::create_directories(partial_dir_path(ck, 16));
  fs::create_directories(ck + "/step_00000020");
  auto steps = [&] {
    std::vector<int64_t> s;
    for (const auto& e : list_checkpoints(ck))
      s.push_back(e.step);
    return s;
  };
  EXPECT_EQ(steps(), (std::vector<int64_t>{4, 8, 12}));
  EXPECT_EQ(read_latest(ck), 12);
  // Publishing a step again replaces the old directory whole.
  std::ofstream(ck + "/step_00000008/stale-marker") << "x";
  save(8);
  EXPECT_FALSE(fs::exists(ck + "/step_00000008/stale-marker"));
  EXPECT_EQ(read_latest(ck), 8);
  EXPECT_EQ(prune_checkpoints(ck, 2).size(), 1u);
  EXPECT_EQ(steps(), (std::vector<int64_t>{8, 12}));
  EXPECT_EQ(remove_partials(ck).size(), 1u);
  for (const auto& e : fs::directory_iterator(ck))
    EXPECT_NE(e.path().filename().string().rfind(".partial.", 0), 0u) << e.path();
}

}  // namespace
}  // namespace dpt::checkpoint
