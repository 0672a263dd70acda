// The shard index ([Shard index]): a text cache of inspect_shard() results, written atomically.
//
// File layout, one record per line, fields separated by tabs:
//   dptrain-shard-index 1
//   # path  file_size  mtime_ns  dtype  num_tokens  min_id  max_id  vocab_size  num_docs ...
//   /abs/path/shard_0000.h5  1048576  1732500000123456789  uint16  524288  0  50256  50257 ...
// Paths escape backslash, tab, newline and carriage return as \\ \t \n \r, so any file name
// survives. Any line that does not parse makes the whole index count as empty: a damaged cache
// costs a rescan, never a wrong answer.
#include "datasets/shard_index.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "common/errors.h"
#include "common/hash.h"
#include "storage/durable.h"

namespace dpt::datasets {

using storage::write_file_atomic;
namespace {

namespace fs = std::filesystem;

// Version 2: entries were inspected with [Foreign data] refused; an index of version 1 is
// rebuilt, so a shard it admitted is inspected again.
constexpr const char* kMagic = "dptrain-shard-index 2";
constexpr const char* kColumns =
    "# path\tfile_size\tmtime_ns\tdtype\tnum_tokens\tmin_id\tmax_id\tvocab_size\tnum_docs\t"
    "chunk_tokens\tchecksum";
constexpr size_t kFields = 11;

// realpath(3), or the lexically normal absolute path when the file is gone: entries and
// lookups must agree on one spelling of each shard.
std::string canonical_path(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
  if (real) return real.get();
  std::error_code ec;
  const fs::path abs = fs::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

std::string escape_path(const std::string& path) {
  std::string out;
  out.reserve(path.size());
  for (const char c : path) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
  return out;
}

bool unescape_path(std::string_view text, std::string* out) {
  out->clear();
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      *out += text[i];
      continue;
    }
    if (++i == text.size()) return false;
    switch (text[i]) {
      case '\\':
        *out += '\\';
        break;
      case 't':
        *out += '\t';
        break;
      case 'n':
        *out += '\n';
        break;
      case 'r':
        *out += '\r';
        break;
      default:
        return false;
    }
  }
  return true;
}

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The whole field must be a number: "12x" or "" is damage, not 12 or 0.
template <typename T>
bool parse_number(std::string_view s, T* out, int base = 10) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return ec == std::errc() && end == s.data() + s.size();
}

