// [Agreed failure] Setup steps that can fail differently on different ranks (a file visible on
// one node but not another, a bad option) run on every rank, and then every rank learns the
// outcome through one collective. If any rank failed, all ranks throw the same AgreedFailure,
// carrying the lowest failing rank's message, so rank 0 reports it once and every rank exits
// with the same code: nobody waits in a collective that another rank will never reach.
#pragma once

#include <functional>
#include <stdexcept>
#include <string>

#include "comm/communicator.h"

namespace dpt::comm {

class AgreedFailure : public std::runtime_error {
 public:
  AgreedFailure(const std::string& msg, int exit_code, int origin_rank)
      : std::runtime_error(msg), exit_code_(exit_code), origin_rank_(origin_rank) {}
  int exit_code() const { return exit_code_; }  // 2 for UsageError, 1 for anything else
  int origin_rank() const { return origin_rank_; }

 private:
  int exit_code_;
  int origin_rank_;
};

// Runs fn on this rank, then agrees with all ranks of comm; throws AgreedFailure on every rank
// if fn threw on any.
void run_agreed(Communicator& comm, const std::function<void()>& fn);

}  // namespace dpt::comm
