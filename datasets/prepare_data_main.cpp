// prepare-data: turns text and JSON Lines files into train/val HDF5 token shards with a
// byte-level tokenizer (docs/data-format.md); its sample recipes (prepare_samples.h) turn
// labelled data into sample shards.
//
// [prepare-data pipeline] Worker threads read and tokenize whole input files; they make no HDF5
// calls. The main thread is the only writer ([HDF5 thread], h5.h): it takes the tokenized files
// in input order, at most `threads + 1` of them claimed and not yet written, so memory stays at a
// few files. A document's split depends only on (seed, file index, document index), so the
// shards are byte-identical for any --threads.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/elapsed.h"
#include "common/errors.h"
#include "common/rng.h"
#include "datasets/json_line.h"
#include "datasets/prepare_samples.h"
#include "datasets/shard_format.h"
#include "datasets/shard_writer.h"

namespace {

using namespace dpt;
using namespace dpt::datasets;
namespace fs = std::filesystem;
namespace po = boost::program_options;

// Byte-level tokenizer: ids 0..255 are bytes, 256 ends a text (and so starts the next).
using Token = uint16_t;
constexpr Token kEndOfText = 256;
constexpr int64_t kVocabSize = 257;
constexpr TokenType kTokenType = TokenType::u16;
// Stream of common/rng.h for the train/val choice ("split"), offset by the file index.
constexpr uint64_t kSplitStream = 0x73706c6974ull << 24;

enum class Format { text, jsonl };

struct Options {
  std::string out;
  std::vector<std::string> inputs;
  std::string format = "auto";
  std::string text_field = "text";
  std::optional<std::string> doc_separator;
  double val_fraction = 0.01;
  uint64_t seed = 1337;
  int64_t shard_tokens = 33554432;
  int64_t chunk_tokens = 65536;
  std::string compression = "none";
  int gzip_level = 4;
  int threads = 0;
  bool overwrite = false;
};

struct Input {
  std::string path;
  Format format = Format::text;
  uint64_t bytes = 0;
};

// ---- Reading and tokenizing one file (worker threads) --------------------------------------

struct TokenizedFile {
  std::vector<Token> tokens;         // every document: kEndOfText, then its bytes
  std::vector<uint64_t> doc_starts;  // index of each document's kEndOfText in tokens
  uint64_t input_bytes = 0;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UsageError("cannot open input " + path + ": " + errno_string(errno) +
                     "; check the path and its permissions.");
  }
  std::string data;
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size > 0) {
    data.resize(static_cast<size_t>(size));
    in.read(data.data(), size);
    if (in.gcount() != size) {
      throw RuntimeFailure("reading input " + path + ": got " + std::to_string(in.gcount()) +
                           " of " + std::to_string(size) + " bytes (" + errno_string(errno) + ")");
    }
  }
  return data;
}

// Empty documents are dropped: a lone end-of-text teaches nothing.
void add_document(TokenizedFile& out, std::string_view bytes) {
  if (bytes.empty()) return;
  out.doc_starts.push_back(out.tokens.size());
  out.tokens.push_back(kEndOfText);
  const size_t at = out.tokens.size();
  out.tokens.resize(at + bytes.size());
  Token* dst = out.tokens.data() + at;
  for (size_t i = 0; i < bytes.size(); ++i)
    dst[i] = static_cast<unsigned char>(bytes[i]);
}

