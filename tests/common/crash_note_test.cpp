// [Crash note]: a fatal signal under a note prints the note (program, signal, rank, what and
// the fix) before the process dies of the signal; without a note nothing extra is printed; an
// inner note does not replace the outer one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "common/crash_note.h"

namespace dpt {
namespace {

// Killed by the signal, or, under a sanitizer whose handler runs after the note, ended by it.
bool died(int status) {
  return WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

TEST(CrashNoteDeathTest, AFatalSignalNamesWhatTheThreadWasReading) {
  EXPECT_EXIT(
      {
        install_crash_reporter("train", 3);
        const CrashNote note("reading shard data/x.h5", "re-create it");
        const CrashNote inner("reading chunk 7", "ignored");
        ::raise(SIGSEGV);
      },
      died,
      "train: fatal signal 11 \\(Segmentation fault\\) on rank 3 while reading shard data/x.h5: "
      "re-create it\n");
}

TEST(CrashNoteDeathTest, NoNoteNoLine) {
  EXPECT_EXIT(
      {
        install_crash_reporter("train", 0);
        { const CrashNote note("reading shard data/x.h5", "re-create it"); }
        std::fputs("marker\n", stderr);
        ::raise(SIGILL);  // one that no sanitizer handles: nothing follows the marker
      },
      died, "^marker\n$");
}

}  // namespace
}  // namespace dpt
