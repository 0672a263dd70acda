// inspect_shard(): every malformed shard is a one-line UsageError naming the file, the object
// and the fix; good shards of every token type and layout read back the facts written.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/errors.h"
#include "common/hash.h"
#include "datasets/shard_index.h"
#include "datasets/shard_inspect.h"
#include "datasets/shard_reader.h"
#include "storage/h5.h"

namespace dpt::datasets {

using storage::h5_native;
using storage::h5_quiet;
using storage::H5Attr;
using storage::H5Dataset;
using storage::H5File;
using storage::H5Handle;
using storage::H5Plist;
using storage::H5Space;
using storage::H5Type;
namespace {

namespace fs = std::filesystem;

// ---- writing test shards with the HDF5 C API -------------------------------------------------

H5File create_file(const std::string& path) {
  H5File f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  EXPECT_TRUE(f.valid()) << path;
  return f;
}

H5File open_rw(const std::string& path) {
  H5File f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT));
  EXPECT_TRUE(f.valid()) << path;
  return f;
}

// A dataset of any stored type; dims defaults to 1-D of data.size(); chunk 0 is contiguous.
template <typename T>
void write_array(hid_t loc, const char* name, const std::vector<T>& data, hid_t file_type,
                 std::vector<hsize_t> dims = {}, hsize_t chunk = 0, int gzip = 0) {
  if (dims.empty()) dims = {data.size()};
  H5Space space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
  H5Plist dcpl(H5Pcreate(H5P_DATASET_CREATE));
  if (chunk > 0) {
    std::vector<hsize_t> cdims(dims.size(), 1);
    cdims.back() = chunk;
    ASSERT_GE(H5Pset_chunk(dcpl.get(), static_cast<int>(cdims.size()), cdims.data()), 0);
    if (gzip > 0) {
      ASSERT_GE(H5Pset_deflate(dcpl.get(), static_cast<unsigned>(gzip)), 0);
    }
  }
  H5Dataset d(H5Dcreate2(loc, name, file_type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT));
  ASSERT_TRUE(d.valid()) << name;
  if (!data.empty()) {
    ASSERT_GE(H5Dwrite(d.get(), h5_native<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()), 0);
  }
}

