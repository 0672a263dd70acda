// MPI bootstrap: brings MPI up once per process, finds where this rank stands, and ends MPI
// under the [Session sharing] rule of mpi_session.h.
#include "comm/mpi_session.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <mutex>

namespace dpt::comm {
namespace {

// [Session sharing] state. MPI_THREAD_FUNNELED already keeps sessions on one thread; the mutex
// keeps the count sound should a caller break that rule.
std::mutex g_session_mutex;
int g_live_sessions = 0;
bool g_sessions_own_mpi = false;  // a session called MPI_Init_thread, so one must finalize

bool mpi_is_usable() {
  // Both queries are valid at any time, even before MPI_Init and after MPI_Finalize.
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
  }
  return "unknown thread level";
}

Placement query_placement() {
  Placement p;
  DPT_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &p.rank));
  DPT_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &p.world_size));
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int name_len = 0;
  DPT_CHECK_MPI(MPI_Get_processor_name(name, &name_len));
  p.host.assign(name, static_cast<size_t>(name_len));
  // Set as soon as rank and host are known, so the checks below already report them.
  set_error_context(p.rank, p.host);

  // Ranks sharing memory with us are the ones on our node; keying by world rank keeps the
  // local order the same as the world order.
  MPI_Comm node = MPI_COMM_NULL;
  DPT_CHECK_MPI(
      MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, p.rank, MPI_INFO_NULL, &node));
  try {
    DPT_CHECK_MPI(MPI_Comm_rank(node, &p.local_rank));
    DPT_CHECK_MPI(MPI_Comm_size(node, &p.local_size));
  } catch (...) {
    MPI_Comm_free(&node);
    throw;
  }
  DPT_CHECK_MPI(MPI_Comm_free(&node));
  return p;
}

}  // namespace

std::string mpi_error_string(int code) {
  std::string text;
  // MPI-3 allows MPI_Error_string only between init and finalize; a failing MPI_Finalize
  // still needs a message.
  if (mpi_is_usable()) {
    char buf[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    if (MPI_Error_string(code, buf, &len) == MPI_SUCCESS)
      text.assign(buf, static_cast<size_t>(len));
  }
  if (text.empty()) text = "unknown MPI error";
  return text + " (MPI error code " + std::to_string(code) + ")";
}

MpiSession::MpiSession(int* argc, char*** argv) {
  std::lock_guard<std::mutex> lock(g_session_mutex);
  int initialized = 0;
  int finalized = 0;
  DPT_CHECK_MPI(MPI_Initialized(&initialized));
  DPT_CHECK_MPI(MPI_Finalized(&finalized));
  DPT_CHECK(!finalized,
            "MPI was already finalized in this process and cannot start again; keep one "
            "MpiSession alive for as long as MPI is needed ([Session sharing], mpi_session.h)");

  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    DPT_CHECK_MPI(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    g_sessions_own_mpi = true;
  } else {
    DPT_CHECK_MPI(MPI_Query_thread(&provided));
  }
  // MPI's default handler aborts the job inside the failing call; returning the code instead
  // lets DPT_CHECK_MPI throw a RuntimeFailure that names the call, rank and host.
  // Communicators created from MPI_COMM_WORLD inherit this handler.
  DPT_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  // The thread levels are ordered by the standard (SINGLE < FUNNELED < SERIALIZED < MULTIPLE).
  DPT_CHECK(provided >= MPI_THREAD_FUNNELED,
            std::string("MPI provides ") + thread_level_name(provided) +
                " but MPI_THREAD_FUNNELED is needed (OpenMP threads run beside MPI calls); use "
                "an MPI library built with thread support");

  placement_ = query_placement();
  ++g_live_sessions;
}

MpiSession::~MpiSession() {
  if (finalized_) return;
  try {
    finalize();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpt warning: MpiSession could not finalize MPI: %s\n", e.what());
  }
}

void MpiSession::finalize() {
  if (finalized_) return;
  // Marked first so that a failing MPI_Finalize is not tried again by the destructor.
  finalized_ = true;
  std::lock_guard<std::mutex> lock(g_session_mutex);
  --g_live_sessions;
  if (g_live_sessions > 0 || !g_sessions_own_mpi) return;
  if (mpi_is_usable()) DPT_CHECK_MPI(MPI_Finalize());
}

void MpiSession::abort(int exit_code) {
  // MPI_Abort kills this process without running destructors or flushing stdio, and the
  // message that explains the abort is usually still in a buffer.
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  if (mpi_is_usable()) MPI_Abort(MPI_COMM_WORLD, exit_code);
  // MPI_Abort does not return in practice; if it does, or MPI is down, end at least this rank.
  std::_Exit(exit_code);
}

}  // namespace dpt::comm
