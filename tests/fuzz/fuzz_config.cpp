// libFuzzer target: the option table's parsers ([Option table]) on arbitrary text. The first
// byte picks the form: a config file (the text a checkpoint records, read by --config and on
// resume) or a command line (the rest split at NUL bytes into arguments). Either must give a
// configuration or a UsageError. A configuration that passes every check must round-trip: its
// config text reads back to the same text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "trainer/train_options.h"

using namespace dpt;

namespace {

void round_trip(const trainer::TrainConfig& cfg) {
  trainer::check_options(cfg);
  const std::string text = trainer::to_config_text(cfg);
  const std::string again = trainer::to_config_text(trainer::parse_config_text(text));
  if (again != text) {
    std::fprintf(stderr, "config text does not round-trip:\n%s\n---\n%s\n", text.c_str(),
                 again.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    fuzz::usage_errors_only("config text", [&] { round_trip(trainer::parse_config_text(body)); });
    return 0;
  }
  std::vector<std::string> args{"train"};
  std::string cur;
  for (char c : body) {
    if (c == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  args.push_back(cur);
  std::vector<const char*> argv;
  for (const std::string& a : args)
    argv.push_back(a.c_str());
  fuzz::usage_errors_only("command line", [&] {
    const trainer::ParsedOptions p =
        trainer::parse_train_options(static_cast<int>(argv.size()), argv.data());
    if (!p.help) round_trip(p.config);
  });
  return 0;
}
