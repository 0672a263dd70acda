// inspect_sample_shard() on sample shards written by h5py, as users write them: good images,
// series and texts read back their facts (shapes, task, classes inferred where the file does not
// say); every defect is a one-line UsageError naming the file, the object and the fix.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "datasets/sample_inspect.h"

namespace dpt::datasets {
namespace {

namespace fs = std::filesystem;

class SampleShards : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("dpt-sample-shards-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes NAME.h5 with h5py: `body` runs with f (the open file), np and rng in scope.
  std::string write(const std::string& name, const std::string& body) {
    const std::string path = (dir_ / (name + ".h5")).string();
    const std::string script = (dir_ / (name + ".py")).string();
    std::ofstream(script) << "import h5py, numpy as np\n"
                          << "rng = np.random.default_rng(7)\n"
                          << "with h5py.File('" << path << "', 'w') as f:\n"
                          << "    f.attrs['format_version'] = 1\n"
                          << body;
    const std::string cmd = "/usr/bin/python3 " + script;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return path;
  }
  // The message of the UsageError inspecting `path` throws ("" when none).
  static std::string refusal(const std::string& path) {
    try {
      inspect_sample_shard(path);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "";
  }
  void expect_refused(const std::string& path, const std::string& what) {
    const std::string msg = refusal(path);
    EXPECT_NE(msg.find("shard " + path + ": "), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "want \"" << what << "\" in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }

  fs::path dir_;
};

TEST_F(SampleShards, ImagesWithLabelsOnlyAreCompleteAndInferTheirClasses) {
  const std::string path =
      write("fashion",
            "    f['inputs'] = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)\n"
            "    f['labels'] = np.arange(12) % 10\n");
  const SampleShardFacts s = inspect_sample_shard(path);
  EXPECT_EQ(s.kind, SampleKind::image);
  EXPECT_EQ(s.input_type, "uint8");
  EXPECT_EQ(s.num_samples, 12u);
  EXPECT_EQ(s.sample_shape, (std::vector<uint64_t>{28, 28, 1}));
  EXPECT_EQ(s.task, SampleTask::classify);
  EXPECT_EQ(s.num_classes, 10);  // the largest label + 1
  EXPECT_TRUE(s.class_names.empty());
  EXPECT_FALSE(s.has_lengths);
}

TEST_F(SampleShards, ClassNamesAndNumClassesComeFromTheAttributes) {
  const std::string path =
      write("rgb",
            "    f['inputs'] = rng.integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)\n"
            "    f['labels'] = np.array([0, 1, 1, 0, 1], dtype=np.int32)\n"
            "    f.attrs['class_names'] = ['cat', 'dog', 'bird']\n");
  const SampleShardFacts s = inspect_sample_shard(path);
  EXPECT_EQ(s.sample_shape, (std::vector<uint64_t>{8, 6, 3}));
  EXPECT_EQ(s.num_classes, 3);  // bird has no sample in this shard
  EXPECT_EQ(s.class_names, (std::vector<std::string>{"cat", "dog", "bird"}));
  const std::string attr =
      write("rgb_attr",
            "    f['inputs'] = rng.integers(0, 256, (4, 4, 4, 3), dtype=np.uint8)\n"
            "    f['labels'] = np.array([0, 1, 0, 1])\n"
            "    f.attrs['num_classes'] = 5\n");
  EXPECT_EQ(inspect_sample_shard(attr).num_classes, 5);
}

TEST_F(SampleShards, SeriesWithTargetsAreRegressionAndTextKeepsItsLengths) {
  const std::string series =
      write("co2",
            "    f['inputs'] = rng.normal(size=(9, 32, 2)).astype(np.float16)\n"
            "    f['targets'] = rng.normal(size=(9, 4)).astype(np.float32)\n");
  const SampleShardFacts s = inspect_sample_shard(series);
  EXPECT_EQ(s.kind, SampleKind::series);
  EXPECT_EQ(s.input_type, "float16");
  EXPECT_EQ(s.sample_shape, (std::vector<uint64_t>{32, 2}));
  EXPECT_EQ(s.task, SampleTask::regress);
  EXPECT_EQ(s.num_targets, 4u);

  const std::string text =
      write("fortunes",
            "    f['inputs'] = rng.integers(0, 257, (6, 40)).astype(np.int64)\n"
            "    f['labels'] = np.array([2, 0, 1, 2, 2, 1])\n"
            "    f['lengths'] = np.array([40, 3, 1, 17, 40, 9])\n");
  const SampleShardFacts t = inspect_sample_shard(text);
  EXPECT_EQ(t.kind, SampleKind::text);
  EXPECT_EQ(t.input_type, "int64");
  EXPECT_EQ(t.sample_shape, (std::vector<uint64_t>{40}));
  EXPECT_TRUE(t.has_lengths);
  EXPECT_EQ(t.num_classes, 3);

  // uint8 [N, T] is byte-level text; a kind attribute must fit the type it names.
  const std::string bytes = write("bytes",
                                  "    f['inputs'] = rng.integers(0, 256, (3, 7), dtype=np.uint8)\n"
                                  "    f['labels'] = np.array([0, 1, 1])\n");
  EXPECT_EQ(inspect_sample_shard(bytes).kind, SampleKind::text);
  const std::string named =
      write("named",
            "    f['inputs'] = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)\n"
            "    f['labels'] = np.array([0, 1, 1])\n"
            "    f.attrs['kind'] = 'series'\n");
  expect_refused(named, "as series samples: wrong type or rank");
}

TEST_F(SampleShards, EveryDefectIsRefusedWithTheFileAndTheFixNamed) {
  const std::string img = "    f['inputs'] = rng.integers(0, 256, (4, 6, 6), dtype=np.uint8)\n";
  expect_refused(write("no_inputs", "    f['labels'] = np.arange(4)\n"), "no /inputs dataset");
  expect_refused(write("rank1",
                       "    f['inputs'] = np.arange(4, dtype=np.uint8)\n"
                       "    f['labels'] = np.arange(4)\n"),
                 "one axis of samples and at least one more");
  expect_refused(write("both", img + "    f['labels'] = np.arange(4) % 2\n"
                                     "    f['targets'] = np.zeros(4, np.float32)\n"),
                 "both /labels and /targets");
  expect_refused(write("neither", img), "neither /labels nor /targets");
  expect_refused(write("count", img + "    f['labels'] = np.arange(5) % 2\n"),
                 "/labels has shape (5,) but /inputs holds 4 samples");
  expect_refused(write("negative", img + "    f['labels'] = np.array([0, 1, -1, 1])\n"),
                 "/labels[2] = -1 is outside [0, inf)");
  expect_refused(write("too_big", img + "    f['labels'] = np.array([0, 1, 3, 1])\n"
                                        "    f.attrs['num_classes'] = 3\n"),
                 "/labels[2] = 3 is outside [0, 3)");
  expect_refused(write("one_class", img + "    f['labels'] = np.zeros(4, np.int64)\n"),
                 "one class is nothing to classify");
  expect_refused(write("names", img + "    f['labels'] = np.arange(4) % 2\n"
                                      "    f.attrs['num_classes'] = 2\n"
                                      "    f.attrs['class_names'] = ['a', 'b', 'c']\n"),
                 "class_names of / has 3 names for num_classes 2");
  expect_refused(write("float_labels", img + "    f['labels'] = np.array([0.0, 1, 0, 1])\n"),
                 "/labels is float64 of shape (4,), not 1-D integers");
  expect_refused(write("nan_inputs",
                       "    x = rng.normal(size=(4, 8, 1)).astype(np.float32)\n"
                       "    x[2, 5, 0] = np.nan\n"
                       "    f['inputs'] = x\n"
                       "    f['targets'] = np.zeros((4, 1), np.float32)\n"),
                 "/inputs sample 2 holds NaN");
  expect_refused(write("inf_targets",
                       "    f['inputs'] = rng.normal(size=(4, 8)).astype(np.float32)\n"
                       "    t = np.zeros((4, 2), np.float32)\n"
                       "    t[3, 1] = np.inf\n"
                       "    f['targets'] = t\n"),
                 "/targets sample 3 holds an infinity");
  expect_refused(write("f64",
                       "    f['inputs'] = rng.normal(size=(4, 8))\n"
                       "    f['targets'] = np.zeros(4, np.float32)\n"),
                 "float64 is not stored for training");
  expect_refused(write("lengths",
                       "    f['inputs'] = rng.integers(0, 9, (3, 5)).astype(np.int32)\n"
                       "    f['labels'] = np.array([0, 1, 0])\n"
                       "    f['lengths'] = np.array([5, 0, 2])\n"),
                 "/lengths[1] = 0 is outside [1, 5]");
  expect_refused(write("image_lengths", img + "    f['labels'] = np.arange(4) % 2\n"
                                              "    f['lengths'] = np.ones(4, np.int32)\n"),
                 "only text has padding");
  expect_refused(write("kind", img + "    f['labels'] = np.arange(4) % 2\n"
                                     "    f.attrs['kind'] = 'audio'\n"),
                 "attribute kind of / is \"audio\", not image, series or text");
  expect_refused(write("version", img + "    f['labels'] = np.arange(4) % 2\n"
                                        "    f.attrs['format_version'] = 2\n"),
                 "format_version 2 is not supported");
  const std::string not_h5 = (dir_ / "notes.h5").string();
  std::ofstream(not_h5) << "not an HDF5 file\n";
  expect_refused(not_h5, "not an HDF5 file");
}

}  // namespace
}  // namespace dpt::datasets
