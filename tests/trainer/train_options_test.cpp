// [Option table]: every saved option round-trips through the config text a checkpoint records
// (written to meta.h5 and read back), run-only options stay out of it, every must_match option
// refuses a resume that changes it, switches work bare and with a value, and metrics lines stay
// JSON whatever a path holds.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/meta_file.h"
#include "common/errors.h"
#include "tests/trainer/parse_args.h"
#include "trainer/metrics.h"
#include "trainer/train_options.h"

namespace dpt::trainer {
namespace {

// A value other than the default for every option of the table. A new option must be added
// here, or TableValuesCoverEveryOption fails: its round trip is then tested like the others.
const std::map<std::string, std::string> kOtherValues = {
    {"data", "/d/train shards/ü"},
    {"metrics", "/runs/a\"b/m.jsonl"},
    {"seed", "18446744073709551557"},
    {"threads", "3"},
    {"log-every", "7"},
    {"check-sync-every", "0"},
    {"device", "cuda"},
    {"dtype", "bf16"},
    {"val-data", "/d/val"},
    {"val-every", "25"},
    {"val-samples", "64"},
    {"shuffle", "local"},
    {"shuffle-window", "3"},
    {"prefetch", "2"},
    {"data-cache-mb", "64"},
    {"index-cache", "/tmp/idx"},
    {"task", "classify"},
    {"vocab-size", "300"},
    {"patch", "7"},
    {"pool", "mean"},
    {"attention", "fused"},
    {"seq-len", "64"},
    {"d-model", "96"},
    {"n-layer", "3"},
    {"n-head", "6"},
    {"steps", "77"},
    {"global-batch", "32"},
    {"micro-batch", "4"},
    {"lr", "0.000123456789012345"},
    {"min-lr-ratio", "0.05"},
    {"warmup-steps", "11"},
    {"weight-decay", "0.01"},
    {"beta1", "0.8"},
    {"beta2", "0.999"},
    {"adam-eps", "1e-06"},
    {"grad-clip", "0"},
    {"bucket-mb", "0.5"},
    {"zero", "2"},
    {"peak-tflops", "12.5"},
    {"trace", "/tmp/t.json"},
    {"trace-steps", "3-9"},
    {"ckpt-dir", "/ck"},
    {"ckpt-every", "50"},
    {"ckpt-keep", "0"},
    {"ckpt-async", "false"},
    {"resume", "/ck/step_00000050"},
    {"stop-at-step", "9"},
    {"nonfinite", "skip"},
    {"nonfinite-max-skips", "2"},
    {"fault-nan-step", "4"},
    {"fault-kill-in-save", "5"},
    {"fault-skip-collective", "6"},
    {"ckpt-on-error", "continue"},
    {"collective-timeout", "12.5"},
    {"preempt-signal", "USR1"},
    {"requeue-on-preempt", "true"},
    {"stop-before-limit", "120"},
};

TEST(OptionTable, TableValuesCoverEveryOption) {
  std::set<std::string> names;
  for (const OptionSpec& o : train_options()) {
    EXPECT_TRUE(names.insert(o.name).second) << "option listed twice: " << o.name;
    EXPECT_TRUE(kOtherValues.count(o.name)) << "no test value for --" << o.name;
    EXPECT_TRUE(o.parse && o.print) << o.name;
  }
  EXPECT_EQ(names.size(), kOtherValues.size());
}

TEST(OptionTable, EveryOptionRoundTripsThroughTheConfigTextACheckpointRecords) {
  std::vector<std::string> args;
  for (const auto& [name, value] : kOtherValues)
    args.insert(args.end(), {"--" + name, value});
  const TrainConfig run = parse(args).config;
  const TrainConfig defaults;

  // Through meta.h5, as a checkpoint stores it.
  const std::string dir = ::testing::TempDir() + "/option_table_meta";
  std::filesystem::create_directories(dir);
  checkpoint::CheckpointMeta meta;  // one rank file holding a state of 10 values
  meta.world_size = 1;
  meta.param_count = 10;
  meta.tensors = {TensorView{"w", 0, {10}}};
  checkpoint::RankFileRecord file;
  file.name = checkpoint::rank_file_name(0);
  file.hi = 10;
  meta.files = {file};
  meta.config = to_config_text(run);
  checkpoint::write_meta(dir + "/meta.h5", meta);
  const TrainConfig back = parse_config_text(checkpoint::read_meta(dir + "/meta.h5").config);
  std::filesystem::remove_all(dir);

  for (const OptionSpec& o : train_options()) {
    const std::string set = o.print(run);
    EXPECT_EQ(set, kOtherValues.at(o.name)) << "--" << o.name << " parsed and printed";
    EXPECT_NE(set, o.print(defaults)) << "--" << o.name << ": the test value is the default";
    if (o.on_resume == OnResume::run_only) {
      EXPECT_EQ(o.print(back), o.print(defaults)) << "--" << o.name << " is run-only";
      EXPECT_EQ(meta.config.find(std::string("\n") + o.name + " ="), std::string::npos) << o.name;
    } else {
      EXPECT_EQ(o.print(back), set) << "--" << o.name << " after the checkpoint's round trip";
    }
  }
  EXPECT_FALSE(back.vocab_from_data);
  EXPECT_EQ(back.opt.total_steps, 77);
  // --config reads the same text to the same run.
  const std::string path = ::testing::TempDir() + "/option_table.ini";
  {
    std::ofstream f(path);
    f << meta.config;
  }
  EXPECT_EQ(to_config_text(parse({"--config", path}).config), meta.config);
  std::remove(path.c_str());
}

TEST(OptionTable, EveryMustMatchOptionRefusesAResumeThatChangesIt) {
  const TrainConfig saved;
  const std::string recorded = to_config_text(saved);
  int must = 0;
  for (const OptionSpec& o : train_options()) {
    TrainConfig now = saved;
    o.parse(now, kOtherValues.at(o.name));
    if (o.on_resume != OnResume::must_match) {
      EXPECT_NO_THROW(check_resume_options(recorded, now)) << "--" << o.name << " may change";
      continue;
    }
    ++must;
    try {
      check_resume_options(recorded, now);
      ADD_FAILURE() << "--" << o.name << " changed, but the resume was not refused";
    } catch (const UsageError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("--" + std::string(o.name) + " " + kOtherValues.at(o.name) +
                         " contradicts the checkpoint"),
                std::string::npos)
          << msg;
      EXPECT_NE(msg.find("pass --" + std::string(o.name) + " " + o.print(saved)), std::string::npos)
          << msg;
    }
  }
  // The model's task, input and shape, the global batch, the seed and the sample order.
  EXPECT_EQ(must, 12);
  // A recorded value this build refuses, of an option a resume may change, does not matter;
  // unknown names are ignored.
  EXPECT_NO_THROW(check_resume_options(recorded + "lr = fast\nsome-old-option = 3\n", saved));
}

TEST(OptionTable, SwitchesWorkBareAndWithAValue) {
  EXPECT_TRUE(parse({"--requeue-on-preempt"}).config.requeue_on_preempt);
  EXPECT_TRUE(parse({"--requeue-on-preempt", "--data", "x"}).config.requeue_on_preempt);
  EXPECT_EQ(parse({"--requeue-on-preempt", "--data", "x"}).config.data, "x");
  EXPECT_FALSE(parse({"--ckpt-async", "false"}).config.ckpt_async);
  EXPECT_FALSE(parse({"--ckpt-async=no"}).config.ckpt_async);
  EXPECT_TRUE(parse({"--ckpt-async", "on"}).config.ckpt_async);
  EXPECT_FALSE(parse({"--data", "x"}).config.requeue_on_preempt);
  EXPECT_THROW(parse({"--ckpt-async=maybe"}), UsageError);
  const std::string path = ::testing::TempDir() + "/switch.ini";
  {
    std::ofstream f(path);
    f << "requeue-on-preempt = true\nckpt-async = false\n";
  }
  const TrainConfig c = parse({"--config", path}).config;
  EXPECT_TRUE(c.requeue_on_preempt);
  EXPECT_FALSE(c.ckpt_async);
  std::remove(path.c_str());
}

// A text value that would not read back from the recorded config text is refused when given
// (fuzz_config found a line break in --data turning into an option of its own).
TEST(OptionTable, TextValuesThatCannotBeRecordedAreRefused) {
  for (const char* bad : {"/runs/a\ngrad-clip = 0", "/runs/a#b", " /runs/a", "/runs/a\t"}) {
    try {
      parse({"--data", bad});
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("--data ", 0), 0u) << e.what();
    }
  }
  EXPECT_EQ(parse({"--data", "/runs/a b/c"}).config.data, "/runs/a b/c");
}

