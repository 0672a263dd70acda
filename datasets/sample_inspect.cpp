// inspect_sample_shard(): checks one sample shard against [Sample format] and scans its labels,
// targets, lengths and floating-point inputs. Every defect is a one-line UsageError with its fix.
#include "datasets/sample_inspect.h"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/crash_note.h"
#include "common/errors.h"
#include "datasets/h5_checks.h"
#include "datasets/shard_index.h"
#include "storage/h5.h"

namespace dpt::datasets {

using namespace h5check;  // NOLINT: the shared checks read as this file's own
using storage::h5_quiet;
using storage::H5Attr;
using storage::H5Dataset;
using storage::H5Space;
using storage::H5Type;

const char* sample_kind_name(SampleKind k) {
  switch (k) {
    case SampleKind::image:
      return "image";
    case SampleKind::series:
      return "series";
    case SampleKind::text:
      return "text";
  }
  return "?";
}

const char* sample_task_name(SampleTask t) {
  return t == SampleTask::classify ? "classify" : "regress";
}

namespace {

constexpr size_t kReadBytes = size_t{8} << 20;            // per block of samples read in a scan
constexpr uint64_t kMaxSampleValues = uint64_t{1} << 28;  // 1 GiB of float32 per sample
constexpr const char* kH5pyExample =
    "(h5py: f['inputs'] = x; f['labels'] = y; f.attrs['format_version'] = 1)";

struct Array {
  H5Dataset dset;
  H5T_class_t cls = H5T_NO_CLASS;
  size_t size = 0;  // bytes per element
  bool is_signed = false;
  std::vector<uint64_t> dims;
  std::string type_name;  // "uint8", "float32", ...
};

// /name's type and shape (dset invalid when absent).
Array describe_array(const std::string& path, hid_t file, const char* name,
                     const std::string& fix) {
  Array a;
  a.dset = open_dataset(path, file, name, fix);
  if (!a.dset.valid()) return a;
  const std::string obj = std::string("/") + name;
  H5Type type(H5Dget_type(a.dset.get()));
  if (!type.valid()) damaged(path, "reading the type of " + obj);
  a.cls = H5Tget_class(type.get());
  a.size = H5Tget_size(type.get());
  if (a.cls == H5T_INTEGER) {
    const H5T_sign_t sign = H5Tget_sign(type.get());
    if (sign == H5T_SGN_ERROR) damaged(path, "reading the type of " + obj);
    a.is_signed = sign != H5T_SGN_NONE;
    a.type_name = int_type_name(a.is_signed, a.size);
  } else if (a.cls == H5T_FLOAT) {
    a.type_name = "float" + std::to_string(a.size * 8);
  } else {
    a.type_name = class_name(a.cls);
  }
  H5Space space(H5Dget_space(a.dset.get()));
  if (!space.valid()) damaged(path, "reading the shape of " + obj);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) damaged(path, "reading the shape of " + obj);
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  a.dims.assign(dims.begin(), dims.end());
  // One sample's values, bounded before anything is sized from them: a malformed or hostile
  // file may declare dimensions whose product overflows (fuzz_shard found a 32 GB buffer).
  uint64_t per = 1;
  for (size_t i = 1; i < a.dims.size(); ++i) {
    if (a.dims[i] != 0 && per > kMaxSampleValues / a.dims[i]) {
      reject(path,
             obj + " has " + std::to_string(a.dims.size()) +
                 " dimensions whose samples hold more than " + std::to_string(kMaxSampleValues) +
                 " values each, the most a sample may hold",
             kRewrite);
    }
    per *= a.dims[i];
  }
  hsize_t file_size = 0;
  if (H5Fget_filesize(file, &file_size) < 0) damaged(path, "reading the file's size");
  require_stored(path, a.dset.get(), obj, file_size);
  return a;
}

std::string dims_text(const std::vector<uint64_t>& d) {
  std::string s = "shape (";
  for (size_t i = 0; i < d.size(); ++i)
    s += (i ? ", " : "") + std::to_string(d[i]);
  return s + (d.size() == 1 ? ",)" : ")");
}

// Values in one sample of a: the product of its dimensions after the first.
uint64_t values_per_sample(const Array& a) {
  uint64_t p = 1;
  for (size_t i = 1; i < a.dims.size(); ++i)
    p *= a.dims[i];
  return p;
}

// Reads /name in blocks of whole samples along its first axis, converted to `mem_type`, and
// hands each block (first sample, samples, values) to `check`.
template <typename T>
void scan_samples(const std::string& path, const Array& a, const char* name, hid_t mem_type,
                  const std::function<void(const T*, uint64_t, uint64_t)>& check) {
  const uint64_t n = a.dims.at(0);
  const uint64_t per_sample = values_per_sample(a);
  if (n == 0 || per_sample == 0) return;
  const uint64_t rows = std::max<uint64_t>(1, kReadBytes / (per_sample * sizeof(T)));
  std::vector<T> buf(static_cast<size_t>(std::min(rows, n) * per_sample));
  H5Space space(H5Dget_space(a.dset.get()));
  if (!space.valid()) damaged(path, std::string("reading the shape of /") + name);
  std::vector<hsize_t> off(a.dims.size(), 0), count(a.dims.begin(), a.dims.end());
  for (uint64_t first = 0; first < n; first += rows) {
    off[0] = first;
    count[0] = std::min(rows, n - first);
    if (H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, off.data(), nullptr, count.data(),
                            nullptr) < 0) {
      damaged(path, std::string("selecting /") + name);
    }
    H5Space mem(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr));
    if (H5Dread(a.dset.get(), mem_type, mem.get(), space.get(), H5P_DEFAULT, buf.data()) < 0) {
      damaged(path, std::string("reading /") + name + " samples [" + std::to_string(first) + ", " +
                        std::to_string(first + count[0]) + ")");
    }
    check(buf.data(), first, count[0]);
  }
}