// Without a separator the whole file is one document. With one, a line equal to it (ignoring a
// trailing '\r') ends a document; the separator lines themselves are not part of any.
void tokenize_text(const std::string& data, const std::optional<std::string>& separator,
                   TokenizedFile& out) {
  out.tokens.reserve(data.size() + 1);
  if (!separator) {
    add_document(out, data);
    return;
  }
  size_t doc_begin = 0;
  size_t pos = 0;
  while (pos < data.size()) {
    const void* nl = std::memchr(data.data() + pos, '\n', data.size() - pos);
    const size_t line_end =
        nl ? static_cast<size_t>(static_cast<const char*>(nl) - data.data()) : data.size();
    std::string_view line(data.data() + pos, line_end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t next = nl ? line_end + 1 : data.size();
    if (line == *separator) {
      add_document(out, std::string_view(data.data() + doc_begin, pos - doc_begin));
      doc_begin = next;
    }
    pos = next;
  }
  add_document(out, std::string_view(data.data() + doc_begin, data.size() - doc_begin));
}

void tokenize_jsonl(const std::string& path, const std::string& data, const std::string& field,
                    TokenizedFile& out) {
  out.tokens.reserve(data.size() / 2);
  std::string text;
  size_t pos = 0;
  // A UTF-8 byte order mark is not JSON, but editors write one.
  if (data.compare(0, 3, "\xEF\xBB\xBF") == 0) pos = 3;
  for (uint64_t line_no = 1; pos < data.size(); ++line_no) {
    const void* nl = std::memchr(data.data() + pos, '\n', data.size() - pos);
    const size_t line_end =
        nl ? static_cast<size_t>(static_cast<const char*>(nl) - data.data()) : data.size();
    const std::string_view line(data.data() + pos, line_end - pos);
    pos = nl ? line_end + 1 : data.size();
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    const JsonLineMember member = json_line_member(line, field, &text);
    if (member.error) {
      throw UsageError(where + ":" + std::to_string(member.error->column) + ": bad JSON: " +
                       member.error->what + "; fix or remove the line (one JSON object per line).");
    }
    if (member.kind == JsonKind::missing) {
      // Parsed again only on this error path, to name the members the line does have.
      std::vector<std::string> keys;
      json_line_member(line, field, &text, &keys);
      std::string names;
      for (size_t k = 0; k < keys.size() && k < 8; ++k)
        names += (k ? ", " : "") + keys[k];
      if (keys.size() > 8) names += ", ...";
      throw UsageError(where + ": the object has no member \"" + field +
                       "\" (members: " + (names.empty() ? "none" : names) +
                       "); pass --text-field NAME to read another member.");
    }
    if (member.kind != JsonKind::string) {
      throw UsageError(where + ": member \"" + field + "\" is " + json_kind_name(member.kind) +
                       ", not a string; pass --text-field NAME to read another member.");
    }
    add_document(out, text);
  }
}

TokenizedFile tokenize_file(const Input& input, const Options& opt) {
  const std::string data = read_file(input.path);
  TokenizedFile out;
  out.input_bytes = data.size();
  if (input.format == Format::jsonl) {
    tokenize_jsonl(input.path, data, opt.text_field, out);
  } else {
    tokenize_text(data, opt.doc_separator, out);
  }
  return out;
}

// ---- The pipeline ([prepare-data pipeline]) --------------------------------------------------

class TokenizePipeline {
 public:
  TokenizePipeline(const std::vector<Input>& inputs, const Options& opt, int threads)
      : inputs_(inputs), opt_(opt), window_(static_cast<size_t>(threads) + 1) {
    const size_t n = std::min(inputs.size(), static_cast<size_t>(threads));
    try {
      for (size_t t = 0; t < n; ++t)
        workers_.emplace_back([this] { work(); });
    } catch (...) {
      stop();
      throw;
    }
  }
  ~TokenizePipeline() { stop(); }
  TokenizePipeline(const TokenizePipeline&) = delete;
  TokenizePipeline& operator=(const TokenizePipeline&) = delete;

  // The next file in input order; rethrows the error its worker met.
  TokenizedFile next() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_.count(consumed_) > 0; });
    auto it = done_.find(consumed_);
    Result r = std::move(it->second);
    done_.erase(it);
    ++consumed_;
    lock.unlock();
    cv_.notify_all();
    if (r.error) std::rethrow_exception(r.error);
    return std::move(r.file);
  }

 private:
  struct Result {
    TokenizedFile file;
    std::exception_ptr error;
  };

  void work() {
    for (;;) {
      size_t i;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] {
          return stop_ || claimed_ >= inputs_.size() || claimed_ < consumed_ + window_;
        });
        if (stop_ || claimed_ >= inputs_.size()) return;
        i = claimed_++;
      }
      Result r;
      try {
        r.file = tokenize_file(inputs_[i], opt_);
      } catch (...) {
        r.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        done_.emplace(i, std::move(r));
      }
      cv_.notify_all();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_)
      t.join();
    workers_.clear();
  }

  const std::vector<Input>& inputs_;
  const Options& opt_;
  const size_t window_;  // files claimed and not yet consumed, at most
  std::mutex mu_;
  std::condition_variable cv_;
  size_t claimed_ = 0;
  size_t consumed_ = 0;
  bool stop_ = false;
  std::map<size_t, Result> done_;
  std::vector<std::thread> workers_;
};

