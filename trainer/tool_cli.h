// The command line the checkpoint tools share (bin/generate, bin/attention): one positional
// CKPT and options, --help, and comma-separated integer lists; every mistake a UsageError that
// says what to run for help.
#pragma once

#include <boost/program_options.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace dpt::trainer {

// Parses argv against desc (which holds --help) and CKPT into *ckpt. Returns false after
// printing --help; throws UsageError for an unknown option, a bad value or a missing CKPT.
bool parse_tool_command_line(const char* tool, int argc, char** argv,
                             const boost::program_options::options_description& desc,
                             std::string* ckpt, boost::program_options::variables_map* vm);

// "3,0,17" -> {3, 0, 17}, each in [0, limit); throws UsageError naming `option`.
std::vector<int64_t> parse_int_list(const std::string& text, int64_t limit, const char* option,
                                    const char* what);

}  // namespace dpt::trainer