// Every value of a floating-point /name is finite.
void check_finite(const std::string& path, const Array& a, const char* name,
                  const std::string& fix) {
  const uint64_t per = values_per_sample(a);
  scan_samples<float>(
      path, a, name, H5T_NATIVE_FLOAT, [&](const float* v, uint64_t first, uint64_t count) {
        for (uint64_t i = 0; i < count * per; ++i) {
          if (!std::isfinite(v[i])) {
            reject(path,
                   std::string("/") + name + " sample " + std::to_string(first + i / per) +
                       " holds " + (std::isnan(v[i]) ? "NaN" : "an infinity"),
                   fix);
          }
        }
      });
}

// A root attribute holding one string or an array of strings (variable or fixed length), or
// nothing when absent.
std::optional<std::vector<std::string>> read_strings_attr(const std::string& path, hid_t file,
                                                          const char* name,
                                                          const std::string& fix) {
  const std::string obj = std::string("attribute ") + name + " of /";
  const htri_t exists = H5Aexists(file, name);
  if (exists < 0) damaged(path, "looking up " + obj);
  if (exists == 0) return std::nullopt;
  H5Attr attr(H5Aopen(file, name, H5P_DEFAULT));
  if (!attr.valid()) damaged(path, "opening " + obj);
  H5Type type(H5Aget_type(attr.get()));
  if (!type.valid()) damaged(path, "reading the type of " + obj);
  if (H5Tget_class(type.get()) != H5T_STRING) {
    reject(path, obj + " is of type " + class_name(H5Tget_class(type.get())) + ", not string", fix);
  }
  H5Space space(H5Aget_space(attr.get()));
  if (!space.valid()) damaged(path, "reading the shape of " + obj);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) damaged(path, "reading the shape of " + obj);
  std::vector<std::string> out;
  if (H5Tis_variable_str(type.get()) > 0) {
    H5Type mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
    if (H5Aread(attr.get(), mem.get(), ptrs.data()) < 0) damaged(path, "reading " + obj);
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      H5free_memory(p);
    }
  } else {
    const size_t width = H5Tget_size(type.get());
    std::vector<char> buf(static_cast<size_t>(n) * width);
    if (H5Aread(attr.get(), type.get(), buf.data()) < 0) damaged(path, "reading " + obj);
    for (hssize_t i = 0; i < n; ++i) {
      const char* s = buf.data() + static_cast<size_t>(i) * width;
      out.emplace_back(s, ::strnlen(s, width));
    }
  }
  return out;
}

