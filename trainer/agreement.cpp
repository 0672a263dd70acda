// Implementation of [Agreed failure]: all-gather of status codes, broadcast of one message.
#include "trainer/agreement.h"

#include <cstdint>
#include <vector>

#include "common/errors.h"

namespace dpt::trainer {

void run_agreed(comm::Communicator& comm, const std::function<void()>& fn) {
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
  std::vector<int32_t> all(comm.world_size(), 0);
  comm.all_gather(&status, all.data(), 1, comm::DType::i32);
  int origin = -1;
  for (int r = 0; r < comm.world_size(); ++r) {
    if (all[r] != 0) {
      origin = r;
      break;
    }
  }
  if (origin < 0) return;
  int64_t len = static_cast<int64_t>(message.size());
  comm.broadcast(&len, 1, comm::DType::i64, origin);
  std::string agreed(static_cast<size_t>(len), '\0');
  if (comm.rank() == origin) agreed = message;
  comm.broadcast(agreed.data(), agreed.size(), comm::DType::u8, origin);
  if (origin != 0) agreed = "on rank " + std::to_string(origin) + ": " + agreed;
  throw AgreedFailure(agreed, all[origin], origin);
}

}  // namespace dpt::trainer
