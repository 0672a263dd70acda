// Names and sizes of the token types a shard may hold.
#include "datasets/shard_format.h"

namespace dpt::datasets {

const char* token_type_name(TokenType t) {
  switch (t) {
    case TokenType::u8:
      return "uint8";
    case TokenType::u16:
      return "uint16";
    case TokenType::i32:
      return "int32";
    case TokenType::u32:
      return "uint32";
  }
  return "?";
}

size_t token_type_size(TokenType t) {
  switch (t) {
    case TokenType::u8:
      return 1;
    case TokenType::u16:
      return 2;
    case TokenType::i32:
      return 4;
    case TokenType::u32:
      return 4;
  }
  return 0;
}

}  // namespace dpt::datasets
