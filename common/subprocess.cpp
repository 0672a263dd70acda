// posix_spawnp with a pipe for the child's output, read under a deadline with poll(2).
#include "common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/errors.h"

extern char** environ;

namespace dpt {

CommandResult run_command(const std::vector<std::string>& argv, double timeout_s) {
  CommandResult r;
  if (argv.empty()) {
    r.error = "no command";
    return r;
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    r.error = "pipe: " + errno_string(errno);
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  // The child starts with default handlers, and with the signals that end a job's tasks
  // (SIGTERM, SIGUSR1, SIGUSR2) blocked: Slurm signals every process of a step, and a requeue
  // in flight must finish rather than die of the termination it causes. The time limit below
  // still bounds it.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t stop, all;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGUSR1);
  sigaddset(&stop, SIGUSR2);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &stop);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    r.error = "cannot run " + argv[0] + ": " + errno_string(rc);
    return r;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  bool timed_out = false;
  char buf[4096];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;  // the deadline check above ends the wait
    const ssize_t got = ::read(fds[0], buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;  // end of output: the child closed its side (usually by exiting)
    if (r.output.size() < (64u << 10)) r.output.append(buf, static_cast<size_t>(got));
  }
  ::close(fds[0]);
  // The output ended (or the time ran out); the exit itself is awaited under the same deadline.
  int status = 0;
  for (;;) {
    if (timed_out) ::kill(pid, SIGKILL);
    const pid_t w = ::waitpid(pid, &status, timed_out ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      r.error = "waiting for " + argv[0] + " failed: " + errno_string(errno);
      return r;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      timed_out = true;
      continue;
    }
    ::usleep(10000);
  }
  if (timed_out) {
    r.error =
        argv[0] + " did not finish within " + std::to_string(static_cast<int>(timeout_s)) + " s";
  } else if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.error = argv[0] + " was killed by signal " + std::to_string(WTERMSIG(status));
  }
  return r;
}

}  // namespace dpt