// The kind of /inputs: from the kind attribute when present, else from its type and rank.
SampleKind input_kind(const std::string& path, hid_t file, const Array& in) {
  const std::string kinds_fix =
      "store images as uint8 [N, H, W, C] or [N, H, W], series as float32 [N, T, F] or [N, T], "
      "text as integer token ids [N, T], and set the root attribute kind to image, series or "
      "text where the type does not say it";
  const auto named = read_strings_attr(path, file, "kind", kinds_fix);
  const bool is_int = in.cls == H5T_INTEGER, is_float = in.cls == H5T_FLOAT;
  const size_t rank = in.dims.size();
  SampleKind kind;
  if (named) {
    const std::string k = named->size() == 1 ? named->front() : "";
    if (k == "image") {
      kind = SampleKind::image;
    } else if (k == "series") {
      kind = SampleKind::series;
    } else if (k == "text") {
      kind = SampleKind::text;
    } else {
      reject(path, "attribute kind of / is \"" + k + "\", not image, series or text", kinds_fix);
    }
  } else if (is_int && in.size == 1 && !in.is_signed && (rank == 3 || rank == 4)) {
    kind = SampleKind::image;
  } else if (is_float) {
    kind = SampleKind::series;
  } else if (is_int) {
    kind = SampleKind::text;
  } else {
    reject(path, "/inputs holds " + in.type_name + " values, which no kind of sample takes",
           kinds_fix);
  }
  const std::string what = std::string("/inputs (") + in.type_name + ", " + dims_text(in.dims) +
                           ") as " + sample_kind_name(kind) + " samples";
  const bool fits = kind == SampleKind::image
                        ? is_int && in.size == 1 && !in.is_signed && (rank == 3 || rank == 4)
                    : kind == SampleKind::series ? is_float && (rank == 2 || rank == 3)
                                                 : is_int && rank == 2;
  if (!fits) reject(path, what + ": wrong type or rank", kinds_fix);
  if (kind == SampleKind::series && in.size == 8) {
    reject(path, what + ": float64 is not stored for training",
           "store series as float32 (numpy: x.astype(np.float32)) or float16");
  }
  return kind;
}

}  // namespace

