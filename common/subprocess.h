// Running a short external command (scontrol, squeue) from a training process: posix_spawn
// rather than fork, so that a process holding MPI and large pinned buffers is never
// duplicated; stdout and stderr captured together; a time limit after which it is killed; the
// child starts with SIGTERM, SIGUSR1 and SIGUSR2 blocked (see run_command).
#pragma once

#include <string>
#include <vector>

namespace dpt {

struct CommandResult {
  int exit_code = -1;  // the command's exit status; -1 when it could not start, timed out or died
  std::string output;  // its stdout and stderr, at most 64 KiB
  std::string error;   // why it could not start or finish ("" when it ran to an exit status)
};

// Runs argv[0] (searched in PATH) with argv and the environment of this process. Never throws
// for the command's own failures; they are in the result.
CommandResult run_command(const std::vector<std::string>& argv, double timeout_s);

}  // namespace dpt
