// The sample recipes of prepare-data (prepare_samples.h).
#include "datasets/prepare_samples.h"

#include <zlib.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "common/rng.h"
#include "datasets/sample_writer.h"

namespace dpt::datasets {

namespace {

namespace fs = std::filesystem;
namespace po = boost::program_options;

// Stream of common/rng.h for the held-out choice of fortunes.
constexpr uint64_t kHoldOutStream = 0x686f6c64ull;

// Parses argv (after the recipe's name) into `options`; nullopt-like false after --help.
bool parse(const char* recipe, const char* usage, po::options_description& options, int argc,
           char** argv, po::variables_map& vm,
           po::positional_options_description* positional = nullptr) {
  options.add_options()("help", "this text");
  try {
    po::command_line_parser p(argc - 1, argv + 1);
    p.options(options);
    if (positional) p.positional(*positional);
    po::store(p.run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(recipe) + ": " + e.what() + ". Run 'prepare-data " + recipe +
                     " --help' for the options.");
  }
  if (vm.count("help")) {
    std::ostringstream out;
    out << usage << "\n\n" << options << "\n";
    std::fputs(out.str().c_str(), stdout);
    return false;
  }
  return true;
}

// DIR/train and DIR/val made (and emptied of *.h5 with overwrite, else refused when not empty).
void make_split_dirs(const std::string& out, bool overwrite) {
  for (const char* split : {"train", "val"}) {
    const fs::path dir = fs::path(out) / split;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
      throw UsageError("--out " + out + ": cannot create " + dir.string() + ": " + ec.message());
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() != ".h5") continue;
      if (!overwrite) {
        throw UsageError(
            "--out " + out + ": " + e.path().string() +
            " exists; pass --overwrite to replace the shards, or choose another --out");
      }
      fs::remove(e.path());
    }
  }
}

// ---- fashion-mnist -----------------------------------------------------------------------------

// The whole of a gzip-compressed (or plain) file.
std::vector<uint8_t> read_gz(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f)
    throw UsageError("cannot open " + path + ": install dataset-fashion-mnist, or pass --from");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof(buf))) > 0)
    out.insert(out.end(), buf, buf + n);
  const bool failed = n < 0;
  gzclose(f);
  if (failed) throw UsageError(path + ": not a readable gzip file (damaged download?)");
  return out;
}