// ---- Shards of one split (writer thread) -----------------------------------------------------

// Cuts a split's token stream into shards of exactly shard_tokens tokens (the last one shorter).
// As in llm.c a document may continue into the next shard; that shard's /doc_offsets then starts
// with 0 for the continued part.
class SplitWriter {
 public:
  SplitWriter(fs::path dir, const Options& opt, std::vector<std::string>* written)
      : dir_(std::move(dir)), opt_(opt), written_(written) {
    shard_opt_.dtype = kTokenType;
    shard_opt_.vocab_size = kVocabSize;
    shard_opt_.chunk_tokens = static_cast<uint64_t>(std::min(opt.chunk_tokens, opt.shard_tokens));
    shard_opt_.gzip_level = opt.compression == "gzip" ? opt.gzip_level : 0;
    staging_.resize(65536);
  }

  void write_document(const Token* t, size_t n) {
    ++documents_;
    bool first = true;
    while (n > 0) {
      if (!shard_) open_shard();
      if (first) shard_->begin_document();
      first = false;
      const size_t room =
          static_cast<size_t>(static_cast<uint64_t>(opt_.shard_tokens) - shard_->size());
      size_t take = std::min(n, room);
      tokens_ += take;
      n -= take;
      while (take > 0) {
        const size_t k = std::min(take, staging_.size());
        for (size_t i = 0; i < k; ++i)
          staging_[i] = t[i];
        shard_->append(staging_.data(), k);
        t += k;
        take -= k;
      }
      if (shard_->size() == static_cast<uint64_t>(opt_.shard_tokens)) close_shard();
    }
  }

  void finish() {
    if (shard_) close_shard();
  }

  uint64_t documents() const { return documents_; }
  uint64_t tokens() const { return tokens_; }
  uint64_t shards() const { return shards_; }

 private:
  void open_shard() {
    char name[32];
    std::snprintf(name, sizeof(name), "shard-%06llu.h5", static_cast<unsigned long long>(shards_));
    shard_.emplace((dir_ / name).string(), shard_opt_);
  }

  void close_shard() {
    shard_->finish();
    written_->push_back(shard_->path());
    shard_.reset();
    ++shards_;
  }

  fs::path dir_;
  const Options& opt_;
  std::vector<std::string>* written_;
  ShardWriterOptions shard_opt_;
  std::optional<ShardWriter> shard_;
  std::vector<uint32_t> staging_;
  uint64_t documents_ = 0;
  uint64_t tokens_ = 0;
  uint64_t shards_ = 0;
};

// ---- Progress ----------------------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

