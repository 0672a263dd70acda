// [Crash note]: per-thread notes and the fatal-signal reporter.
#include "common/crash_note.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace dpt {

namespace {

constexpr size_t kNoteBytes = 1024;
thread_local char t_note[kNoteBytes];
thread_local bool t_noted = false;

char g_program[64] = "dptrain";
std::atomic<int> g_rank{-1};
constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
struct sigaction g_previous[sizeof(kSignals) / sizeof(kSignals[0])];
std::atomic<bool> g_installed{false};

void put(const char* s) {
  (void)!::write(STDERR_FILENO, s, ::strlen(s));
}

void on_fatal(int sig, siginfo_t* info, void* context) {
  if (t_noted) {
    char line[kNoteBytes + 256];
    const int rank = g_rank.load();
    char where[32] = "";
    if (rank >= 0) std::snprintf(where, sizeof(where), " on rank %d", rank);
    // snprintf is not async-signal-safe in general; glibc's is for these conversions, and the
    // process is ending either way.
    std::snprintf(line, sizeof(line), "%s: fatal signal %d (%s)%s while %s\n", g_program, sig,
                  ::strsignal(sig), where, t_note);
    put(line);
  }
  // Then whatever was installed before: Open MPI's backtrace, a sanitizer's report, the default.
  for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i) {
    if (kSignals[i] != sig) continue;
    const struct sigaction& prev = g_previous[i];
    if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction != nullptr) {
      prev.sa_sigaction(sig, info, context);
      return;
    }
    if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN && prev.sa_handler != nullptr) {
      prev.sa_handler(sig);
      return;
    }
  }
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(sig, &dfl, nullptr);
  ::raise(sig);
}

}  // namespace

void install_crash_reporter(const char* program, int rank) {
  std::snprintf(g_program, sizeof(g_program), "%s", program);
  g_rank.store(rank);
  if (g_installed.exchange(true)) return;
  for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i) {
    struct sigaction sa {};
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(kSignals[i], &sa, &g_previous[i]);
  }
}

CrashNote::CrashNote(const std::string& doing, const std::string& fix) : outer_(!t_noted) {
  if (!outer_) return;  // the outer note says more (which file); keep it
  std::snprintf(t_note, sizeof(t_note), "%s: %s", doing.c_str(), fix.c_str());
  t_noted = true;
}

CrashNote::~CrashNote() {
  if (outer_) t_noted = false;
}

}  // namespace dpt
