// Shared main() of MPI+GPU test binaries (the NCCL communicator, the CUDA replica; labels
// gpu;mpi): one MpiSession; SKIP (exit 77) on every rank when any node has no GPU or fewer GPUs
// than ranks (NCCL refuses two ranks on one GPU); otherwise GoogleTest under MPI with output from
// rank 0 and one verdict agreed by all ranks. Tests reach the session through mpi_session().
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <gtest/gtest.h>

#include "comm/mpi_session.h"
#include "kernels/cuda_device.h"
#include "tests/mpi_test_main.h"

namespace dpt::test {
namespace {

const comm::MpiSession* g_session = nullptr;

// Ranks other than 0 print only their failures (as tests/mpi_test_main.cpp does).
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

enum Verdict : int { kRun = 0, kSkip = 1, kError = 2 };

// Whether this rank can run the tests, and why not. Never throws: a rank that left here by an
// exception would miss the agreement in main() and leave the others waiting.
Verdict can_run(const comm::Placement& p, std::string* why) {
  if (!kernels::cuda_built()) {
    *why = "this build has no CUDA path";
    return kSkip;
  }
  int gpus = 0;
  try {
    gpus = kernels::cuda_device_count();
  } catch (const std::exception& e) {
    *why = std::string("cannot count CUDA devices: ") + e.what();
    return kError;
  }
  if (gpus == 0) {
    *why = "no CUDA device visible (no GPU, no driver, or CUDA_VISIBLE_DEVICES empty)";
    return kSkip;
  }
  if (gpus < p.local_size) {
    *why = "host " + p.host + " runs " + std::to_string(p.local_size) + " ranks but sees " +
           std::to_string(gpus) + " GPU(s); NCCL needs one GPU per rank";
    return kSkip;
  }
  return kRun;
}

}  // namespace

const comm::MpiSession& mpi_session() {
  if (g_session == nullptr) std::abort();
  return *g_session;
}

}  // namespace dpt::test

int main(int argc, char** argv) {
  try {
    dpt::comm::MpiSession session(&argc, &argv);
    dpt::test::g_session = &session;

    // Every rank must take the same branch (the worst verdict of any rank): a rank that skipped
    // while others ran would leave them waiting in ncclCommInitRank.
    std::string why;
    const int here = dpt::test::can_run(session.placement(), &why);
    int worst = 0;
    DPT_CHECK_MPI(MPI_Allreduce(&here, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    if (worst != dpt::test::kRun) {
      const char* what = worst == dpt::test::kSkip ? "SKIP" : "ERROR";
      if (here != dpt::test::kRun) {
        std::printf("%s: rank %d: %s\n", what, session.rank(), why.c_str());
      } else if (session.rank() == 0) {
        std::printf("%s: other ranks cannot run the NCCL tests (they print why)\n", what);
      }
      std::fflush(stdout);
      dpt::test::g_session = nullptr;
      session.finalize();
      return worst == dpt::test::kSkip ? 77 : 1;
    }
    if (session.rank() == 0) {
      std::printf("%d rank(s); rank 0 on device %d: %s\n", session.world_size(),
                  session.placement().local_rank,
                  dpt::kernels::cuda_device_name(session.placement().local_rank).c_str());
    }

    testing::InitGoogleTest(&argc, argv);
    if (session.rank() != 0) {
      testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new dpt::test::FailureOnlyPrinter(session.rank()));
    }
    const int failed_here = RUN_ALL_TESTS() != 0 ? 1 : 0;
    int failed_ranks = 0;
    DPT_CHECK_MPI(MPI_Allreduce(&failed_here, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD));
    if (session.rank() == 0 && failed_ranks > 0) {
      std::printf("[  FAILED  ] tests failed on %d of %d ranks\n", failed_ranks,
                  session.world_size());
      std::fflush(stdout);
    }
    dpt::test::g_session = nullptr;
    session.finalize();
    return failed_ranks > 0 ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "NCCL test main failed: %s\n", e.what());
    return 1;
  }
}
