// The checks of a run's configuration that span options; each option's own check is in the
// option table.
#include "trainer/train_config.h"

#include <string>

#include "common/errors.h"
#include "trainer/train_options.h"

namespace dpt::trainer {

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::fp32:
      return "fp32";
    case Precision::bf16:
      return "bf16";
    case Precision::automatic:
      return "auto";
  }
  return "?";
}

void TrainConfig::validate(int world_size) const {
  check_options(*this);
  model.validate_shape();  // the input and head are complete once the data is read
  const int64_t per_pass = int64_t{world_size} * micro_batch;
  if (global_batch % per_pass != 0) {
    const int64_t lower = (global_batch / per_pass) * per_pass;
    const int64_t upper = lower + per_pass;
    std::string choices =
        lower > 0 ? std::to_string(lower) + " or " + std::to_string(upper) : std::to_string(upper);
    throw UsageError("--global-batch " + std::to_string(global_batch) +
                     " is not divisible by ranks x --micro-batch = " + std::to_string(world_size) +
                     " x " + std::to_string(micro_batch) + " = " + std::to_string(per_pass) +
                     ": set --global-batch to a multiple of " + std::to_string(per_pass) + " (" +
                     choices + "), or change --micro-batch or the number of ranks.");
  }
  if (device == job::Device::cpu && dtype == Precision::bf16) {
    throw UsageError(
        "--dtype bf16 needs --device cuda: the CPU path computes in fp32. Pass --dtype fp32 "
        "(or auto), or --device cuda.");
  }
}

}  // namespace dpt::trainer
