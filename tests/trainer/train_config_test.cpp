// Option parsing: names shared by command line and config file, the command line winning, and
// the messages of inconsistent sizes.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "tests/trainer/parse_args.h"
#include "trainer/train_config.h"
#include "trainer/train_options.h"

namespace dpt::trainer {
namespace {

std::string usage_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no UsageError)";
}

TEST(TrainOptions, CommandLineWinsOverConfigFile) {
  const std::string path = ::testing::TempDir() + "/train_options_test.ini";
  {
    std::ofstream f(path);
    f << "# comment\nd-model = 64\nn-head = 8\nlr = 0.005\nsteps = 7\n";
  }
  const ParsedOptions o = parse({"--config", path, "--d-model", "96", "--data", "x"});
  EXPECT_EQ(o.config.model.d_model, 96);  // command line
  EXPECT_EQ(o.config.model.n_head, 8);    // file
  EXPECT_DOUBLE_EQ(o.config.opt.lr, 0.005);
  EXPECT_EQ(o.config.steps, 7);
  EXPECT_EQ(o.config.opt.total_steps, 7);
  EXPECT_TRUE(o.config.vocab_from_data);
  std::remove(path.c_str());
}

// What a checkpoint records as its config: every option, and --config reads it back to the
// same configuration (values of every kind: paths, doubles, 64-bit seeds, booleans).
TEST(TrainOptions, ConfigFileOfARunReadsBackToTheSameRun) {
  const ParsedOptions o = parse({"--data",         "/d/train",
                                 "--val-data",     "/d/val",
                                 "--vocab-size",   "300",
                                 "--lr",           "0.000123456789012345",
                                 "--seed",         "18446744073709551557",
                                 "--ckpt-dir",     "/ck",
                                 "--ckpt-every",   "50",
                                 "--ckpt-async",   "false",
                                 "--shuffle",      "local",
                                 "--nonfinite",    "skip",
                                 "--min-lr-ratio", "0.05",
                                 "--steps",        "77"});
  const std::string text = to_config_text(o.config);
  const std::string path = ::testing::TempDir() + "/train_options_roundtrip.ini";
  {
    std::ofstream f(path);
    f << text;
  }
  const ParsedOptions back = parse({"--config", path});
  EXPECT_EQ(to_config_text(back.config), text);
  EXPECT_EQ(back.config.seed, 18446744073709551557ull);
  EXPECT_EQ(back.config.opt.lr, 0.000123456789012345);
  EXPECT_FALSE(back.config.ckpt_async);
  EXPECT_EQ(back.config.ckpt_dir, "/ck");
  std::remove(path.c_str());
}

TEST(TrainConfig, CheckpointAndNonFiniteOptionsAreChecked) {
  auto bad = [](std::vector<std::string> args, const std::string& needle) {
    args.insert(args.end(), {"--data", "x"});
    const std::string msg = usage_message([&] { parse(args).config.validate(1); });
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  };
  bad({"--ckpt-every", "-1"}, "--ckpt-every");
  bad({"--ckpt-keep", "-2"}, "--ckpt-keep");
  bad({"--nonfinite", "ignore"}, "--nonfinite must be 'stop' or 'skip'");
  bad({"--nonfinite-max-skips", "0"}, "--nonfinite-max-skips");
  bad({"--stop-at-step", "-3"}, "--stop-at-step");
  bad({"--ckpt-async", "maybe"}, "ckpt-async");
}

TEST(TrainOptions, VocabSizeGivenTurnsOffTheDataDefault) {
  const ParsedOptions o = parse({"--vocab-size", "300"});
  EXPECT_FALSE(o.config.vocab_from_data);
  EXPECT_EQ(o.config.model.vocab_size, 300);
}

TEST(TrainOptions, UnknownOptionIsAUsageErrorPointingToHelp) {
  const std::string msg = usage_message([] { parse({"--d-modle", "3"}); });
  EXPECT_NE(msg.find("d-modle"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--help"), std::string::npos) << msg;
}

TEST(TrainOptions, UnknownNameInConfigFileIsAUsageError) {
  const std::string path = ::testing::TempDir() + "/train_options_bad.ini";
  {
    std::ofstream f(path);
    f << "d_model = 64\n";
  }
  const std::string msg = usage_message([&] { parse({"--config", path}); });
  EXPECT_NE(msg.find("d_model"), std::string::npos) << msg;
  std::remove(path.c_str());
}

TEST(TrainOptions, SeedMustBeANonNegativeInteger) {
  EXPECT_EQ(parse({"--seed", "18446744073709551615"}).config.seed, 18446744073709551615ull);
  EXPECT_NE(usage_message([] { parse({"--seed", "-1"}); }).find("--seed -1"), std::string::npos);
  EXPECT_NE(usage_message([] {
              parse({"--seed", "18446744073709551616"});
            }).find("--seed"),
            std::string::npos);
  EXPECT_NE(usage_message([] { parse({"--seed", "12a"}); }).find("--seed 12a"), std::string::npos);
}

TEST(TrainOptions, MissingConfigFileNamesThePath) {
  const std::string msg = usage_message([] { parse({"--config", "/nonexistent/x.ini"}); });
  EXPECT_NE(msg.find("/nonexistent/x.ini"), std::string::npos) << msg;
}

TEST(TrainConfig, GlobalBatchNotDivisibleSaysWhatToChoose) {
  TrainConfig c;
  c.data = "x";
  c.global_batch = 10;
  c.micro_batch = 4;
  const std::string msg = usage_message([&] { c.validate(2); });
  EXPECT_NE(msg.find("--global-batch 10 is not divisible by ranks x --micro-batch = 2 x 4 = 8"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("(8 or 16)"), std::string::npos) << msg;
  c.global_batch = 16;
  EXPECT_NO_THROW(c.validate(2));
  EXPECT_EQ(c.accum_steps(2), 2);
}

TEST(TrainConfig, NonPositiveSizesAreRejected) {
  TrainConfig c;
  c.data = "x";
  c.steps = 0;
  EXPECT_NE(usage_message([&] { c.validate(1); }).find("--steps"), std::string::npos);
  c.steps = 1;
  c.model.seq_len = -3;
  EXPECT_NE(usage_message([&] { c.validate(1); }).find("--seq-len"), std::string::npos);
}

}  // namespace
}  // namespace dpt::trainer
