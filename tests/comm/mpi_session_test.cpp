// MpiSession: where this process stands (placement), the error context it sets, the thread
// level it asks for, and the [Session sharing] rule for a second session.
#include "comm/mpi_session.h"

#include <mpi.h>

#include <string>

#include <gtest/gtest.h>

#include "common/errors.h"
#include "tests/mpi_test_main.h"

namespace {

using dpt::comm::MpiSession;

TEST(MpiSession, PlacementMatchesMpiWorld) {
  const dpt::comm::Placement& place = dpt::test::mpi_session().placement();
  int rank = -1;
  int size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(place.rank, rank);
  EXPECT_EQ(place.world_size, size);
  EXPECT_EQ(dpt::test::mpi_session().rank(), rank);
  EXPECT_EQ(dpt::test::mpi_session().world_size(), size);
  EXPECT_FALSE(place.host.empty());
}

TEST(MpiSession, AllRanksOnThisOneMachineShareOneNode) {
  // The tests run every rank on one machine, so the node is the whole world, in world order.
  const dpt::comm::Placement& place = dpt::test::mpi_session().placement();
  EXPECT_GE(place.local_rank, 0);
  EXPECT_LT(place.local_rank, place.local_size);
  EXPECT_EQ(place.local_size, place.world_size);
  EXPECT_EQ(place.local_rank, place.rank);
}

TEST(MpiSession, ErrorContextNamesRankAndHost) {
  const dpt::comm::Placement& place = dpt::test::mpi_session().placement();
  EXPECT_EQ(dpt::error_context(), "rank " + std::to_string(place.rank) + " on host " + place.host);
}

TEST(MpiSession, ProvidesAtLeastThreadFunneled) {
  int provided = MPI_THREAD_SINGLE;
  MPI_Query_thread(&provided);
  EXPECT_GE(provided, MPI_THREAD_FUNNELED);
}

TEST(MpiSession, SetsErrorsReturnOnWorldSoChecksSeeFailures) {
  MPI_Errhandler handler = MPI_ERRHANDLER_NULL;
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &handler);
  EXPECT_EQ(handler, MPI_ERRORS_RETURN);
  MPI_Errhandler_free(&handler);
}

TEST(MpiSession, SecondSessionJoinsRunningMpiAndLeavesItRunning) {
  const dpt::comm::Placement& first = dpt::test::mpi_session().placement();
  {
    MpiSession second(nullptr, nullptr);
    EXPECT_EQ(second.rank(), first.rank);
    EXPECT_EQ(second.world_size(), first.world_size);
    EXPECT_EQ(second.placement().local_rank, first.local_rank);
    EXPECT_EQ(second.placement().host, first.host);
    second.finalize();
  }
  // The first session is still live, so MPI must still be up and working.
  int finalized = 1;
  MPI_Finalized(&finalized);
  EXPECT_EQ(finalized, 0);
  int one = 1;
  int sum = 0;
  EXPECT_EQ(MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD), MPI_SUCCESS);
  EXPECT_EQ(sum, first.world_size);
}

}  // namespace
