// CPU threads per rank when --threads is not given.
#pragma once

namespace dpt::job {

// OMP_NUM_THREADS if set (as torchrun and most MPI launch scripts set it); else the CPUs this
// process may run on, shared among the `local_size` ranks of the node when the launcher did not
// bind them (the affinity mask covers the whole node).
int default_cpu_threads(int local_size);

}  // namespace dpt::job
