// [Agreed failure] under 2 ranks: a failure on one rank reaches every rank as the same
// AgreedFailure, with the exit code of its kind, and no rank is left in a collective.
#include <gtest/gtest.h>
#include <mpi.h>

#include "comm/agreement.h"
#include "comm/mpi_communicator.h"
#include "common/errors.h"

namespace dpt::comm {
namespace {

TEST(RunAgreed, UsageErrorOnOneRankReachesEveryRankWithExitCodeTwo) {
  MpiCommunicator world(MPI_COMM_WORLD);
  ASSERT_GE(world.world_size(), 2);
  const int last = world.world_size() - 1;
  try {
    run_agreed(world, [&] {
      if (world.rank() == last) throw UsageError("--data x: missing here");
    });
    FAIL() << "expected AgreedFailure on every rank";
  } catch (const AgreedFailure& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_EQ(e.origin_rank(), last);
    EXPECT_EQ(std::string(e.what()),
              "on rank " + std::to_string(last) + ": --data x: missing here");
  }
  // The communicator still works: nobody is stuck in the agreement.
  int one = 1;
  world.all_reduce(&one, 1, comm::DType::i32, comm::ReduceOp::sum);
  EXPECT_EQ(one, world.world_size());
}

TEST(RunAgreed, LowestFailingRankWinsAndRuntimeFailuresMapToOne) {
  MpiCommunicator world(MPI_COMM_WORLD);
  try {
    run_agreed(world, [&] {
      if (world.rank() == 0) throw RuntimeFailure("disk on fire");
      throw UsageError("bad option");
    });
    FAIL();
  } catch (const AgreedFailure& e) {
    EXPECT_EQ(e.exit_code(), 1);
    EXPECT_EQ(e.origin_rank(), 0);
    EXPECT_EQ(std::string(e.what()), "disk on fire");
  }
}

TEST(RunAgreed, SuccessEverywhereReturnsNormally) {
  MpiCommunicator world(MPI_COMM_WORLD);
  int calls = 0;
  EXPECT_NO_THROW(run_agreed(world, [&] { ++calls; }));
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace dpt::comm
