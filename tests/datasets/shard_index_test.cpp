// The shard index: round trips every fact, goes stale with the file, survives damage as an
// empty index, and saves atomically or reports why it could not.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "common/hash.h"
#include "datasets/shard_index.h"

namespace dpt::datasets {
namespace {

namespace fs = std::filesystem;

class ShardIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "dpt-index-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = fs::canonical(tmpl).string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // A stand-in shard: the index only looks at the file's name, size and mtime.
  std::string make_file(const std::string& name, size_t bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << std::string(bytes, 'x');
    return p;
  }

  // Facts with a distinct value in every field, keyed to the file's current stamp.
  static ShardFacts facts_for(const std::string& p, uint64_t salt) {
    const FileStamp s = stat_shard(p);
    ShardFacts f;
    f.path = p;
    f.file_size = s.size;
    f.mtime_ns = s.mtime_ns;
    f.dtype = TokenType::i32;
    f.num_tokens = 123456789012 + salt;
    f.min_id = 3 + salt;
    f.max_id = 4000000000 + salt;
    f.vocab_size = 4000000001 + static_cast<int64_t>(salt);
    f.num_docs = 77 + salt;
    f.chunk_tokens = 4099 + salt;
    f.checksum = 0xfedcba9876543210ull ^ salt;
    return f;
  }

  std::string read_text(const std::string& p) const {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }

  void write_text(const std::string& p, const std::string& text) const {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  }

  std::string dir_;
};

void expect_same_facts(const ShardFacts& a, const ShardFacts& b) {
  EXPECT_EQ(a.path, b.path);
  EXPECT_EQ(a.file_size, b.file_size);
  EXPECT_EQ(a.mtime_ns, b.mtime_ns);
  EXPECT_EQ(a.dtype, b.dtype);
  EXPECT_EQ(a.num_tokens, b.num_tokens);
  EXPECT_EQ(a.min_id, b.min_id);
  EXPECT_EQ(a.max_id, b.max_id);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.num_docs, b.num_docs);
  EXPECT_EQ(a.chunk_tokens, b.chunk_tokens);
  EXPECT_EQ(a.checksum, b.checksum);
}

TEST_F(ShardIndexTest, SaveAndLoadRoundTripsEveryField) {
  ShardIndex index;
  std::vector<ShardFacts> all;
  for (uint64_t i = 0; i < 5; ++i) {
    all.push_back(facts_for(make_file("s" + std::to_string(i) + ".h5", 10 + i), i));
    all.back().dtype = static_cast<TokenType>(i % 4);
    index.put(all.back());
  }
  EXPECT_EQ(index.size(), 5u);
  std::string why;
  ASSERT_TRUE(index.save(path(".dptrain-index"), &why)) << why;
  EXPECT_EQ(read_text(path(".dptrain-index")).rfind("dptrain-shard-index 2\n", 0), 0u);

  const ShardIndex loaded = ShardIndex::load(path(".dptrain-index"));
  ASSERT_EQ(loaded.size(), 5u);
  for (const ShardFacts& f : all) {
    const auto hit = loaded.find(f.path, stat_shard(f.path));
    ASSERT_TRUE(hit.has_value()) << f.path;
    expect_same_facts(*hit, f);
  }
}

TEST_F(ShardIndexTest, PathsWithTabsNewlinesAndBackslashesRoundTrip) {
  ShardIndex index;
  const std::string odd = make_file("a\tb\nc\\t\\d\r.h5", 3);
  index.put(facts_for(odd, 1));
  index.put(facts_for(make_file("plain.h5", 4), 2));
  std::string why;
  ASSERT_TRUE(index.save(path("idx"), &why)) << why;
  const ShardIndex loaded = ShardIndex::load(path("idx"));
  ASSERT_EQ(loaded.size(), 2u);
  const auto hit = loaded.find(odd, stat_shard(odd));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->path, odd);
}

