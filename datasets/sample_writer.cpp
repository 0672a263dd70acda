// Sample shards written whole, durably ([Sample format]).
#include "datasets/sample_writer.h"

#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/errors.h"
#include "storage/durable.h"
#include "storage/h5.h"

namespace dpt::datasets {

using namespace storage;

namespace {

constexpr size_t kChunkBytes = 256 << 10;

uint64_t product(const std::vector<uint64_t>& v) {
  uint64_t p = 1;
  for (uint64_t x : v)
    p *= x;
  return p;
}

// /name of dims (first axis: samples), chunked by whole samples.
template <typename T>
void put_dataset(hid_t file, const char* name, std::vector<uint64_t> dims, const T* data) {
  std::vector<hsize_t> d(dims.begin(), dims.end());
  const uint64_t per = product(std::vector<uint64_t>(dims.begin() + 1, dims.end()));
  H5Space space(H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr));
  DPT_CHECK_H5(space.get());
  H5Plist dcpl(H5Pcreate(H5P_DATASET_CREATE));
  DPT_CHECK_H5(dcpl.get());
  std::vector<hsize_t> chunk(d);
  chunk[0] = std::clamp<hsize_t>(kChunkBytes / std::max<uint64_t>(1, per * sizeof(T)), 1, d[0]);
  DPT_CHECK_H5(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()));
  H5Dataset ds(H5Dcreate2(file, name, h5_little_endian<T>(), space.get(), H5P_DEFAULT, dcpl.get(),
                          H5P_DEFAULT));
  DPT_CHECK_H5(ds.get());
  DPT_CHECK_H5(H5Dwrite(ds.get(), h5_native<T>(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data));
}

// class_names as an array of variable-length UTF-8 strings (what h5py writes for a list of str).
void put_strings(hid_t loc, const char* name, const std::vector<std::string>& v) {
  const hsize_t n[1] = {v.size()};
  H5Space space(H5Screate_simple(1, n, nullptr));
  H5Type type(H5Tcopy(H5T_C_S1));
  DPT_CHECK_H5(H5Tset_size(type.get(), H5T_VARIABLE));
  DPT_CHECK_H5(H5Tset_cset(type.get(), H5T_CSET_UTF8));
  H5Attr a(H5Acreate2(loc, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  DPT_CHECK_H5(a.get());
  std::vector<const char*> ptrs;
  for (const auto& s : v)
    ptrs.push_back(s.c_str());
  DPT_CHECK_H5(H5Awrite(a.get(), type.get(), ptrs.data()));
}

}  // namespace

uint64_t SampleArrays::num_samples() const {
  const uint64_t per = product(sample_shape);
  const size_t n = kind == SampleKind::image    ? images.size()
                   : kind == SampleKind::series ? series.size()
                                                : tokens.size();
  return per == 0 ? 0 : n / per;
}

void write_sample_shard(const std::string& path, const SampleArrays& a) {
  const uint64_t n = a.num_samples();
  DPT_CHECK(n > 0, "write_sample_shard: no samples for " + path);
  DPT_CHECK(a.labels.empty() != a.targets.empty(), "write_sample_shard: labels or targets");
  std::vector<uint64_t> dims{n};
  dims.insert(dims.end(), a.sample_shape.begin(), a.sample_shape.end());
  const std::string tmp = path + temp_suffix();
  std::remove(tmp.c_str());
  {
    H5File file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, h5_file_access_latest().get()));
    DPT_CHECK_H5(file.get());
    const hid_t f = file.get();
    switch (a.kind) {
      case SampleKind::image:
        put_dataset(f, kInputsName, dims, a.images.data());
        break;
      case SampleKind::series:
        put_dataset(f, kInputsName, dims, a.series.data());
        break;
      case SampleKind::text:
        put_dataset(f, kInputsName, dims, a.tokens.data());
        break;
    }
    if (!a.labels.empty()) {
      DPT_CHECK(a.labels.size() == n, "write_sample_shard: one label per sample");
      put_dataset(f, kLabelsName, {n}, a.labels.data());
    } else {
      DPT_CHECK(a.targets.size() == n * a.num_targets, "write_sample_shard: targets per sample");
      put_dataset(f, kTargetsName, {n, a.num_targets}, a.targets.data());
    }
    if (!a.lengths.empty()) put_dataset(f, kLengthsName, {n}, a.lengths.data());
    h5_put_attr<int64_t>(f, "format_version", kSampleFormatVersion);
    h5_put_string_attr(f, "kind", sample_kind_name(a.kind));
    if (a.num_classes > 0) h5_put_attr<int64_t>(f, "num_classes", a.num_classes);
    if (!a.class_names.empty()) put_strings(f, "class_names", a.class_names);
    if (a.vocab_size > 0) h5_put_attr<int64_t>(f, "vocab_size", a.vocab_size);
    for (const auto& [name, value] : a.attributes)
      h5_put_attr<double>(f, name.c_str(), value);
    DPT_CHECK_H5(H5Fflush(f, H5F_SCOPE_GLOBAL));
  }
  publish_file(tmp, path);
}

}  // namespace dpt::datasets
