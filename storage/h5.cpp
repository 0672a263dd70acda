// HDF5 error handling shared by the reader and the writer.
#include "storage/h5.h"

#include <algorithm>
#include <mutex>
#include <vector>

namespace dpt::storage {

void h5_quiet() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

namespace {
herr_t collect(unsigned, const H5E_error2_t* e, void* out) {
  auto* lines = static_cast<std::vector<std::string>*>(out);
  if (e->desc && e->desc[0]) lines->emplace_back(e->desc);
  return 0;
}
}  // namespace

H5Plist h5_file_access_latest() {
  H5Plist fapl(H5Pcreate(H5P_FILE_ACCESS));
  DPT_CHECK_H5(fapl.get());
  DPT_CHECK_H5(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST));
  DPT_CHECK_H5(H5Pset_file_locking(fapl.get(), false, true));
  return fapl;
}

void h5_put_string_attr(hid_t loc, const char* name, const std::string& value) {
  H5Type t(H5Tcopy(H5T_C_S1));
  DPT_CHECK_H5(t.get());
  DPT_CHECK_H5(H5Tset_size(t.get(), std::max<size_t>(1, value.size())));
  H5Space space(H5Screate(H5S_SCALAR));
  DPT_CHECK_H5(space.get());
  H5Attr a(H5Acreate2(loc, name, t.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
  DPT_CHECK_H5(a.get());
  const std::string padded = value.empty() ? std::string(1, '\0') : value;
  DPT_CHECK_H5(H5Awrite(a.get(), t.get(), padded.data()));
}

std::string h5_error_text() {
  std::vector<std::string> lines;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect, &lines);
  if (lines.empty()) return "";
  if (lines.size() == 1) return lines.front();
  return lines.front() + " (" + lines.back() + ")";
}

}  // namespace dpt::storage
