// parse_train_options on an argument list, as `train ARGS...` would see it (the option tests).
#pragma once

#include <string>
#include <vector>

#include "trainer/train_options.h"

namespace dpt::trainer {

inline ParsedOptions parse(std::vector<std::string> args) {
  args.insert(args.begin(), "train");
  std::vector<const char*> argv;
  for (auto& a : args)
    argv.push_back(a.c_str());
  return parse_train_options(static_cast<int>(argv.size()), argv.data());
}

}  // namespace dpt::trainer