uint32_t big_endian(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// IDX files (the MNIST format): a big-endian magic 0x0000 08 NDIM, NDIM sizes, then uint8 data.
struct Idx {
  std::vector<uint32_t> dims;
  std::vector<uint8_t> data;
};

Idx read_idx(const std::string& path, uint32_t ndim) {
  const std::vector<uint8_t> raw = read_gz(path);
  const size_t header = 4 + 4 * size_t{ndim};
  if (raw.size() < header || big_endian(raw.data()) != (0x0800u | ndim)) {
    throw UsageError(path + ": not an IDX file of " + std::to_string(ndim) +
                     "-dimensional uint8 data (MNIST format)");
  }
  Idx idx;
  uint64_t n = 1;
  for (uint32_t i = 0; i < ndim; ++i) {
    idx.dims.push_back(big_endian(raw.data() + 4 + 4 * i));
    n *= idx.dims.back();
  }
  if (raw.size() != header + n) {
    throw UsageError(path + ": holds " + std::to_string(raw.size() - header) +
                     " bytes of data, its header says " + std::to_string(n));
  }
  idx.data.assign(raw.begin() + static_cast<std::ptrdiff_t>(header), raw.end());
  return idx;
}

// Class names from the Fashion-MNIST README (github.com/zalandoresearch/fashion-mnist).
const std::vector<std::string> kFashionClasses = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                  "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                  "Bag",         "Ankle boot"};

int fashion_mnist(int argc, char** argv) {
  std::string out, from = "/usr/share/datasets/fashion-mnist";
  int64_t train_samples = 0, val_samples = 0, shard_samples = 20000;
  bool overwrite = false;
  po::options_description o("Options");
  o.add_options()("out", po::value(&out), "output directory: DIR/train and DIR/val")(
      "from", po::value(&from)->default_value(from),
      "directory of the four IDX files (Debian's dataset-fashion-mnist)")(
      "train-samples", po::value(&train_samples)->default_value(0),
      "the first N of the 60,000 training images (0: all)")(
      "val-samples", po::value(&val_samples)->default_value(0),
      "the first N of the 10,000 test images (0: all)")(
      "shard-samples", po::value(&shard_samples)->default_value(shard_samples),
      "images per training shard")("overwrite", po::bool_switch(&overwrite),
                                   "replace *.h5 already in DIR/train and DIR/val");
  po::variables_map vm;
  if (!parse("fashion-mnist",
             "prepare-data fashion-mnist --out DIR: Fashion-MNIST as sample shards (uint8 "
             "[N, 28, 28, 1], 10 classes); the training images go to DIR/train, the test images "
             "to DIR/val",
             o, argc, argv, vm)) {
    return 0;
  }
  if (out.empty()) throw UsageError("fashion-mnist: no output directory: pass --out DIR");
  if (train_samples < 0 || val_samples < 0 || shard_samples < 1)
    throw UsageError(
        "fashion-mnist: --train-samples and --val-samples must be >= 0, "
        "--shard-samples positive");
  make_split_dirs(out, overwrite);
  struct Split {
    const char* images;
    const char* labels;
    const char* dir;
    int64_t limit;
    int64_t per_shard;
  };
  for (const Split& s : {Split{"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "train",
                               train_samples, shard_samples},
                         Split{"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "val",
                               val_samples, INT64_MAX}}) {
    const Idx images = read_idx((fs::path(from) / s.images).string(), 3);
    const Idx labels = read_idx((fs::path(from) / s.labels).string(), 1);
    if (images.dims[0] != labels.dims[0]) {
      throw UsageError(std::string("fashion-mnist: ") + s.images + " holds " +
                       std::to_string(images.dims[0]) + " images but " + s.labels + " " +
                       std::to_string(labels.dims[0]) + " labels");
    }
    const uint64_t H = images.dims[1], W = images.dims[2], px = H * W;
    const uint64_t n = s.limit > 0 ? std::min<uint64_t>(s.limit, images.dims[0]) : images.dims[0];
    int shard = 0;
    for (uint64_t first = 0; first < n; first += static_cast<uint64_t>(s.per_shard), ++shard) {
      const uint64_t count = std::min<uint64_t>(static_cast<uint64_t>(s.per_shard), n - first);
      SampleArrays a;
      a.kind = SampleKind::image;
      a.sample_shape = {H, W, 1};
      a.images.assign(images.data.begin() + static_cast<std::ptrdiff_t>(first * px),
                      images.data.begin() + static_cast<std::ptrdiff_t>((first + count) * px));
      a.labels.assign(labels.data.begin() + static_cast<std::ptrdiff_t>(first),
                      labels.data.begin() + static_cast<std::ptrdiff_t>(first + count));
      a.num_classes = static_cast<int64_t>(kFashionClasses.size());
      a.class_names = kFashionClasses;
      char name[64];
      std::snprintf(name, sizeof(name), "fashion_%s_%03d.h5", s.dir, shard);
      write_sample_shard((fs::path(out) / s.dir / name).string(), a);
    }
    std::printf("prepare-data: fashion-mnist %s: %llu images of %llux%llu in %d shard(s) in %s\n",
                s.dir, static_cast<unsigned long long>(n), static_cast<unsigned long long>(H),
                static_cast<unsigned long long>(W), shard, (fs::path(out) / s.dir).c_str());
  }
  return 0;
}

// ---- fortune-classes ---------------------------------------------------------------------------

int fortune_classes(int argc, char** argv) {
  std::string out;
  std::vector<std::string> inputs;
  int seq_len = 128;
  double val_fraction = 0.1;
  uint64_t seed = 1;
  bool overwrite = false;
  po::options_description o("Options");
  o.add_options()("out", po::value(&out), "output directory: DIR/train and DIR/val")(
      "seq-len", po::value(&seq_len)->default_value(seq_len),
      "bytes kept of each fortune (longer ones are cut, shorter ones padded; /lengths says "
      "which)")("val-fraction", po::value(&val_fraction)->default_value(val_fraction),
                "fraction of each file's fortunes held out in DIR/val")(
      "seed", po::value(&seed)->default_value(seed), "seed of the held-out choice")(
      "overwrite", po::bool_switch(&overwrite), "replace *.h5 already in DIR/train and DIR/val");
  po::options_description hidden;
  hidden.add_options()("input", po::value(&inputs), "fortune files");
  po::options_description all;
  all.add(o).add(hidden);
  po::positional_options_description pos;
  pos.add("input", -1);
  po::variables_map vm;
  if (!parse("fortune-classes",
             "prepare-data fortune-classes --out DIR FILE...: text classification; every "
             "fortune (separated by lines '%') becomes a byte-level text [seq-len] labelled "
             "with the file it comes from (class names: the files' names)",
             all, argc, argv, vm, &pos)) {
    return 0;
  }
  if (out.empty()) throw UsageError("fortune-classes: no output directory: pass --out DIR");
  if (inputs.size() < 2)
    throw UsageError("fortune-classes: pass at least two fortune files (one class each)");
  if (seq_len < 1 || !(val_fraction > 0 && val_fraction < 1))
    throw UsageError("fortune-classes: --seq-len must be positive, --val-fraction in (0, 1)");
  make_split_dirs(out, overwrite);
  SampleArrays split[2];  // train, val
  std::vector<std::string> names;
  std::vector<int64_t> val_count(inputs.size(), 0);
  for (SampleArrays& a : split) {
    a.kind = SampleKind::text;
    a.sample_shape = {static_cast<uint64_t>(seq_len)};
    a.vocab_size = 256;  // bytes; padding is byte 0, which text never holds
    a.num_classes = static_cast<int64_t>(inputs.size());
  }
  for (size_t f = 0; f < inputs.size(); ++f) {
    std::ifstream in(inputs[f], std::ios::binary);
    if (!in) throw UsageError("fortune-classes: cannot read " + inputs[f] + "; check the path");
    names.push_back(fs::path(inputs[f]).filename().string());
    std::string line, doc;
    uint64_t index = 0;
    auto flush = [&] {
      while (!doc.empty() && (doc.back() == '\n' || doc.back() == ' '))
        doc.pop_back();
      if (doc.empty()) return;
      const bool held_out = random_unit(seed, kHoldOutStream + f, index++) < val_fraction;
      SampleArrays& a = split[held_out ? 1 : 0];
      const size_t n = std::min<size_t>(doc.size(), static_cast<size_t>(seq_len));
      for (int t = 0; t < seq_len; ++t)
        a.tokens.push_back(t < static_cast<int>(n) ? static_cast<uint8_t>(doc[t]) : 0);
      a.lengths.push_back(static_cast<int32_t>(n));
      a.labels.push_back(static_cast<int32_t>(f));
      val_count[f] += held_out ? 1 : 0;
      doc.clear();
    };
    while (std::getline(in, line)) {
      if (line == "%") {
        flush();
      } else {
        doc += line + "\n";
      }
    }
    flush();
  }
  // The majority class of the held-out texts: the accuracy of always guessing it.
  const int64_t majority = *std::max_element(val_count.begin(), val_count.end());
  const double majority_accuracy = static_cast<double>(majority) / split[1].labels.size();
  for (int s = 0; s < 2; ++s) {
    split[s].class_names = names;
    split[s].attributes = {{"majority_accuracy", majority_accuracy}};
    const char* dir = s == 0 ? "train" : "val";
    write_sample_shard((fs::path(out) / dir / (std::string("fortunes_") + dir + ".h5")).string(),
                       split[s]);
  }
  std::printf(
      "prepare-data: fortune-classes: %zu train and %zu held-out texts of %d bytes, %zu "
      "classes; the majority class holds %.1f%% of the held-out texts\n",
      split[0].labels.size(), split[1].labels.size(), seq_len, names.size(),
      100.0 * majority_accuracy);
  return 0;
}

// ---- co2 ---------------------------------------------------------------------------------------

const char* kStatsmodelsCo2 = "/usr/lib/python3/dist-packages/statsmodels/datasets/co2/co2.csv";

int co2(int argc, char** argv) {
  std::string out, from = kStatsmodelsCo2;
  int window = 104, horizon = 4;
  double val_fraction = 0.2;
  bool overwrite = false;
  po::options_description o("Options");
  o.add_options()("out", po::value(&out), "output directory: DIR/train and DIR/val")(
      "from", po::value(&from)->default_value(from),
      "the weekly record as CSV 'date,co2' (statsmodels' co2 data set, python3-statsmodels)")(
      "window", po::value(&window)->default_value(window), "past weeks each sample sees")(
      "horizon", po::value(&horizon)->default_value(horizon), "future weeks each sample predicts")(
      "val-fraction", po::value(&val_fraction)->default_value(val_fraction),
      "the record's last fraction, held out: samples whose targets fall in it go to DIR/val")(
      "overwrite", po::bool_switch(&overwrite), "replace *.h5 already in DIR/train and DIR/val");
  po::variables_map vm;
  if (!parse("co2",
             "prepare-data co2 --out DIR: forecasting the weekly Mauna Loa CO2 record (ppm, "
             "1958-2001). A sample is `window` weeks of (value - the window's last value, sin and "
             "cos of the week of the year), scaled; its targets the next `horizon` weeks' values "
             "less that last value, scaled alike. Persistence (tomorrow = today) predicts 0: its "
             "RMSE on the held-out tail is the root attribute persistence_rmse of DIR/val",
             o, argc, argv, vm)) {
    return 0;
  }
  if (out.empty()) throw UsageError("co2: no output directory: pass --out DIR");
  if (window < 2 || horizon < 1 || !(val_fraction > 0 && val_fraction < 1))
    throw UsageError("co2: --window must be >= 2, --horizon >= 1, --val-fraction in (0, 1)");
  std::ifstream in(from);
  if (!in) {
    throw UsageError("co2: cannot read " + from +
                     ": install python3-statsmodels (or extract its co2.csv) and pass --from");
  }
  std::vector<double> value, day_of_year;
  std::string line;
  std::getline(in, line);  // header
  int64_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    const size_t comma = line.find(',');
    if (comma != 8)
      throw UsageError("co2: " + from + " line " + std::to_string(line_no) +
                       " is not 'YYYYMMDD,value'");
    const int month = std::stoi(line.substr(4, 2)), day = std::stoi(line.substr(6, 2));
    static const int kStart[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    day_of_year.push_back(kStart[month - 1] + day);
    const std::string v = line.substr(comma + 1);
    value.push_back(v.empty() ? NAN : std::stod(v));
  }
  // Missing weeks: linear interpolation between the neighbours that were measured.
  const size_t n = value.size();
  size_t missing = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isnan(value[i])) continue;
    ++missing;
    size_t lo = i, hi = i;
    while (lo > 0 && std::isnan(value[lo]))
      --lo;
    while (hi + 1 < n && std::isnan(value[hi]))
      ++hi;
    if (std::isnan(value[lo]))
      value[i] = value[hi];
    else if (std::isnan(value[hi]))
      value[i] = value[lo];
    else
      value[i] = value[lo] + (value[hi] - value[lo]) * double(i - lo) / double(hi - lo);
  }
  const size_t split_at = static_cast<size_t>(std::llround(n * (1.0 - val_fraction)));
  // Scale: the standard deviation of the training part's horizon-week changes.
  double sum = 0, sum2 = 0;
  size_t count = 0;
  for (size_t i = 0; i + horizon < split_at; ++i) {
    const double d = value[i + horizon] - value[i];
    sum += d;
    sum2 += d * d;
    ++count;
  }
  const double scale = std::sqrt(sum2 / count - (sum / count) * (sum / count));
  make_split_dirs(out, overwrite);
  SampleArrays split[2];
  for (SampleArrays& a : split) {
    a.kind = SampleKind::series;
    a.sample_shape = {static_cast<uint64_t>(window), 3};
    a.num_targets = static_cast<uint64_t>(horizon);
  }
  double persistence_sq = 0;
  for (size_t end = window; end + horizon <= n; ++end) {  // inputs [end - window, end)
    const bool held_out = end >= split_at;                // every target in the held-out tail
    if (!held_out && end + horizon > split_at) continue;  // targets would cross the split
    SampleArrays& a = split[held_out ? 1 : 0];
    const double last = value[end - 1];
    for (size_t t = end - window; t < end; ++t) {
      const double angle = 2 * M_PI * day_of_year[t] / 365.25;
      a.series.push_back(static_cast<float>((value[t] - last) / scale));
      a.series.push_back(static_cast<float>(std::sin(angle)));
      a.series.push_back(static_cast<float>(std::cos(angle)));
    }
    for (int h = 0; h < horizon; ++h) {
      const double target = (value[end + h] - last) / scale;
      a.targets.push_back(static_cast<float>(target));
      if (held_out) persistence_sq += target * target;
    }
  }
  const double persistence_rmse =
      std::sqrt(persistence_sq / static_cast<double>(split[1].targets.size()));
  for (int s = 0; s < 2; ++s) {
    split[s].attributes = {{"scale_ppm", scale}, {"persistence_rmse", persistence_rmse}};
    const char* dir = s == 0 ? "train" : "val";
    write_sample_shard((fs::path(out) / dir / (std::string("co2_") + dir + ".h5")).string(),
                       split[s]);
  }
  std::printf(
      "prepare-data: co2: %zu weeks (%zu missing, interpolated); %llu train and %llu "
      "held-out windows of %d weeks forecasting %d; persistence RMSE on the held-out "
      "tail %.4f (x %.3f ppm = %.3f ppm)\n",
      n, missing, static_cast<unsigned long long>(split[0].num_samples()),
      static_cast<unsigned long long>(split[1].num_samples()), window, horizon, persistence_rmse,
      scale, persistence_rmse * scale);
  return 0;
}

}  // namespace

int run_sample_recipe(int argc, char** argv) {
  if (argc < 2) return -1;
  const std::string recipe = argv[1];
  if (recipe == "fashion-mnist") return fashion_mnist(argc, argv);
  if (recipe == "fortune-classes") return fortune_classes(argc, argv);
  if (recipe == "co2") return co2(argc, argv);
  return -1;
}

}  // namespace dpt::datasets