std::string human_bytes(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string human_count(double n) {
  const char* units[] = {"", "k", "M", "G", "T"};
  int u = 0;
  while (n >= 1000 && u < 4) {
    n /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f%s" : "%.1f%s", n, units[u]);
  return buf;
}

std::string clock_text(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%ld:%02ld", s / 60, s % 60);
  }
  return buf;
}

// One stderr line at most every second; runs shorter than a second print none.
class Progress {
 public:
  Progress(size_t files, uint64_t bytes) : files_(files), total_bytes_(bytes) {}

  void update(size_t files_done, double bytes_done, uint64_t tokens) {
    const double now = seconds_since(start_);
    if (now - last_ < 1.0) return;
    last_ = now;
    const double rate = bytes_done / now;
    const double left = static_cast<double>(total_bytes_) - bytes_done;
    // Before the writer has seen 1% of the input the rate says little (one big file is still
    // being tokenized).
    const bool known = bytes_done >= 0.01 * static_cast<double>(total_bytes_) && rate > 0;
    const std::string eta = known ? clock_text(left / rate) : "?";
    std::fprintf(stderr, "prepare-data: %zu/%zu files | %s | %.1f MB/s | %s tokens | ETA %s\n",
                 files_done, files_, human_bytes(bytes_done).c_str(), rate / 1e6,
                 human_count(static_cast<double>(tokens)).c_str(), eta.c_str());
  }

  double elapsed() const { return seconds_since(start_); }

 private:
  size_t files_;
  uint64_t total_bytes_;
  Clock::time_point start_ = Clock::now();
  double last_ = 0;
};

// ---- Command line --------------------------------------------------------------------------

std::string short_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

bool has_suffix(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix.data(), suffix.size()) == 0;
}