TEST(OptionTable, EnumerationsNameTheirChoices) {
  EXPECT_EQ(parse({"--device", "cpu"}).config.device, job::Device::cpu);
  EXPECT_EQ(parse({"--dtype", "fp32"}).config.dtype, Precision::fp32);
  EXPECT_EQ(parse({"--resume", "never"}).config.resume.mode,
            checkpoint::ResumeRequest::Mode::never);
  EXPECT_EQ(parse({"--preempt-signal", "none"}).config.preempt_signal, 0);
  try {
    parse({"--device", "gpu"});
    ADD_FAILURE() << "--device gpu accepted";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()), "--device must be 'cpu', 'cuda' or 'auto', got 'gpu'.");
  }
  EXPECT_THROW(parse({"--lr", "fast"}), UsageError);
  EXPECT_THROW(parse({"--steps", "1.5"}), UsageError);
  // As Boost's lexical_cast read them before the table: a leading '+', inf and nan (which the
  // checks then judge), so that every recorded config still reads.
  EXPECT_EQ(parse({"--steps", "+5"}).config.steps, 5);
  EXPECT_EQ(parse({"--grad-clip", "inf"}).config.opt.grad_clip, INFINITY);
  EXPECT_THROW(check_options(parse({"--data", "x", "--lr", "nan"}).config), UsageError);
  EXPECT_THROW(parse({"--steps", "+-5"}), UsageError);
}

