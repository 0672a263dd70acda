// The checkpoint tools' command line.
#include "trainer/tool_cli.h"

#include <cstdio>
#include <sstream>

#include "common/errors.h"

namespace dpt::trainer {

namespace po = boost::program_options;

bool parse_tool_command_line(const char* tool, int argc, char** argv,
                             const po::options_description& desc, std::string* ckpt,
                             po::variables_map* vm) {
  po::options_description hidden;
  hidden.add_options()("ckpt", po::value(ckpt));
  po::options_description all;
  all.add(desc).add(hidden);
  po::positional_options_description pos;
  pos.add("ckpt", 1);
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), *vm);
    po::notify(*vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + ". Run '" + tool + " --help' for the options.");
  }
  if (vm->count("help")) {
    std::ostringstream h;
    h << desc << "\n";
    std::fputs(h.str().c_str(), stdout);
    return false;
  }
  if (ckpt->empty())
    throw UsageError(std::string("no checkpoint: pass CKPT (") + tool + " --help)");
  return true;
}

std::vector<int64_t> parse_int_list(const std::string& text, int64_t limit, const char* option,
                                    const char* what) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
    }
    if (used == 0 || used != item.size() || v < 0 || v >= limit)
      throw UsageError(std::string(option) + ": '" + item + "' is not " + what + " in [0, " +
                       std::to_string(limit) + ")");
    out.push_back(v);
  }
  if (out.empty()) throw UsageError(std::string(option) + " holds no value");
  return out;
}

}  // namespace dpt::trainer
