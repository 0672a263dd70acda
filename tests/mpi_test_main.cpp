// Shared main() for MPI test binaries: one MpiSession around RUN_ALL_TESTS, GoogleTest's output
// from rank 0 only (other ranks print just their failures), and one verdict agreed by all ranks.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include <gtest/gtest.h>

#include "comm/mpi_session.h"
#include "tests/mpi_test_main.h"

namespace dpt::test {
namespace {

const comm::MpiSession* g_session = nullptr;

// Replaces GoogleTest's printer on ranks other than 0: N ranks printing the same passing run
// would bury the one line that matters, but a failure seen only on rank 2 must still show.
class FailureOnlyPrinter : public testing::EmptyTestEventListener {
 public:
  explicit FailureOnlyPrinter(int rank) : rank_(rank) {}

  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::printf("[rank %d] %s:%d: Failure\n%s\n", rank_,
                result.file_name() != nullptr ? result.file_name() : "unknown",
                result.line_number(), result.message());
    std::fflush(stdout);
  }

  void OnTestEnd(const testing::TestInfo& info) override {
    if (!info.result()->Failed()) return;
    std::printf("[rank %d] [  FAILED  ] %s.%s\n", rank_, info.test_suite_name(), info.name());
    std::fflush(stdout);
  }

 private:
  int rank_;
};

}  // namespace

const comm::MpiSession& mpi_session() {
  // Only main() below sets it; a test binary linked without it fails loudly here.
  if (g_session == nullptr) std::abort();
  return *g_session;
}

}  // namespace dpt::test

int main(int argc, char** argv) {
  try {
    dpt::comm::MpiSession session(&argc, &argv);
    dpt::test::g_session = &session;
    testing::InitGoogleTest(&argc, argv);
    if (session.rank() != 0) {
      testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new dpt::test::FailureOnlyPrinter(session.rank()));
    }
    const int failed_here = RUN_ALL_TESTS() != 0 ? 1 : 0;

    // Every rank returns the same verdict, so the job fails even when only a rank other than
    // 0 saw the failure (mpiexec's exit code need not come from rank 0).
    int failed_ranks = 0;
    DPT_CHECK_MPI(MPI_Allreduce(&failed_here, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (session.rank() == 0 && failed_ranks > 0) {
      std::printf(
          "[  FAILED  ] tests failed on %d of %d ranks (ranks other than 0 print "
          "their failures prefixed with [rank r])\n",
          failed_ranks, session.world_size());
      std::fflush(stdout);
    }
    dpt::test::g_session = nullptr;
    session.finalize();
    return failed_ranks > 0 ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "MPI test main failed: %s\n", e.what());
    return 1;
  }
}
