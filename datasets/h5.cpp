// HDF5 error handling shared by the reader and the writer.
#include "datasets/h5.h"

#include <mutex>
#include <vector>

namespace dpt::datasets {

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

hid_t h5_native_type(TokenType t) {
  switch (t) {
    case TokenType::u8:
      return H5T_NATIVE_UINT8;
    case TokenType::u16:
      return H5T_NATIVE_UINT16;
    case TokenType::i32:
      return H5T_NATIVE_INT32;
    case TokenType::u32:
      return H5T_NATIVE_UINT32;
  }
  return H5I_INVALID_HID;
}

hid_t h5_file_type(TokenType t) {
  switch (t) {
    case TokenType::u8:
      return H5T_STD_U8LE;
    case TokenType::u16:
      return H5T_STD_U16LE;
    case TokenType::i32:
      return H5T_STD_I32LE;
    case TokenType::u32:
      return H5T_STD_U32LE;
  }
  return H5I_INVALID_HID;
}

std::string h5_error_text() {
  std::vector<std::string> lines;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect, &lines);
  if (lines.empty()) return "";
  if (lines.size() == 1) return lines.front();
  return lines.front() + " (" + lines.back() + ")";
}

}  // namespace dpt::datasets