SampleShardFacts inspect_sample_shard(const std::string& path) try {
  h5_quiet();
  const CrashNote note("validating shard " + path, h5check::crash_fix());
  const FileStamp stamp = stat_shard(path);
  storage::H5File file = open_shard_file(path, stamp.size);
  SampleShardFacts facts;
  facts.file_size = stamp.size;
  facts.mtime_ns = stamp.mtime_ns;
  facts.path = path;

  const std::string version_fix =
      "set the root attribute format_version = " + std::to_string(kSampleFormatVersion) + " " +
      kH5pyExample;
  const int64_t version = read_int_attr(path, file.get(), "format_version", version_fix);
  if (version != kSampleFormatVersion) {
    reject(path,
           "format_version " + std::to_string(version) +
               " is not supported: this program reads format " +
               std::to_string(kSampleFormatVersion),
           "write the shard as docs/data-format.md shows, or train with the release that wrote it");
  }

  const std::string inputs_fix =
      std::string("a sample shard stores its samples in /inputs [N, ...] ") + kH5pyExample;
  const Array in = describe_array(path, file.get(), kInputsName, inputs_fix);
  if (!in.dset.valid()) reject(path, "no /inputs dataset", inputs_fix);
  if (in.dims.size() < 2) {
    reject(path,
           "/inputs has " + dims_text(in.dims) +
               ": one axis of samples and at least one "
               "more are needed",
           inputs_fix);
  }
  facts.kind = input_kind(path, file.get(), in);
  facts.input_type = in.type_name;
  facts.num_samples = in.dims[0];
  if (facts.num_samples == 0) {
    reject(path, "/inputs holds no samples (N = 0)", "remove the file from the dataset");
  }
  facts.sample_shape.assign(in.dims.begin() + 1, in.dims.end());
  // [N, H, W] images have one channel, [N, T] series one feature.
  if ((facts.kind == SampleKind::image && in.dims.size() == 3) ||
      (facts.kind == SampleKind::series && in.dims.size() == 2)) {
    facts.sample_shape.push_back(1);
  }
  const uint64_t n = facts.num_samples;
  if (in.cls == H5T_FLOAT) {
    check_finite(path, in, kInputsName,
                 "replace missing values before writing the shard (numpy: np.nan_to_num, or "
                 "drop those samples)");
  }
  if (facts.kind == SampleKind::text) {
    const bool has_vocab = H5Aexists(file.get(), "vocab_size") > 0;
    const std::string vocab_fix =
        "token ids count from 0 and stay below the root attribute vocab_size (set it to the "
        "tokenizer's vocabulary size, or remove it to infer it from the ids)";
    const int64_t vocab =
        has_vocab ? read_int_attr(path, file.get(), "vocab_size", vocab_fix) : int64_t{1} << 31;
    int64_t largest = -1;
    const uint64_t per = values_per_sample(in);
    scan_samples<int64_t>(
        path, in, kInputsName, H5T_NATIVE_INT64,
        [&](const int64_t* v, uint64_t first, uint64_t count) {
          for (uint64_t i = 0; i < count * per; ++i) {
            if (v[i] < 0 || v[i] >= vocab) {
              reject(path,
                     "/inputs sample " + std::to_string(first + i / per) + " holds token id " +
                         std::to_string(v[i]) +
                         (v[i] < 0 ? "" : ", not below vocab_size " + std::to_string(vocab)),
                     vocab_fix);
            }
            largest = std::max(largest, v[i]);
          }
        });
    facts.vocab_size = has_vocab ? vocab : largest + 1;
  }

  const std::string task_fix =
      "store integer classes in /labels [N] (classification) or float targets in /targets "
      "[N, K] (regression), one of the two";
  const Array labels = describe_array(path, file.get(), kLabelsName, task_fix);
  const Array targets = describe_array(path, file.get(), kTargetsName, task_fix);
  if (labels.dset.valid() == targets.dset.valid()) {
    reject(path,
           labels.dset.valid() ? "both /labels and /targets: a shard is for one task"
                               : "neither /labels nor /targets",
           task_fix);
  }
  const auto count_matches = [&](const Array& a, const char* name) {
    if (a.dims.empty() || a.dims[0] != n) {
      reject(path,
             std::string("/") + name + " has " + dims_text(a.dims) + " but /inputs holds " +
                 std::to_string(n) + " samples",
             std::string("give /") + name + " one entry per sample along its first axis");
    }
  };

  if (labels.dset.valid()) {
    facts.task = SampleTask::classify;
    if (labels.cls != H5T_INTEGER || labels.dims.size() != 1) {
      reject(
          path,
          "/labels is " + labels.type_name + " of " + dims_text(labels.dims) + ", not 1-D integers",
          "store class indices as a 1-D integer dataset (numpy: y.astype(np.int64))");
    }
    count_matches(labels, kLabelsName);
    const bool has_classes_attr = H5Aexists(file.get(), "num_classes") > 0;
    const std::string classes_fix =
        "set the root attribute num_classes to the number of classes (greater than every "
        "label), or remove it to infer it from the labels";
    int64_t classes =
        has_classes_attr ? read_int_attr(path, file.get(), "num_classes", classes_fix) : 0;
    if (has_classes_attr && classes < 2) {
      reject(path, "attribute num_classes of / is " + std::to_string(classes) + ", below 2",
             classes_fix);
    }
    const std::string names_fix =
        "store class_names as one string per class (h5py: f.attrs['class_names'] = names)";
    const auto names = read_strings_attr(path, file.get(), "class_names", names_fix);
    if (names && has_classes_attr && static_cast<int64_t>(names->size()) != classes) {
      reject(path,
             "attribute class_names of / has " + std::to_string(names->size()) +
                 " names for num_classes " + std::to_string(classes),
             names_fix);
    }
    if (names && !has_classes_attr) classes = static_cast<int64_t>(names->size());
    int64_t largest = -1;
    const int64_t limit = classes > 0 ? classes : std::numeric_limits<int64_t>::max();
    scan_samples<int64_t>(path, labels, kLabelsName, H5T_NATIVE_INT64,
                          [&](const int64_t* v, uint64_t first, uint64_t count) {
                            for (uint64_t i = 0; i < count; ++i) {
                              if (v[i] < 0 || v[i] >= limit) {
                                reject(path,
                                       "/labels[" + std::to_string(first + i) +
                                           "] = " + std::to_string(v[i]) + " is outside [0, " +
                                           (classes > 0 ? std::to_string(classes) : "inf") + ")",
                                       v[i] < 0 ? "class indices start at 0" : classes_fix);
                              }
                              largest = std::max(largest, v[i]);
                            }
                          });
    facts.num_classes = classes > 0 ? classes : largest + 1;
    if (facts.num_classes < 2) {
      reject(path, "every label is 0: one class is nothing to classify", classes_fix);
    }
    if (names) facts.class_names = *names;
  } else {
    facts.task = SampleTask::regress;
    if (targets.cls != H5T_FLOAT || targets.dims.empty() || targets.dims.size() > 2) {
      reject(path,
             "/targets is " + targets.type_name + " of " + dims_text(targets.dims) +
                 ", not floating point [N] or [N, K]",
             "store regression targets as float32 (numpy: t.astype(np.float32))");
    }
    count_matches(targets, kTargetsName);
    facts.num_targets = targets.dims.size() == 2 ? targets.dims[1] : 1;
    if (facts.num_targets == 0) reject(path, "/targets has no columns (K = 0)", task_fix);
    check_finite(path, targets, kTargetsName, "replace or drop samples whose targets are missing");
  }

  const Array lengths = describe_array(path, file.get(), kLengthsName,
                                       "store the valid length of each text as /lengths [N]");
  if (lengths.dset.valid()) {
    if (facts.kind != SampleKind::text) {
      reject(path,
             std::string("/lengths in a shard of ") + sample_kind_name(facts.kind) +
                 " samples: only text has padding",
             "remove /lengths, or set kind = text if the inputs are token ids");
    }
    if (lengths.cls != H5T_INTEGER || lengths.dims.size() != 1) {
      reject(path,
             "/lengths is " + lengths.type_name + " of " + dims_text(lengths.dims) +
                 ", not 1-D integers",
             "store each text's length as a 1-D integer dataset");
    }
    count_matches(lengths, kLengthsName);
    const int64_t T = static_cast<int64_t>(facts.sample_shape.at(0));
    scan_samples<int64_t>(path, lengths, kLengthsName, H5T_NATIVE_INT64,
                          [&](const int64_t* v, uint64_t first, uint64_t count) {
                            for (uint64_t i = 0; i < count; ++i) {
                              if (v[i] < 1 || v[i] > T) {
                                reject(path,
                                       "/lengths[" + std::to_string(first + i) +
                                           "] = " + std::to_string(v[i]) + " is outside [1, " +
                                           std::to_string(T) + "]",
                                       "a length counts the valid tokens at the start of its "
                                       "row: at least 1, at most the row's length");
                              }
                            }
                          });
    facts.has_lengths = true;
  }
  return facts;
} catch (const std::bad_alloc&) {
  // Sizes declared by the file that no check above caught: still the file's fault.
  reject(path, "declares sizes this reader cannot allocate", kRewrite);
} catch (const std::length_error&) {
  reject(path, "declares sizes this reader cannot allocate", kRewrite);
}

}  // namespace dpt::datasets

