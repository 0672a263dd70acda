// Names and sizes of the communicator's dtypes and reduce operations, shared by every backend.
#include "comm/communicator.h"

#include <string>

#include "common/errors.h"

namespace dpt::comm {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return sizeof(float);
    case DType::f64:
      return sizeof(double);
    case DType::i32:
      return sizeof(int32_t);
    case DType::i64:
      return sizeof(int64_t);
    case DType::u64:
      return sizeof(uint64_t);
    case DType::u8:
      return sizeof(uint8_t);
  }
  // Only reachable through a cast of an out-of-range integer; a wrong size would corrupt memory.
  fail_check("check", "dtype_size(t)", "unknown DType " + std::to_string(static_cast<int>(t)),
             __func__, __FILE__, __LINE__);
}

// The name functions feed error messages, so an unknown value yields text rather than a throw.
const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
    case DType::u64:
      return "u64";
    case DType::u8:
      return "u8";
  }
  return "unknown-dtype";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "sum";
    case ReduceOp::avg:
      return "avg";
    case ReduceOp::max:
      return "max";
    case ReduceOp::min:
      return "min";
  }
  return "unknown-op";
}

}  // namespace dpt::comm