TEST_F(ShardIndexTest, LookupUsesTheCanonicalPath) {
  const std::string p = make_file("real.h5", 8);
  fs::create_directory(path("sub"));
  fs::create_symlink(p, path("sub/link.h5"));
  ShardIndex index;
  index.put(facts_for(path("sub/../sub/link.h5"), 0));
  const auto hit = index.find(p, stat_shard(p));
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->path, p);
}

TEST_F(ShardIndexTest, EntryIsStaleWhenTheSizeChanges) {
  const std::string p = make_file("grow.h5", 100);
  ShardIndex index;
  index.put(facts_for(p, 0));
  const FileStamp before = stat_shard(p);
  ASSERT_TRUE(index.find(p, before).has_value());
  std::ofstream(p, std::ios::binary | std::ios::app) << "more";
  // Keep the old mtime, so only the size tells the change.
  const struct timespec times[2] = {{0, UTIME_OMIT},
                                    {before.mtime_ns / 1000000000, before.mtime_ns % 1000000000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, 0), 0);
  const FileStamp after = stat_shard(p);
  EXPECT_EQ(after.mtime_ns, before.mtime_ns);
  EXPECT_EQ(after.size, before.size + 4);
  EXPECT_FALSE(index.find(p, after).has_value());
}

TEST_F(ShardIndexTest, EntryIsStaleWhenTheMtimeChanges) {
  const std::string p = make_file("touched.h5", 100);
  ShardIndex index;
  index.put(facts_for(p, 0));
  const FileStamp before = stat_shard(p);
  // One nanosecond later: file systems with ns timestamps must see it.
  const int64_t t = before.mtime_ns + 1;
  const struct timespec times[2] = {{0, UTIME_OMIT}, {t / 1000000000, t % 1000000000}};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, 0), 0);
  const FileStamp after = stat_shard(p);
  EXPECT_EQ(after.size, before.size);
  ASSERT_EQ(after.mtime_ns, t);
  EXPECT_FALSE(index.find(p, after).has_value());
  EXPECT_TRUE(index.find(p, before).has_value());
}

TEST_F(ShardIndexTest, MissingIndexLoadsAsEmpty) {
  EXPECT_EQ(ShardIndex::load(path("nothing-here")).size(), 0u);
  EXPECT_EQ(ShardIndex::load(dir_).size(), 0u);  // a directory is no index either
}

TEST_F(ShardIndexTest, DamagedIndexLoadsAsEmpty) {
  ShardIndex index;
  index.put(facts_for(make_file("a.h5", 1), 0));
  index.put(facts_for(make_file("b.h5", 2), 1));
  std::string why;
  ASSERT_TRUE(index.save(path("idx"), &why)) << why;
  const std::string good = read_text(path("idx"));
  ASSERT_EQ(ShardIndex::load(path("idx")).size(), 2u);

  const size_t last_tab = good.rfind('\t');
  const size_t a_line = good.find(dir_ + "/a.h5");
  const std::vector<std::pair<std::string, std::string>> damage = {
      {"wrong magic", "dptrain-shard-index 1" + good.substr(good.find('\n'))},
      {"foreign file", "hello\n"},
      {"empty file", ""},
      {"cut mid-line", good.substr(0, good.size() - 5)},
      {"short checksum", good.substr(0, good.size() - 2) + "\n"},
      {"checksum not hex", good.substr(0, last_tab) + "\t0123456789abcdzz\n"},
      {"missing field", good.substr(0, last_tab) + "\n"},
      {"extra field", good.substr(0, good.size() - 1) + "\t0\n"},
      {"unknown dtype", std::string(good).replace(good.find("\tint32\t", a_line), 7, "\tint64\t")},
      {"bad escape", std::string(good).insert(a_line + dir_.size() + 1, "\\q")},
      {"relative path", std::string(good).erase(a_line, 1)},
      {"blank line", good + "\n"},
  };
  for (const auto& [what, text] : damage) {
    write_text(path("idx"), text);
    EXPECT_EQ(ShardIndex::load(path("idx")).size(), 0u) << what;
  }
}