namespace dpt::datasets {

bool is_sample_shard(const std::string& path) {
  storage::h5_quiet();
  if (H5Fis_hdf5(path.c_str()) <= 0) return false;
  storage::H5Plist fapl(H5Pcreate(H5P_FILE_ACCESS));
  if (!fapl.valid() || H5Pset_file_locking(fapl.get(), false, true) < 0) return false;
  storage::H5File file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()));
  return file.valid() && H5Lexists(file.get(), kInputsName, H5P_DEFAULT) > 0;
}

namespace {

void put(std::string& out, const std::string& field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

std::string take(const std::string& in, size_t& pos) {
  const size_t colon = in.find(':', pos);
  DPT_CHECK(colon != std::string::npos, "sample facts: malformed encoding");
  const size_t n = std::stoull(in.substr(pos, colon - pos));
  DPT_CHECK(colon + 1 + n <= in.size(), "sample facts: malformed encoding");
  std::string field = in.substr(colon + 1, n);
  pos = colon + 1 + n;
  return field;
}

}  // namespace

std::string encode_sample_facts(const SampleShardFacts& f) {
  std::string out;
  put(out, f.path);
  for (int64_t v : {int64_t(f.file_size), f.mtime_ns, int64_t(f.kind), int64_t(f.num_samples),
                    int64_t(f.task), f.num_classes, int64_t(f.num_targets), int64_t(f.has_lengths),
                    f.vocab_size, int64_t(f.sample_shape.size()), int64_t(f.class_names.size())}) {
    put(out, std::to_string(v));
  }
  put(out, f.input_type);
  for (uint64_t d : f.sample_shape)
    put(out, std::to_string(d));
  for (const std::string& n : f.class_names)
    put(out, n);
  return out;
}

SampleShardFacts decode_sample_facts(const std::string& in) {
  size_t pos = 0;
  SampleShardFacts f;
  f.path = take(in, pos);
  auto num = [&] { return std::stoll(take(in, pos)); };
  f.file_size = static_cast<uint64_t>(num());
  f.mtime_ns = num();
  f.kind = static_cast<SampleKind>(num());
  f.num_samples = static_cast<uint64_t>(num());
  f.task = static_cast<SampleTask>(num());
  f.num_classes = num();
  f.num_targets = static_cast<uint64_t>(num());
  f.has_lengths = num() != 0;
  f.vocab_size = num();
  const int64_t dims = num(), names = num();
  f.input_type = take(in, pos);
  for (int64_t i = 0; i < dims; ++i)
    f.sample_shape.push_back(static_cast<uint64_t>(num()));
  for (int64_t i = 0; i < names; ++i)
    f.class_names.push_back(take(in, pos));
  return f;
}

}  // namespace dpt::datasets
