// Shared main() for MPI test binaries: one MpiSession around RUN_ALL_TESTS, GoogleTest's output
// from rank 0 only (other ranks print just their failures), and one verdict agreed by all ranks.
// Built a second time with DPT_TEST_NEEDS_GPU for MPI+GPU binaries (labels gpu;mpi): then every
// rank skips (exit 77) when any node has fewer GPUs than ranks (NCCL refuses two ranks on one
// GPU), so that no rank is left waiting in ncclCommInitRank.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <exception>

#include <gtest/gtest.h>

#include "comm/mpi_session.h"
#include "tests/mpi_test_main.h"
#ifdef DPT_TEST_NEEDS_GPU
#include <string>

#include "kernels/cuda_device.h"
#endif

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

#ifdef DPT_TEST_NEEDS_GPU
enum Verdict : int { kRun = 0, kSkip = 1, kError = 2 };

// Whether this rank has a GPU of its own, and why not. Never throws: a rank that left by an
// exception would miss the agreement in main() and leave the others waiting.
Verdict gpu_verdict(const comm::Placement& p, std::string* why) {
  try {
    *why = kernels::cuda_unavailable_reason(p.local_size);
  } catch (const std::exception& e) {
    *why = std::string("cannot count CUDA devices: ") + e.what();
    return kError;
  }
  if (why->empty()) return kRun;
  *why += " on host " + p.host + " (" + std::to_string(p.local_size) + " rank(s) there)";
  return kSkip;
}

// Every rank takes the same branch: the worst verdict of any rank. Returns the exit code when
// the tests must not run, else -1.
int agree_on_gpus(const comm::MpiSession& session) {
  std::string why;
  const int here = gpu_verdict(session.placement(), &why);
  int worst = 0;
  DPT_CHECK_MPI(MPI_Allreduce(&here, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  if (worst == kRun) {
    if (session.rank() == 0)
      std::printf("%d rank(s); rank 0 on device %d: %s\n", session.world_size(),
                  session.placement().local_rank,
                  kernels::cuda_device_name(session.placement().local_rank).c_str());
    return -1;
  }
  const char* what = worst == kSkip ? "SKIP" : "ERROR";
  if (here != kRun)
    std::printf("%s: rank %d: %s\n", what, session.rank(), why.c_str());
  else if (session.rank() == 0)
    std::printf("%s: other ranks cannot run the GPU tests (they print why)\n", what);
  std::fflush(stdout);
  return worst == kSkip ? 77 : 1;
}
#endif

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
#ifdef DPT_TEST_NEEDS_GPU
    if (const int rc = dpt::test::agree_on_gpus(session); rc >= 0) {
      dpt::test::g_session = nullptr;
      session.finalize();
      return rc;
    }
#endif
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
