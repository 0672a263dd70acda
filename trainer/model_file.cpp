// Reading a checkpoint's parameters for the tools.
#include "trainer/model_file.h"

#include <array>
#include <filesystem>

#include "checkpoint/directory.h"
#include "checkpoint/format.h"
#include "checkpoint/meta_file.h"
#include "checkpoint/rank_file.h"
#include "common/errors.h"
#include "trainer/param_layout.h"
#include "trainer/train_options.h"

namespace dpt::trainer {

namespace fs = std::filesystem;

CheckpointModel load_checkpoint_model(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec))
    throw UsageError(path +
                     " is not a directory: pass a checkpoint (CKPT_DIR/step_*) or a "
                     "checkpoint directory (--ckpt-dir of the run)");
  CheckpointModel m;
  m.step_dir = path;
  if (!fs::exists(fs::path(path) / checkpoint::kMetaFileName, ec)) {
    const auto latest = checkpoint::read_latest(path);
    if (!latest)
      throw UsageError(path + " holds no checkpoint (no " + checkpoint::kMetaFileName + ", no " +
                       checkpoint::kLatestFileName + "): pass --ckpt-dir of a run that saved one");
    m.step_dir = (fs::path(path) / checkpoint::step_dir_name(*latest)).string();
  }
  const checkpoint::CheckpointMeta meta =
      checkpoint::read_meta((fs::path(m.step_dir) / checkpoint::kMetaFileName).string());
  m.step = meta.step;
  m.config = parse_config_text(meta.config);
  m.config.model.vocab_size = static_cast<int>(meta.vocab_size);
  m.config.model.seq_len = static_cast<int>(meta.seq_len);
  m.config.model.d_model = static_cast<int>(meta.d_model);
  m.config.model.n_layer = static_cast<int>(meta.n_layer);
  m.config.model.n_head = static_cast<int>(meta.n_head);
  m.tensors = meta.tensors;
  m.params.assign(static_cast<size_t>(meta.param_count), 0.0f);
  for (const checkpoint::RankFileRecord& f : meta.files)
    checkpoint::read_rank_file((fs::path(m.step_dir) / f.name).string(), f,
                               {m.params.data(), nullptr, nullptr});
  return m;
}

void check_layout_matches(const ModelConfig& cfg, const CheckpointModel& m) {
  const ParamLayout layout(cfg);
  const auto& want = layout.tensors();
  bool same = want.size() == m.tensors.size() && layout.total() == m.params.size();
  for (size_t i = 0; same && i < want.size(); ++i)
    same = want[i].name == m.tensors[i].name && want[i].shape == m.tensors[i].shape &&
           want[i].offset == m.tensors[i].offset;
  if (!same)
    throw UsageError(m.step_dir + " holds the tensors of another model than " + cfg.describe() +
                     " (" + std::to_string(m.tensors.size()) + " tensors, " +
                     std::to_string(m.params.size()) +
                     " parameters): pass the data it was trained on, with the same --patch");
}

}  // namespace dpt::trainer