TEST_F(ShardIndexTest, SaveIntoUnwritableLocationReturnsFalseWithAReason) {
  ShardIndex index;
  index.put(facts_for(make_file("a.h5", 1), 0));
  std::string why;
  EXPECT_FALSE(index.save(path("no/such/dir/.dptrain-index"), &why));
  EXPECT_NE(why.find("no/such/dir/.dptrain-index.tmp."), std::string::npos) << why;
  why.clear();
  EXPECT_FALSE(index.save("/proc/dptrain-index-test", &why));  // read-only even for root
  EXPECT_FALSE(why.empty());
  if (::geteuid() != 0) {
    fs::create_directory(path("ro"));
    fs::permissions(path("ro"), fs::perms::owner_read | fs::perms::owner_exec);
    why.clear();
    EXPECT_FALSE(index.save(path("ro/.dptrain-index"), &why));
    EXPECT_NE(why.find("Permission denied"), std::string::npos) << why;
  }
}

TEST_F(ShardIndexTest, SaveReplacesTheOldIndexAndLeavesNoTemporaryFiles) {
  ShardIndex index;
  index.put(facts_for(make_file("a.h5", 1), 0));
  std::string why;
  ASSERT_TRUE(index.save(path(".dptrain-index"), &why)) << why;
  index.put(facts_for(make_file("b.h5", 2), 1));
  ASSERT_TRUE(index.save(path(".dptrain-index"), &why)) << why;
  EXPECT_EQ(ShardIndex::load(path(".dptrain-index")).size(), 2u);

  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_))
    names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{".dptrain-index", "a.h5", "b.h5"}));
}

TEST_F(ShardIndexTest, SaveIsDeterministicForTheSameEntries) {
  ShardIndex one, two;
  std::vector<ShardFacts> all;
  for (int i = 0; i < 20; ++i)
    all.push_back(facts_for(make_file(std::to_string(i), 1), i));
  for (const auto& f : all)
    one.put(f);
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    two.put(*it);
  std::string why;
  ASSERT_TRUE(one.save(path("one"), &why)) << why;
  ASSERT_TRUE(two.save(path("two"), &why)) << why;
  EXPECT_EQ(read_text(path("one")), read_text(path("two")));
}

TEST_F(ShardIndexTest, StatShardRejectsMissingFilesAndDirectories) {
  try {
    stat_shard(path("absent.h5"));
    ADD_FAILURE() << "missing file accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(path("absent.h5")), std::string::npos) << e.what();
  }
  fs::create_directory(path("d.h5"));
  EXPECT_THROW(stat_shard(path("d.h5")), UsageError);
  const FileStamp s = stat_shard(make_file("f.h5", 42));
  EXPECT_EQ(s.size, 42u);
  EXPECT_GT(s.mtime_ns, 0);
}

TEST(IndexPathFor, DefaultsToAHiddenFileBesideTheFirstShard) {
  EXPECT_EQ(index_path_for({"/no/such/data/train/s0.h5", "/other/s1.h5"}, ""),
            "/no/such/data/train/.dptrain-index");
  // Relative paths resolve against the working directory.
  EXPECT_EQ(index_path_for({"x/s.h5"}, ""), (fs::current_path() / "x" / ".dptrain-index").string());
}

TEST(IndexPathFor, CacheDirNamesEachIndexByTheShardsDirectory) {
  const std::string dir = "/no/such/data/train";
  const std::string a = index_path_for({dir + "/s0.h5"}, "/cache");
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(fnv1a64(dir.data(), dir.size())));
  EXPECT_EQ(a, std::string("/cache/") + hex + ".dptrain-index");
  EXPECT_EQ(index_path_for({dir + "/s9.h5"}, "/cache"), a);  // same directory, same index
  EXPECT_NE(index_path_for({"/no/such/data/val/s0.h5"}, "/cache"), a);
}

}  // namespace
}  // namespace dpt::datasets
