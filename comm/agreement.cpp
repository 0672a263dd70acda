// Implementation of [Agreed failure]: all-gather of status codes, broadcast of one message
// ([Typed collectives]).
#include "comm/agreement.h"

#include <cstdint>
#include <vector>

#include "comm/typed_collectives.h"
#include "common/errors.h"

namespace dpt::comm {

void run_agreed(Communicator& comm, const std::function<void()>& fn) {
  int32_t status = 0;
  std::string message;
  try {
    fn();
  } catch (const UsageError& e) {
    status = 2;
    message = e.what();
  } catch (const AgreedFailure& e) {
    status = e.exit_code();
    message = e.what();
  } catch (const std::exception& e) {
    status = 1;
    message = e.what();
  } catch (...) {
    status = 1;
    message = "unknown exception (not derived from std::exception)";
  }
  const std::vector<int32_t> all = all_gather_value(comm, status);
  int origin = -1;
  for (int r = 0; r < comm.world_size(); ++r) {
    if (all[r] != 0) {
      origin = r;
      break;
    }
  }
  if (origin < 0) return;
  std::string agreed = message;
  broadcast_string(comm, agreed, origin);
  if (origin != 0) agreed = "on rank " + std::to_string(origin) + ": " + agreed;
  throw AgreedFailure(agreed, all[origin], origin);
}

}  // namespace dpt::comm
