// Token types to HDF5 types.
#include "datasets/token_h5.h"

#include "storage/h5.h"

namespace dpt::datasets {

using storage::h5_little_endian;
using storage::h5_native;

hid_t h5_native_type(TokenType t) {
  switch (t) {
    case TokenType::u8:
      return h5_native<uint8_t>();
    case TokenType::u16:
      return h5_native<uint16_t>();
    case TokenType::i32:
      return h5_native<int32_t>();
    case TokenType::u32:
      return h5_native<uint32_t>();
  }
  return H5I_INVALID_HID;
}

hid_t h5_file_type(TokenType t) {
  switch (t) {
    case TokenType::u8:
      return h5_little_endian<uint8_t>();
    case TokenType::u16:
      return h5_little_endian<uint16_t>();
    case TokenType::i32:
      return h5_little_endian<int32_t>();
    case TokenType::u32:
      return h5_little_endian<uint32_t>();
  }
  return H5I_INVALID_HID;
}

}  // namespace dpt::datasets
