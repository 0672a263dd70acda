// scontrol requeue, with its answer trimmed for one log line.
#include "job/requeue.h"

#include <cctype>

#include "common/subprocess.h"

namespace dpt::job {

RequeueResult requeue_job(const SlurmEnv& env, int timeout_s) {
  const CommandResult r = run_command({"scontrol", "requeue", env.requeue_id()}, timeout_s);
  RequeueResult out;
  out.ok = r.exit_code == 0;
  if (out.ok) return out;
  out.error = r.error.empty() ? r.output : r.error;
  while (!out.error.empty() && std::isspace(static_cast<unsigned char>(out.error.back())))
    out.error.pop_back();
  return out;
}

}  // namespace dpt::job