bool parse_dtype(std::string_view s, TokenType* out) {
  for (const TokenType t : {TokenType::u8, TokenType::u16, TokenType::i32, TokenType::u32}) {
    if (s == token_type_name(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

bool parse_record(std::string_view line, ShardFacts* f) {
  std::string_view fields[kFields];
  size_t n = 0;
  for (size_t start = 0;;) {
    const size_t tab = line.find('\t', start);
    if (n == kFields) return false;
    fields[n++] = line.substr(start, tab == std::string_view::npos ? tab : tab - start);
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  if (n != kFields) return false;
  return unescape_path(fields[0], &f->path) && !f->path.empty() && f->path[0] == '/' &&
         parse_number(fields[1], &f->file_size) && parse_number(fields[2], &f->mtime_ns) &&
         parse_dtype(fields[3], &f->dtype) && parse_number(fields[4], &f->num_tokens) &&
         parse_number(fields[5], &f->min_id) && parse_number(fields[6], &f->max_id) &&
         parse_number(fields[7], &f->vocab_size) && parse_number(fields[8], &f->num_docs) &&
         parse_number(fields[9], &f->chunk_tokens) && fields[10].size() == 16 &&
         parse_number(fields[10], &f->checksum, 16);
}

std::string format_record(const ShardFacts& f) {
  std::string s = escape_path(f.path);
  for (const std::string& field :
       {std::to_string(f.file_size), std::to_string(f.mtime_ns),
        std::string(token_type_name(f.dtype)), std::to_string(f.num_tokens),
        std::to_string(f.min_id), std::to_string(f.max_id), std::to_string(f.vocab_size),
        std::to_string(f.num_docs), std::to_string(f.chunk_tokens), hex16(f.checksum)}) {
    s += '\t';
    s += field;
  }
  s += '\n';
  return s;
}

}  // namespace

namespace {
FileStamp stamp_of(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}
}  // namespace

FileStamp stat_shard(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      throw UsageError("shard " + path +
                       " does not exist; check the path, directory or glob given for the "
                       "dataset");
    }
    throw UsageError("shard " + path + " cannot be examined: " + errno_string(err) +
                     "; check the path and the permissions of the directories on it");
  }
  if (!S_ISREG(st.st_mode)) {
    const char* kind = S_ISDIR(st.st_mode) ? "a directory" : "not a regular file";
    throw UsageError("shard " + path + " is " + kind +
                     ", not a regular file; a shard is one HDF5 file: remove or rename it, or "
                     "point the dataset at a directory of *.h5 files, a glob or one file");
  }
  return stamp_of(st);
}

void check_unchanged(const std::string& path, FileStamp indexed) {
  const std::string fix =
      "; restore it as it was (or remove it from the dataset) and rerun: --resume auto continues "
      "from the newest checkpoint and the start re-validates the shards";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    throw UsageError("shard " + path + " was " +
                     (errno == ENOENT ? std::string("deleted")
                                      : "made unreadable (" + errno_string(errno) + ")") +
                     " while training (it was indexed with " + std::to_string(indexed.size) +
                     " bytes)" + fix);
  }
  const FileStamp now = stamp_of(st);
  if (now.size != indexed.size || now.mtime_ns != indexed.mtime_ns) {
    const char* how = now.size < indexed.size   ? "truncated"
                      : now.size > indexed.size ? "extended"
                                                : "rewritten";
    throw UsageError("shard " + path + " changed while training (" + how +
                     ": it was indexed with " + std::to_string(indexed.size) + " bytes, it has " +
                     std::to_string(now.size) + " bytes now" +
                     (now.mtime_ns != indexed.mtime_ns ? ", modified since" : "") + ")" + fix);
  }
}

std::string index_path_for(const std::vector<std::string>& shards, const std::string& cache_dir) {
  DPT_CHECK(!shards.empty(), "index_path_for needs at least one shard");
  const std::string dir = fs::path(canonical_path(shards.front())).parent_path().string();
  if (cache_dir.empty()) return (fs::path(dir) / ".dptrain-index").string();
  // One cache directory serves many datasets: name each index after its shards' directory.
  return (fs::path(cache_dir) / (hex16(fnv1a64(dir.data(), dir.size())) + ".dptrain-index"))
      .string();
}

ShardIndex ShardIndex::load(const std::string& file) {
  ShardIndex index;
  std::ifstream in(file, std::ios::binary);
  if (!in) return index;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return index;
  const std::string all = text.str();
  // Every line, the last included, ends in '\n': a missing one means the file was cut short.
  if (all.empty() || all.back() != '\n') return index;

  ShardIndex parsed;
  size_t line_no = 0;
  for (size_t start = 0; start < all.size(); ++line_no) {
    const size_t end = all.find('\n', start);
    const std::string_view line(all.data() + start, end - start);
    start = end + 1;
    if (line_no == 0) {
      if (line != kMagic) return index;
      continue;
    }
    if (!line.empty() && line[0] == '#') continue;
    ShardFacts f;
    if (!parse_record(line, &f)) return index;
    parsed.entries_[f.path] = std::move(f);
  }
  return parsed;
}

std::optional<ShardFacts> ShardIndex::find(const std::string& path, FileStamp stamp) const {
  const auto it = entries_.find(canonical_path(path));
  if (it == entries_.end()) return std::nullopt;
  if (it->second.file_size != stamp.size || it->second.mtime_ns != stamp.mtime_ns) {
    return std::nullopt;
  }
  return it->second;
}

void ShardIndex::put(const ShardFacts& facts) {
  ShardFacts f = facts;
  f.path = canonical_path(facts.path);
  entries_[f.path] = std::move(f);
}

bool ShardIndex::save(const std::string& file, std::string* why) const {
  std::string scratch;
  if (why == nullptr) why = &scratch;

  // Sorted, so the same entries always make the same file.
  std::vector<const ShardFacts*> sorted;
  sorted.reserve(entries_.size());
  for (const auto& [path, facts] : entries_)
    sorted.push_back(&facts);
  std::sort(sorted.begin(), sorted.end(),
            [](const ShardFacts* a, const ShardFacts* b) { return a->path < b->path; });
  std::string text = std::string(kMagic) + "\n" + kColumns + "\n";
  for (const ShardFacts* f : sorted)
    text += format_record(*f);

  return write_file_atomic(file, text, why);
}

}  // namespace dpt::datasets
