// The option table of bin/train: one entry per option drives the command line, the --config file,
// --help, the option's own check, the config text a checkpoint records, and whether a resumed run
// may change it.
//
// [Option table]
// - An entry names the option, its help group and text, the TrainConfig field it sets, how its
//   text is parsed and printed, its check, and its rule on resume. Adding an option is one entry
//   in train_options.cpp (and the field in train_config.h).
// - Values are parsed into types once: integers, numbers, paths, enumerations and switches.
//   Enumerations name their choices in one place; a switch (a boolean option) works bare
//   (`--requeue-on-preempt`) and with a value (`--ckpt-async false`, `--ckpt-async=false`).
// - The command line wins over --config. A config file has the same names without the dashes.
// - The config text a checkpoint records lists every saved option with its value in the form
//   the parser reads back, so `train --config <that text>` is the same run. One limit comes
//   from the INI form Boost reads: a value is cut at '#' and trimmed, so a path holding '#' or
//   leading or trailing spaces does not survive it.
// - On resume: must_match options are part of what a checkpoint is (the model's shape, the
//   global batch, the seed and the sample order); a run that contradicts its checkpoint is
//   refused naming the option. may_change options (the schedule's length, the learning rate,
//   paths, the number of ranks through --micro-batch, ...) may differ. run_only options belong to
//   one invocation (testing faults, --stop-at-step) and are not recorded.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "trainer/train_config.h"

namespace dpt::trainer {

enum class OnResume { may_change, must_match, run_only };

struct OptionSpec {
  const char* name = "";   // "global-batch": --global-batch, and global-batch = in files
  const char* group = "";  // the --help section
  std::string help;
  OnResume on_resume = OnResume::may_change;
  bool is_switch = false;  // boolean: may be given bare
  // Sets the field from the option's text; throws UsageError naming the option and the value.
  std::function<void(TrainConfig&, const std::string&)> parse;
  // The field as text that parse reads back ("" for an empty path: not written to files).
  std::function<std::string(const TrainConfig&)> print;
  // The option's own check; throws UsageError saying what to change. Null: any parsed value.
  std::function<void(const TrainConfig&)> check;
  // What --help shows as the default ("" for none).
  std::string default_text;
};

// Every option of bin/train, in --help order ([Option table]).
const std::vector<OptionSpec>& train_options();

struct ParsedOptions {
  TrainConfig config;
  bool help = false;
  std::string help_text;
};

// Parses the command line and, with --config FILE, an INI-style file with the same option names
// (without the leading dashes); the command line wins. Throws UsageError.
ParsedOptions parse_train_options(int argc, const char* const* argv);

// Runs every option's own check, in table order. Throws UsageError.
void check_options(const TrainConfig& cfg);

// Every saved option as an INI file that --config reads back: what a checkpoint records.
std::string to_config_text(const TrainConfig& cfg);
// A checkpoint's config text read back; names this build does not know are ignored (they belong
// to a build that had more options). Throws UsageError for a value it cannot parse.
TrainConfig parse_config_text(const std::string& text);

// The must_match options a checkpoint recorded (its config text) against this run's: throws
// UsageError naming the first that differs, with the value to pass to continue it. Only those
// options are read from the text, so a recorded value of another option that this build would
// refuse does not stop a resume; an option the text does not record is not compared (the
// checkpoint's tensors and data still are, checkpoint/resume.h).
void check_resume_options(const std::string& recorded_config, const TrainConfig& now);

}  // namespace dpt::trainer
