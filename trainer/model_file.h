// A trained model read back from a checkpoint by the tools (bin/generate, bin/attention): the
// options its run recorded, and the parameters assembled from every rank file, each checked
// against its size and CRC-32C as it is read. No MPI: one process reads every file.
#pragma once

#include <string>
#include <vector>

#include "common/tensor_view.h"
#include "trainer/train_config.h"

namespace dpt::trainer {

struct CheckpointModel {
  std::string step_dir;  // the checkpoint read (CKPT_DIR/step_NNNNNNNN)
  int64_t step = 0;
  TrainConfig config;  // what the run recorded; model.vocab_size etc. from the metadata
  std::vector<TensorView> tensors;
  std::vector<float> params;
};

// path: one checkpoint, or a checkpoint directory (its `latest`). Throws UsageError naming the
// path and the fix.
CheckpointModel load_checkpoint_model(const std::string& path);

// Throws UsageError unless cfg's [Parameter layout] is the checkpoint's, tensor by tensor.
void check_layout_matches(const ModelConfig& cfg, const CheckpointModel& m);

}  // namespace dpt::trainer