// Returns nullopt for --help (after printing it).
std::optional<Options> parse_options(int argc, char** argv) {
  Options o;
  std::string seed_text = std::to_string(o.seed);
  std::string separator;
  // One option per line reads better than clang-format's packing of Boost's chained calls.
  // clang-format off
  po::options_description visible(
      "prepare-data: text and JSON Lines files -> HDF5 token shards (byte-level tokenizer,\n"
      "vocab_size 257: ids 0..255 are bytes, 256 is end-of-text; dtype uint16)\n\n"
      "Usage: prepare-data --out DIR [options] INPUT...\n\n"
      "Writes DIR/train/shard-000000.h5, ... and DIR/val/shard-000000.h5, ...; every document\n"
      "is an end-of-text token followed by its bytes. Options");
  visible.add_options()
      ("help,h", "print this help and exit")
      ("out,o", po::value<std::string>(&o.out), "output directory (created if missing)")
      ("format", po::value<std::string>(&o.format)->default_value(o.format),
       "input format: auto (*.jsonl, *.json, *.ndjson are JSON Lines, others text), text, jsonl")
      ("text-field", po::value<std::string>(&o.text_field)->default_value(o.text_field),
       "JSON Lines: the string member of each object that holds the document")
      ("doc-separator", po::value<std::string>(&separator),
       "text: a line equal to this separates documents (e.g. % for fortune files); "
       "without it each text file is one document")
      ("val-fraction", po::value<double>(&o.val_fraction)->default_value(o.val_fraction),
       "fraction of documents written to DIR/val, in [0, 1]")
      ("seed", po::value<std::string>(&seed_text)->default_value(seed_text),
       "seed of the train/val choice (an integer in [0, 2^64))")
      ("shard-tokens", po::value<int64_t>(&o.shard_tokens)->default_value(o.shard_tokens),
       "tokens per shard (the last shard of a split holds the rest)")
      ("chunk-tokens", po::value<int64_t>(&o.chunk_tokens)->default_value(o.chunk_tokens),
       "tokens per HDF5 chunk (at most --shard-tokens)")
      ("compression", po::value<std::string>(&o.compression)->default_value(o.compression),
       "chunk compression: none or gzip")
      ("gzip-level", po::value<int>(&o.gzip_level)->default_value(o.gzip_level),
       "gzip level 1..9 (with --compression gzip)")
      ("threads", po::value<int>(&o.threads)->default_value(o.threads),
       "worker threads reading and tokenizing files (0: the machine's hardware threads)")
      ("overwrite", po::bool_switch(&o.overwrite),
       "remove *.h5 already in DIR/train and DIR/val first");
  po::options_description hidden;
  hidden.add_options()
      ("input", po::value<std::vector<std::string>>(&o.inputs), "input files");
  // clang-format on
  po::options_description all;
  all.add(visible).add(hidden);
  po::positional_options_description positional;
  positional.add("input", -1);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + ". Run 'prepare-data --help' for the options.");
  }
  if (vm.count("help")) {
    std::ostringstream help;
    help << visible << "\n";
    std::fputs(help.str().c_str(), stdout);
    return std::nullopt;
  }
  if (vm.count("doc-separator")) o.doc_separator = separator;

  auto require = [](bool ok, const std::string& msg) {
    if (!ok) throw UsageError(msg);
  };
  require(!o.out.empty(), "no output directory: pass --out DIR.");
  require(!o.inputs.empty(),
          "no input files: pass text or JSON Lines files after the options (prepare-data --out "
          "DIR FILE...).");
  require(o.format == "auto" || o.format == "text" || o.format == "jsonl",
          "--format " + o.format + " is not one of auto, text, jsonl.");
  require(!o.text_field.empty(), "--text-field must not be empty.");
  require(!o.doc_separator || o.doc_separator->find('\n') == std::string::npos,
          "--doc-separator must be one line (no newline).");
  require(o.val_fraction >= 0 && o.val_fraction <= 1,
          "--val-fraction " + short_number(o.val_fraction) + " is not in [0, 1].");
  const bool digits = !seed_text.empty() && seed_text.size() <= 20 &&
                      seed_text.find_first_not_of("0123456789") == std::string::npos;
  errno = 0;
  o.seed = digits ? std::strtoull(seed_text.c_str(), nullptr, 10) : 0;
  require(digits && errno != ERANGE,
          "--seed " + seed_text + " is not an integer in [0, 2^64): pass e.g. --seed 42.");
  require(o.shard_tokens >= 2,
          "--shard-tokens must be at least 2, got " + std::to_string(o.shard_tokens) + ".");
  require(o.chunk_tokens >= 1,
          "--chunk-tokens must be positive, got " + std::to_string(o.chunk_tokens) + ".");
  require(o.compression == "none" || o.compression == "gzip",
          "--compression " + o.compression + " is not one of none, gzip.");
  require(o.gzip_level >= 1 && o.gzip_level <= 9,
          "--gzip-level " + std::to_string(o.gzip_level) + " is not in 1..9.");
  require(vm["gzip-level"].defaulted() || o.compression == "gzip",
          "--gzip-level applies to gzip compression: add --compression gzip.");
  require(o.threads >= 0, "--threads must be >= 0 (0: the machine's hardware threads).");
  if (o.threads == 0)
    o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return o;
}

// Every input must be a readable regular file: found before any output is touched.
std::vector<Input> check_inputs(const Options& o) {
  std::vector<Input> inputs;
  for (const std::string& path : o.inputs) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      throw UsageError("input " + path + ": " + errno_string(errno) + "; check the path.");
    }
    if (S_ISDIR(st.st_mode)) {
      throw UsageError("input " + path + " is a directory; pass the files in it (e.g. " + path +
                       "/*).");
    }
    if (::access(path.c_str(), R_OK) != 0) {
      throw UsageError("input " + path + " is not readable: " + errno_string(errno) + ".");
    }
    Input in;
    in.path = path;
    in.bytes = static_cast<uint64_t>(st.st_size);
    if (o.format == "auto") {
      in.format =
          has_suffix(path, ".jsonl") || has_suffix(path, ".json") || has_suffix(path, ".ndjson")
              ? Format::jsonl
              : Format::text;
    } else {
      in.format = o.format == "jsonl" ? Format::jsonl : Format::text;
    }
    inputs.push_back(in);
  }
  return inputs;
}

