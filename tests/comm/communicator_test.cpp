// The backend-independent part of the communicator interface: dtype sizes and names.
#include "comm/communicator.h"

#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "common/errors.h"

namespace {

using dpt::comm::DType;
using dpt::comm::dtype_of;
using dpt::comm::ReduceOp;

TEST(Communicator, DtypeSizeMatchesCType) {
  EXPECT_EQ(dpt::comm::dtype_size(dtype_of<float>()), sizeof(float));
  EXPECT_EQ(dpt::comm::dtype_size(dtype_of<double>()), sizeof(double));
  EXPECT_EQ(dpt::comm::dtype_size(dtype_of<int32_t>()), sizeof(int32_t));
  EXPECT_EQ(dpt::comm::dtype_size(dtype_of<int64_t>()), sizeof(int64_t));
  EXPECT_EQ(dpt::comm::dtype_size(dtype_of<uint64_t>()), sizeof(uint64_t));
  EXPECT_EQ(dpt::comm::dtype_size(dtype_of<uint8_t>()), sizeof(uint8_t));
  EXPECT_EQ(dtype_of<char>(), DType::u8);
}

TEST(Communicator, DtypeAndReduceOpNamesMatchTheirEnumerators) {
  EXPECT_EQ(std::string(dpt::comm::dtype_name(DType::f32)), "f32");
  EXPECT_EQ(std::string(dpt::comm::dtype_name(DType::f64)), "f64");
  EXPECT_EQ(std::string(dpt::comm::dtype_name(DType::i32)), "i32");
  EXPECT_EQ(std::string(dpt::comm::dtype_name(DType::i64)), "i64");
  EXPECT_EQ(std::string(dpt::comm::dtype_name(DType::u64)), "u64");
  EXPECT_EQ(std::string(dpt::comm::dtype_name(DType::u8)), "u8");
  EXPECT_EQ(std::string(dpt::comm::reduce_op_name(ReduceOp::sum)), "sum");
  EXPECT_EQ(std::string(dpt::comm::reduce_op_name(ReduceOp::avg)), "avg");
  EXPECT_EQ(std::string(dpt::comm::reduce_op_name(ReduceOp::max)), "max");
  EXPECT_EQ(std::string(dpt::comm::reduce_op_name(ReduceOp::min)), "min");
}

TEST(Communicator, UnknownDtypeSizeThrowsRuntimeFailure) {
  EXPECT_THROW(dpt::comm::dtype_size(static_cast<DType>(99)), dpt::RuntimeFailure);
}

}  // namespace
