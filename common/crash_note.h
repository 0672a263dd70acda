// What this process was doing when a fatal signal ended it, in one line on stderr.
//
// [Crash note] A library can crash on input it should have refused: HDF5 1.10.8 does on some
// malformed files (scripts/fuzz.sh found invalid frees in it). The work that hands such input
// to a library names it in a CrashNote ("reading shard data/x.h5 with HDF5"); a fatal signal
// (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) then prints "PROGRAM: fatal signal N (NAME) on
// rank R while NOTE: FIX" before the handler that was there (Open MPI's, a sanitizer's, the
// default) runs. The note is a fixed buffer per thread written outside any signal; the handler
// only reads it and calls write(2).
#pragma once

#include <string>

namespace dpt {

// Installs the reporter for this process (once; later calls change the program name and rank).
void install_crash_reporter(const char* program, int rank);

// Names what this thread is doing until the note goes out of scope.
class CrashNote {
 public:
  CrashNote(const std::string& doing, const std::string& fix);
  ~CrashNote();
  CrashNote(const CrashNote&) = delete;
  CrashNote& operator=(const CrashNote&) = delete;

 private:
  bool outer_;  // the outermost note of this thread clears it at the end
};

}  // namespace dpt