// Creates DIR/train and DIR/val; refuses (or with --overwrite removes) shards already there.
void prepare_output(const Options& o) {
  std::vector<fs::path> old;
  for (const char* split : {"train", "val"}) {
    const fs::path dir = fs::path(o.out) / split;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) {
      throw UsageError("cannot create output directory " + dir.string() + ": " +
                       (ec ? ec.message() : "a file has that name") + "; choose another --out.");
    }
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".h5") old.push_back(e.path());
    }
  }
  if (old.empty()) return;
  std::sort(old.begin(), old.end());
  if (!o.overwrite) {
    throw UsageError(o.out + " already holds " + std::to_string(old.size()) +
                     " shard file(s) (such as " + old.front().string() +
                     "): remove them or pass --overwrite to replace them.");
  }
  for (const fs::path& p : old) {
    std::error_code ec;
    fs::remove(p, ec);
    if (ec) throw UsageError("--overwrite: cannot remove " + p.string() + ": " + ec.message());
  }
}

int run(int argc, char** argv) {
  const std::optional<Options> parsed = parse_options(argc, argv);
  if (!parsed) return 0;
  const Options& opt = *parsed;
  const std::vector<Input> inputs = check_inputs(opt);
  uint64_t total_bytes = 0;
  for (const Input& in : inputs)
    total_bytes += in.bytes;
  prepare_output(opt);

  std::vector<std::string> written;  // finished shards, removed again if the run fails
  Progress progress(inputs.size(), total_bytes);
  try {
    SplitWriter train(fs::path(opt.out) / "train", opt, &written);
    SplitWriter val(fs::path(opt.out) / "val", opt, &written);
    TokenizePipeline pipeline(inputs, opt, opt.threads);
    uint64_t bytes_done = 0;
    for (size_t f = 0; f < inputs.size(); ++f) {
      const TokenizedFile file = pipeline.next();
      const size_t docs = file.doc_starts.size();
      for (size_t d = 0; d < docs; ++d) {
        const uint64_t begin = file.doc_starts[d];
        const uint64_t end = d + 1 < docs ? file.doc_starts[d + 1] : file.tokens.size();
        const bool to_val = random_unit(opt.seed, kSplitStream + f, d) < opt.val_fraction;
        (to_val ? val : train).write_document(file.tokens.data() + begin, end - begin);
        if (d % 1024 == 0) {
          const double part = static_cast<double>(end) / static_cast<double>(file.tokens.size());
          progress.update(f, static_cast<double>(bytes_done) + part * file.input_bytes,
                          train.tokens() + val.tokens());
        }
      }
      bytes_done += file.input_bytes;
      progress.update(f + 1, static_cast<double>(bytes_done), train.tokens() + val.tokens());
    }
    train.finish();
    val.finish();

    const double secs = progress.elapsed();
    std::printf("prepare-data: %zu files, %.1f MB in %.2f s (%.1f MB/s) -> %s\n", inputs.size(),
                total_bytes / 1e6, secs, total_bytes / 1e6 / secs, opt.out.c_str());
    std::printf("  documents  train %llu  val %llu\n",
                static_cast<unsigned long long>(train.documents()),
                static_cast<unsigned long long>(val.documents()));
    std::printf("  tokens     train %llu  val %llu\n",
                static_cast<unsigned long long>(train.tokens()),
                static_cast<unsigned long long>(val.tokens()));
    std::printf("  shards     train %llu  val %llu\n",
                static_cast<unsigned long long>(train.shards()),
                static_cast<unsigned long long>(val.shards()));
  } catch (...) {
    // A partial output would pass for a whole one: remove what this run wrote.
    for (const std::string& p : written)
      ::unlink(p.c_str());
    throw;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    // fashion-mnist, fortune-classes, co2: sample shards (prepare_samples.h).
    const int recipe = dpt::datasets::run_sample_recipe(argc, argv);
    if (recipe >= 0) return recipe;
    return run(argc, argv);
  } catch (...) {
    return report_exception("prepare-data");
  }
}