template <typename T>
void write_attr(hid_t loc, const char* name, T value, hid_t file_type) {
  H5Space space(H5Screate(H5S_SCALAR));
  H5Attr a(H5Acreate2(loc, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  ASSERT_TRUE(a.valid()) << name;
  ASSERT_GE(H5Awrite(a.get(), h5_native<T>(), &value), 0);
}

void write_string_attr(hid_t loc, const char* name, const std::string& value) {
  H5Type t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), value.size());
  H5Space space(H5Screate(H5S_SCALAR));
  H5Attr a(H5Acreate2(loc, name, t.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  ASSERT_TRUE(a.valid()) << name;
  ASSERT_GE(H5Awrite(a.get(), t.get(), value.data()), 0);
}

// How a test shard is laid out; the defaults make a valid uint16 shard.
struct ShardSpec {
  hid_t file_type = H5T_STD_U16LE;  // stored type of /tokens
  std::vector<hsize_t> dims;        // empty: 1-D
  hsize_t chunk = 1024;             // 0: contiguous
  int gzip = 0;
  std::optional<int64_t> vocab_size = 1000;
  std::optional<int64_t> format_version = 1;
  std::optional<std::vector<int64_t>> doc_offsets;
};

template <typename T>
void write_shard(const std::string& path, const std::vector<T>& tokens, const ShardSpec& spec) {
  H5File f = create_file(path);
  write_array(f.get(), "tokens", tokens, spec.file_type, spec.dims,
              std::min<hsize_t>(spec.chunk, std::max<size_t>(tokens.size(), 1)), spec.gzip);
  if (spec.vocab_size) write_attr(f.get(), "vocab_size", *spec.vocab_size, H5T_STD_I64LE);
  if (spec.format_version)
    write_attr(f.get(), "format_version", *spec.format_version, H5T_STD_I64LE);
  if (spec.doc_offsets) write_array(f.get(), "doc_offsets", *spec.doc_offsets, H5T_STD_I64LE);
}

template <typename T>
std::vector<T> random_tokens(size_t n, uint64_t lo, uint64_t hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v)
    x = static_cast<T>(dist(rng));
  return v;
}

template <typename T>
uint64_t checksum_of(const std::vector<T>& v) {
  return fnv1a64(v.data(), v.size() * sizeof(T));
}

class InspectShard : public ::testing::Test {
 protected:
  void SetUp() override {
    h5_quiet();
    std::string tmpl = (fs::temp_directory_path() / "dpt-inspect-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // A small valid uint16 shard with 3 documents.
  std::string good_shard(const std::string& name, ShardSpec spec = {}) {
    const std::string p = path(name);
    if (!spec.doc_offsets) spec.doc_offsets = std::vector<int64_t>{0, 10, 500};
    write_shard(p, random_tokens<uint16_t>(5000, 0, 999, 7), spec);
    return p;
  }

  // Expects inspect_shard(p) to throw UsageError with a one-line message that names p and
  // every needle, and nothing on stderr (no HDF5 error stack). Returns the message.
  static std::string expect_rejected(const std::string& p,
                                     std::initializer_list<std::string> needles) {
    std::string msg;
    ::testing::internal::CaptureStderr();
    try {
      inspect_shard(p);
      ADD_FAILURE() << p << " was accepted";
    } catch (const UsageError& e) {
      msg = e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a UsageError: " << e.what();
    }
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(err, "") << "inspect_shard printed to stderr";
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << n << " in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    return msg;
  }

  std::string dir_;
};

// ---- the file itself ------------------------------------------------------------------------

TEST_F(InspectShard, MissingFileIsRejectedNamingThePath) {
  expect_rejected(path("absent.h5"), {"does not exist", "check the path"});
}

TEST_F(InspectShard, DirectoryIsRejectedAsNotARegularFile) {
  fs::create_directory(path("x.h5"));
  expect_rejected(path("x.h5"), {"is a directory", "not a regular file"});
}

TEST_F(InspectShard, UnreadableFileIsRejectedNamingPermissions) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  const std::string p = good_shard("locked.h5");
  ASSERT_EQ(::chmod(p.c_str(), 0), 0);
  expect_rejected(p, {"unreadable", "chmod"});
}

TEST_F(InspectShard, NonHdf5FileIsRejectedWithTheConversionHint) {
  const std::string p = path("text.h5");
  std::ofstream(p) << "the quick brown fox\n";
  expect_rejected(p, {"not an HDF5 file", "prepare-data"});
  const std::string empty = path("empty.h5");
  std::ofstream{empty};
  expect_rejected(empty, {"empty file", "not an HDF5 file"});
}

TEST_F(InspectShard, FileTruncatedAfterItsHeaderIsRejectedAsTruncated) {
  ShardSpec spec;
  spec.chunk = 0;
  const std::string whole = path("whole.h5");
  write_shard(whole, random_tokens<uint16_t>(100000, 0, 999, 3), spec);
  const std::string cut = path("cut.h5");
  fs::copy_file(whole, cut);
  ASSERT_EQ(::truncate(cut.c_str(), static_cast<off_t>(fs::file_size(whole) / 2)), 0);
  expect_rejected(cut, {"truncated", "copy it again"});
}

TEST_F(InspectShard, CorruptCompressedChunkIsRejectedAsDamaged) {
  ShardSpec spec;
  spec.chunk = 4096;
  spec.gzip = 4;
  const std::string p = path("corrupt.h5");
  write_shard(p, random_tokens<uint16_t>(40000, 0, 999, 5), spec);
  haddr_t addr = 0;
  hsize_t chunk_bytes = 0;
  {
    H5File f(H5Fopen(p.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    H5Dataset d(H5Dopen2(f.get(), "tokens", H5P_DEFAULT));
    hsize_t offset[1];
    unsigned mask = 0;
    H5Space space(H5Dget_space(d.get()));
    ASSERT_GE(H5Dget_chunk_info(d.get(), space.get(), 3, offset, &mask, &addr, &chunk_bytes), 0);
  }
  ASSERT_GT(chunk_bytes, 64u);
  {
    std::fstream io(p, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(addr + chunk_bytes / 4));
    const std::string junk(32, '\xff');
    io.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  expect_rejected(p, {"/tokens", "damaged"});
}

// ---- /tokens ---------------------------------------------------------------------------------

TEST_F(InspectShard, MissingTokensDatasetIsRejected) {
  const std::string p = path("no_tokens.h5");
  {
    H5File f = create_file(p);
    write_array(f.get(), "ids", std::vector<uint16_t>{1, 2, 3}, H5T_STD_U16LE);
    write_attr(f.get(), "vocab_size", int64_t{1000}, H5T_STD_I64LE);
    write_attr(f.get(), "format_version", int64_t{1}, H5T_STD_I64LE);
  }
  expect_rejected(p, {"no /tokens dataset", "docs/data-format.md"});
}

TEST_F(InspectShard, TokensGroupIsRejected) {
  const std::string p = path("group.h5");
  {
    H5File f = create_file(p);
    H5Handle<H5Gclose> g(H5Gcreate2(f.get(), "tokens", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    ASSERT_TRUE(g.valid());
    write_attr(f.get(), "vocab_size", int64_t{1000}, H5T_STD_I64LE);
    write_attr(f.get(), "format_version", int64_t{1}, H5T_STD_I64LE);
  }
  expect_rejected(p, {"/tokens is a group", "not a dataset"});
}

TEST_F(InspectShard, TwoDimensionalTokensAreRejected) {
  ShardSpec spec;
  spec.dims = {4, 25};
  spec.chunk = 0;
  const std::string p = path("2d.h5");
  write_shard(p, random_tokens<uint16_t>(100, 0, 999, 1), spec);
  expect_rejected(p, {"/tokens", "shape (4, 25)", "not 1-D", "1-D dataset"});
}

TEST_F(InspectShard, FloatingPointTokensAreRejected) {
  ShardSpec spec;
  spec.file_type = H5T_IEEE_F32LE;
  const std::string p = path("float.h5");
  write_shard(p, std::vector<float>{1, 2, 3, 4}, spec);
  expect_rejected(p, {"/tokens", "floating-point", "uint16"});
}

TEST_F(InspectShard, SignedTypesOtherThanInt32AreRejectedWithTheUnsignedFix) {
  struct Case {
    hid_t type;
    const char* name;
    const char* fix;
  };
  for (const Case& c : {Case{H5T_STD_I8LE, "int8", "store ids as uint8"},
                        Case{H5T_STD_I16LE, "int16", "store ids as uint16"},
                        Case{H5T_STD_I64LE, "int64", "store ids as uint32"}}) {
    ShardSpec spec;
    spec.file_type = c.type;
    const std::string p = path(std::string(c.name) + ".h5");
    write_shard(p, std::vector<int64_t>{1, 2, 3}, spec);
    expect_rejected(p, {"/tokens", std::string("type ") + c.name, c.fix});
  }
}

TEST_F(InspectShard, Unsigned64BitTokensAreRejected) {
  ShardSpec spec;
  spec.file_type = H5T_STD_U64LE;
  const std::string p = path("u64.h5");
  write_shard(p, std::vector<uint64_t>{1, 2, 3}, spec);
  expect_rejected(p, {"/tokens", "type uint64", "store ids as uint32"});
}

TEST_F(InspectShard, NegativeInt32IdIsRejectedNamingItsPosition) {
  ShardSpec spec;
  spec.file_type = H5T_STD_I32LE;
  auto tokens = random_tokens<int32_t>(3000, 0, 999, 2);
  tokens[2345] = -7;
  const std::string p = path("negative.h5");
  write_shard(p, tokens, spec);
  expect_rejected(p, {"/tokens[2345] = -7", "signed-negative", ">= 0"});
}

TEST_F(InspectShard, EmptyTokensAreRejected) {
  ShardSpec spec;
  spec.chunk = 0;
  const std::string p = path("empty_tokens.h5");
  write_shard(p, std::vector<uint16_t>{}, spec);
  expect_rejected(p, {"/tokens is empty"});
}

TEST_F(InspectShard, IdAtOrAboveVocabSizeIsRejectedNamingFileAndPosition) {
  ShardSpec spec;
  spec.vocab_size = 1000;
  auto tokens = random_tokens<uint16_t>(5000, 0, 999, 4);
  tokens[4321] = 1000;  // exactly vocab_size: the first id that does not fit
  tokens[4500] = 60000;
  const std::string p = path("over_vocab.h5");
  write_shard(p, tokens, spec);
  expect_rejected(p, {"/tokens[4321] = 1000", "vocab_size 1000", "set vocab_size"});
}

// ---- attributes ------------------------------------------------------------------------------

TEST_F(InspectShard, MissingVocabSizeIsRejected) {
  ShardSpec spec;
  spec.vocab_size.reset();
  expect_rejected(good_shard("no_vocab.h5", spec), {"no vocab_size attribute", "f.attrs"});
}

TEST_F(InspectShard, NonIntegerVocabSizeIsRejected) {
  ShardSpec spec;
  spec.vocab_size.reset();
  const std::string as_float = good_shard("float_vocab.h5", spec);
  write_attr(open_rw(as_float).get(), "vocab_size", 50257.0, H5T_IEEE_F64LE);
  expect_rejected(as_float, {"attribute vocab_size", "of type floating-point, not integer"});

  const std::string as_text = good_shard("text_vocab.h5", spec);
  write_string_attr(open_rw(as_text).get(), "vocab_size", "50257");
  expect_rejected(as_text, {"attribute vocab_size", "of type string, not integer"});
}

TEST_F(InspectShard, VocabSizeBelowOneIsRejected) {
  ShardSpec spec;
  spec.vocab_size = 0;
  expect_rejected(good_shard("zero_vocab.h5", spec), {"vocab_size", "is 0", "at least 1"});
}

TEST_F(InspectShard, MissingFormatVersionIsRejectedNamingTheFix) {
  ShardSpec spec;
  spec.format_version.reset();
  expect_rejected(good_shard("no_version.h5", spec),
                  {"no format_version attribute", "format_version = 1"});
}

TEST_F(InspectShard, UnsupportedFormatVersionIsRejected) {
  ShardSpec spec;
  spec.format_version = 2;
  expect_rejected(good_shard("v2.h5", spec),
                  {"format_version 2 is not supported", "reads format 1"});
}

// ---- /doc_offsets ----------------------------------------------------------------------------

TEST_F(InspectShard, FloatingPointDocOffsetsAreRejected) {
  const std::string p = good_shard("float_docs.h5");
  {
    H5File f = open_rw(p);
    ASSERT_GE(H5Ldelete(f.get(), "doc_offsets", H5P_DEFAULT), 0);
    write_array(f.get(), "doc_offsets", std::vector<double>{0, 10}, H5T_IEEE_F64LE);
  }
  expect_rejected(p, {"/doc_offsets", "of type floating-point, not integer", "int64"});
}

TEST_F(InspectShard, TwoDimensionalDocOffsetsAreRejected) {
  const std::string p = good_shard("2d_docs.h5");
  {
    H5File f = open_rw(p);
    ASSERT_GE(H5Ldelete(f.get(), "doc_offsets", H5P_DEFAULT), 0);
    write_array(f.get(), "doc_offsets", std::vector<int64_t>{0, 10, 20, 30}, H5T_STD_I64LE, {2, 2});
  }
  expect_rejected(p, {"/doc_offsets", "shape (2, 2)", "not 1-D"});
}

TEST_F(InspectShard, EmptyDocOffsetsAreRejected) {
  ShardSpec spec;
  spec.doc_offsets = std::vector<int64_t>{};
  spec.chunk = 0;
  const std::string p = path("empty_docs.h5");
  write_shard(p, random_tokens<uint16_t>(100, 0, 999, 1), spec);
  expect_rejected(p, {"/doc_offsets is empty"});
}

TEST_F(InspectShard, DocOffsetsNotStartingAtZeroAreRejected) {
  ShardSpec spec;
  spec.doc_offsets = std::vector<int64_t>{3, 10};
  expect_rejected(good_shard("docs_start.h5", spec), {"/doc_offsets[0] = 3", "must be 0"});
}

TEST_F(InspectShard, DocOffsetsNotStrictlyIncreasingAreRejectedNamingTheIndex) {
  ShardSpec spec;
  spec.doc_offsets = std::vector<int64_t>{0, 10, 20, 20, 30};
  expect_rejected(good_shard("docs_repeat.h5", spec),
                  {"/doc_offsets[3] = 20", "strictly increasing"});
}

TEST_F(InspectShard, DocOffsetAtOrBeyondTokenCountIsRejected) {
  ShardSpec spec;
  spec.doc_offsets = std::vector<int64_t>{0, 10, 5000};  // good_shard writes 5000 tokens
  expect_rejected(good_shard("docs_end.h5", spec), {"/doc_offsets[2] = 5000", "len(tokens)"});
}

// ---- good shards -----------------------------------------------------------------------------

template <typename T>
void expect_facts_of(const std::string& p, const std::vector<T>& tokens, TokenType dtype,
                     int64_t vocab, uint64_t chunk, uint64_t docs) {
  SCOPED_TRACE(p);
  const ShardFacts f = inspect_shard(p);
  const auto [lo, hi] = std::minmax_element(tokens.begin(), tokens.end());
  EXPECT_EQ(f.path, fs::canonical(p).string());
  EXPECT_EQ(f.dtype, dtype);
  EXPECT_EQ(f.num_tokens, tokens.size());
  EXPECT_EQ(f.min_id, static_cast<uint64_t>(*lo));
  EXPECT_EQ(f.max_id, static_cast<uint64_t>(*hi));
  EXPECT_EQ(f.vocab_size, vocab);
  EXPECT_EQ(f.num_docs, docs);
  EXPECT_EQ(f.chunk_tokens, chunk);
  EXPECT_EQ(f.checksum, checksum_of(tokens));
  const FileStamp stamp = stat_shard(p);
  EXPECT_EQ(f.file_size, stamp.size);
  EXPECT_EQ(f.file_size, fs::file_size(p));
  EXPECT_EQ(f.mtime_ns, stamp.mtime_ns);
}

TEST_F(InspectShard, EachTokenTypeReadsBackItsFacts) {
  const std::vector<int64_t> docs{0, 17, 900, 2999};
  ShardSpec spec;
  spec.doc_offsets = docs;
  spec.chunk = 512;

  spec.file_type = H5T_STD_U8LE;
  spec.vocab_size = 256;
  const auto u8 = random_tokens<uint8_t>(3000, 3, 255, 11);
  write_shard(path("u8.h5"), u8, spec);
  expect_facts_of(path("u8.h5"), u8, TokenType::u8, 256, 512, docs.size());

  spec.file_type = H5T_STD_U16LE;
  spec.vocab_size = 50257;
  const auto u16 = random_tokens<uint16_t>(3000, 5, 50256, 12);
  write_shard(path("u16.h5"), u16, spec);
  expect_facts_of(path("u16.h5"), u16, TokenType::u16, 50257, 512, docs.size());

  spec.file_type = H5T_STD_I32LE;
  spec.vocab_size = 200000;
  const auto i32 = random_tokens<int32_t>(3000, 0, 199999, 13);
  write_shard(path("i32.h5"), i32, spec);
  expect_facts_of(path("i32.h5"), i32, TokenType::i32, 200000, 512, docs.size());

  // Ids above 2^31 prove uint32 is not read through a signed type.
  spec.file_type = H5T_STD_U32LE;
  spec.vocab_size = 4000000000;
  const auto u32 = random_tokens<uint32_t>(3000, 1, 3999999999, 14);
  write_shard(path("u32.h5"), u32, spec);
  expect_facts_of(path("u32.h5"), u32, TokenType::u32, 4000000000, 512, docs.size());
}

TEST_F(InspectShard, ShardWithoutDocOffsetsHasZeroDocs) {
  ShardSpec spec;
  const auto tokens = random_tokens<uint16_t>(2000, 0, 999, 21);
  write_shard(path("nodocs.h5"), tokens, spec);
  expect_facts_of(path("nodocs.h5"), tokens, TokenType::u16, 1000, 1024, 0);
}

TEST_F(InspectShard, GzipShardReadsBackItsFacts) {
  ShardSpec spec;
  spec.chunk = 8192;
  spec.gzip = 6;
  spec.vocab_size = 50257;
  const auto tokens = random_tokens<uint16_t>(100000, 0, 50256, 22);
  write_shard(path("gzip.h5"), tokens, spec);
  expect_facts_of(path("gzip.h5"), tokens, TokenType::u16, 50257, 8192, 0);
}

TEST_F(InspectShard, ContiguousShardIsAcceptedWithChunkTokensZero) {
  ShardSpec spec;
  spec.chunk = 0;
  const auto tokens = random_tokens<uint16_t>(10000, 0, 999, 23);
  write_shard(path("contiguous.h5"), tokens, spec);
  expect_facts_of(path("contiguous.h5"), tokens, TokenType::u16, 1000, 0, 0);
}

TEST_F(InspectShard, OddChunksWithPartialLastChunkAreScannedToTheEnd) {
  ShardSpec spec;
  spec.chunk = 4099;
  spec.gzip = 1;
  spec.file_type = H5T_STD_U32LE;
  spec.vocab_size = 70000;
  auto tokens = random_tokens<uint32_t>(100003, 100, 60000, 24);
  tokens.back() = 69999;  // the largest id sits in the partial last chunk
  write_shard(path("odd.h5"), tokens, spec);
  expect_facts_of(path("odd.h5"), tokens, TokenType::u32, 70000, 4099, 0);

  tokens.back() = 70000;
  write_shard(path("odd_bad.h5"), tokens, spec);
  expect_rejected(path("odd_bad.h5"), {"/tokens[100002] = 70000"});
}

TEST_F(InspectShard, ShardSpanningSeveralReadsChainsTheChecksumAndPositions) {
  // uint16 reads are ~4M tokens: 10M tokens take three reads, the last one partial.
  ShardSpec spec;
  spec.chunk = 100003;
  spec.vocab_size = 50257;
  auto tokens = random_tokens<uint16_t>(10000000, 0, 50256, 25);
  write_shard(path("big.h5"), tokens, spec);
  expect_facts_of(path("big.h5"), tokens, TokenType::u16, 50257, 100003, 0);

  tokens[9876543] = 50257;
  write_shard(path("big_bad.h5"), tokens, spec);
  expect_rejected(path("big_bad.h5"), {"/tokens[9876543] = 50257"});
}

TEST_F(InspectShard, BigEndianTokensChecksumAsLittleEndianBytes) {
  ShardSpec spec;
  spec.file_type = H5T_STD_U16BE;
  const auto tokens = random_tokens<uint16_t>(3000, 0, 999, 26);
  write_shard(path("be.h5"), tokens, spec);
  expect_facts_of(path("be.h5"), tokens, TokenType::u16, 1000, 1024, 0);
}

TEST_F(InspectShard, FactsCachedInTheIndexMatchUntilTheShardChanges) {
  const std::string p = good_shard("cached.h5");
  ShardIndex index;
  index.put(inspect_shard(p));
  const std::string file = path("index");
  std::string why;
  ASSERT_TRUE(index.save(file, &why)) << why;
  const ShardIndex loaded = ShardIndex::load(file);
  const auto hit = loaded.find(p, stat_shard(p));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->checksum, inspect_shard(p).checksum);

  write_shard(p, random_tokens<uint16_t>(6000, 0, 999, 8), ShardSpec{});
  EXPECT_FALSE(loaded.find(p, stat_shard(p)).has_value());
}

// ---- reading: [Direct reads] and HDF5 reads give the same tokens ------------------------------

// Reads random spans (many crossing chunk boundaries) with pread enabled and disabled and
// compares both with the tokens written; `direct` says whether the pread path must be taken.
template <typename T>
void expect_reads_exact(const std::string& p, const std::vector<T>& tokens, bool direct) {
  const ShardFacts facts = inspect_shard(p);
  for (const bool enable : {true, false}) {
    ReaderOptions o;
    o.vocab_size = 1 << 20;
    o.max_read_tokens = 300;
    o.cache_bytes_per_file = 1 << 16;
    o.direct_reads = enable;
    ShardReader reader({facts}, o);
    std::mt19937_64 rng(facts.num_tokens);
    std::vector<int32_t> got(300);
    for (int i = 0; i < 200; ++i) {
      const uint64_t count = 1 + rng() % 300;
      const uint64_t start = rng() % (tokens.size() - count + 1);
      std::fill(got.begin(), got.end(), -7);
      reader.read(0, start, count, got.data());
      for (uint64_t k = 0; k < count; ++k)
        ASSERT_EQ(got[k], static_cast<int32_t>(tokens[start + k]))
            << p << " direct=" << enable << " at " << start + k;
    }
    EXPECT_EQ(reader.direct_files(), enable && direct ? 1u : 0u) << p;
  }
}

TEST_F(InspectShard, DirectReadsEqualHdf5ReadsForEveryTypeAndLayout) {
  struct Case {
    const char* name;
    hsize_t chunk;
    int gzip;
    bool big_endian;
    bool direct;
  };
  const Case cases[] = {{"chunk1024", 1024, 0, false, true},
                        {"chunk7", 7, 0, false, true},
                        {"contiguous", 0, 0, false, true},
                        {"gzip", 1024, 4, false, false},
                        {"big_endian", 1024, 0, true, false}};
  for (const Case& c : cases) {
    ShardSpec spec;
    spec.chunk = c.chunk;
    spec.gzip = c.gzip;
    spec.vocab_size = 1000000;
    const std::string base = path(c.name);
    // One token type: its file type in the case's byte order, ids in [0, hi], a seed.
    auto one = [&]<typename T>(T, const char* suffix, hid_t le, hid_t be, T hi, int seed) {
      spec.file_type = c.big_endian ? be : le;
      const auto tokens = random_tokens<T>(4001, 0, hi, seed);
      write_shard(base + suffix, tokens, spec);
      expect_reads_exact(base + suffix, tokens, c.direct);
    };
    one(uint8_t{}, "_u8.h5", H5T_STD_U8LE, H5T_STD_U8BE, uint8_t{255}, 1);
    one(uint16_t{}, "_u16.h5", H5T_STD_U16LE, H5T_STD_U16BE, uint16_t{999}, 2);
    one(int32_t{}, "_i32.h5", H5T_STD_I32LE, H5T_STD_I32BE, int32_t{999999}, 3);
    one(uint32_t{}, "_u32.h5", H5T_STD_U32LE, H5T_STD_U32BE, uint32_t{999999}, 4);
  }
}

}  // namespace
}  // namespace dpt::datasets