TEST(OptionTable, HelpListsEveryOptionWithItsGroupAndResumeRule) {
  const std::string help = parse({"--help"}).help_text;
  for (const OptionSpec& o : train_options())
    EXPECT_NE(help.find("--" + std::string(o.name)), std::string::npos) << o.name;
  EXPECT_NE(help.find("Cluster jobs"), std::string::npos);
  EXPECT_NE(help.find("fixed by a checkpoint"), std::string::npos);
  EXPECT_TRUE(parse({"--help"}).help);
}

// [JSON lines]: quotes, backslashes, control characters and non-ASCII in a path.
TEST(MetricsWriter, EventLinesWithAnyPathParseAsJson) {
  const std::string path = ::testing::TempDir() + "/metrics_json.jsonl";
  const std::string nasty = "runs/a\"b\\c/\xc3\xa9t\xc3\xa9/\t\x01/step_00000003";
  {
    MetricsWriter w(path);
    StepRecord r;
    r.step = 3;
    r.loss = 2.5;
    w.write(r);
    w.write_event(JsonRecord().add("event", "checkpoint").add("step", 3).add("path", nasty));
    w.write_event(JsonRecord().add("path", "ck\xe9-\x80-\xe2\x82-\xed\xa0\x80-\xe2\x82\xac"));
  }
  std::ifstream in(path);
  std::string line;
  std::vector<boost::json::value> rows;
  while (std::getline(in, line)) {
    boost::system::error_code ec;
    rows.push_back(boost::json::parse(line, ec));
    ASSERT_FALSE(ec) << line;
  }
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].at("loss").as_double(), 2.5);
  EXPECT_EQ(rows[1].at("path").as_string(), nasty);
  EXPECT_EQ(rows[1].at("step").as_int64(), 3);
  // Bytes that are not UTF-8 (Latin-1, a lone continuation byte, a truncated sequence, an
  // encoded surrogate) become U+FFFD; the rest is kept.
  EXPECT_EQ(rows[2].at("path").as_string(),
            "ck\xEF\xBF\xBD-\xEF\xBF\xBD-\xEF\xBF\xBD\xEF\xBF\xBD-"
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD-\xE2\x82\xAC");
  std::remove(path.c_str());
}

// A resumed run keeps the lines up to its checkpoint's step, whatever build wrote them (older
// ones did not escape quotes in paths), and drops the torn last line of a killed writer.
TEST(MetricsWriter, AResumeKeepsEveryLineUpToItsStepAndDropsATornTail) {
  const std::string path = ::testing::TempDir() + "/metrics_resume.jsonl";
  {
    std::ofstream f(path, std::ios::binary);
    f << "{\"step\": 1, \"loss\": 3}\n"
         "{\"event\": \"checkpoint\", \"step\": 2, \"path\": \"runs/a\"b\"}\n"
         "{\"step\": 2, \"loss\": 2.5}\n"
         "{\"step\": 3, \"loss\": 2}\n"
         "{\"step\": 2, \"lo";
  }
  {
    MetricsWriter w(path, /*resumed_step=*/2);
    StepRecord r;
    r.step = 3;
    r.loss = 1.5;
    w.write(r);
  }
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "{\"step\": 1, \"loss\": 3}");
  EXPECT_EQ(lines[1], "{\"event\": \"checkpoint\", \"step\": 2, \"path\": \"runs/a\"b\"}");
  EXPECT_EQ(lines[2], "{\"step\": 2, \"loss\": 2.5}");
  EXPECT_EQ(lines[3].rfind("{\"step\": 3, \"loss\": 1.5,", 0), 0u) << lines[3];
  std::remove(path.c_str());
}

}  // namespace
}  // namespace dpt::trainer
