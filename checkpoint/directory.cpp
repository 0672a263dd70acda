// [Checkpoint publication]: listing, `latest`, the partial directory, publication and pruning.
#include "checkpoint/directory.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "checkpoint/format.h"
#include "common/errors.h"
#include "storage/durable.h"

namespace dpt::checkpoint {

using storage::fsync_directory;
using storage::temp_suffix;
using storage::write_file_atomic;

namespace fs = std::filesystem;

// ---- the checkpoint directory -----------------------------------------------------------------

std::vector<CheckpointEntry> list_checkpoints(const std::string& ckpt_dir) {
  std::vector<CheckpointEntry> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() < 13 || name.rfind("step_", 0) != 0) continue;
    const std::string digits = name.substr(5);
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 18) continue;
    if (!fs::is_regular_file(e.path() / kMetaFileName, ec)) continue;
    out.push_back({std::stoll(digits), e.path().string()});
  }
  std::sort(out.begin(), out.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.step < b.step; });
  return out;
}

std::optional<int64_t> read_latest(const std::string& ckpt_dir) {
  std::ifstream in(ckpt_dir + "/" + kLatestFileName);
  std::string name;
  if (!(in >> name) || name.rfind("step_", 0) != 0) return std::nullopt;
  const std::string digits = name.substr(5);
  if (digits.empty() || digits.size() > 18 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return std::stoll(digits);
}

std::string partial_dir_path(const std::string& ckpt_dir, int64_t step) {
  // temp_suffix() is ".tmp.<host>.<pid>"; keep host and pid.
  return ckpt_dir + "/.partial." + step_dir_name(step) + temp_suffix().substr(4);
}

std::string publish_checkpoint(const std::string& ckpt_dir, const std::string& partial,
                               int64_t step) {
  fsync_directory(partial);
  const std::string final_path = ckpt_dir + "/" + step_dir_name(step);
  std::error_code ec;
  std::string stale;
  if (fs::exists(final_path, ec)) {
    // A checkpoint of the same step from an earlier attempt: moved aside, then removed, so
    // that at every moment the directory holds one complete version or none.
    stale = ckpt_dir + "/.partial.replaced." + step_dir_name(step) + temp_suffix().substr(4);
    DPT_CHECK_POSIX(::rename(final_path.c_str(), stale.c_str()));
  }
  DPT_CHECK_POSIX(::rename(partial.c_str(), final_path.c_str()));
  fsync_directory(ckpt_dir);
  std::string why;
  if (!write_file_atomic(ckpt_dir + "/" + kLatestFileName, step_dir_name(step) + "\n", &why))
    throw RuntimeFailure("updating " + ckpt_dir + "/latest: " + why);
  if (!stale.empty()) fs::remove_all(stale, ec);
  return final_path;
}

std::vector<std::string> prune_checkpoints(const std::string& ckpt_dir, int keep) {
  std::vector<std::string> removed;
  if (keep <= 0) return removed;
  const auto all = list_checkpoints(ckpt_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    std::error_code ec;
    fs::remove_all(all[i].path, ec);
    if (!ec) removed.push_back(all[i].path);
  }
  return removed;
}

std::vector<std::string> remove_partials(const std::string& ckpt_dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  std::vector<fs::path> victims;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec))
    if (e.path().filename().string().rfind(".partial.", 0) == 0) victims.push_back(e.path());
  for (const auto& p : victims) {
    fs::remove_all(p, ec);
    if (!ec) removed.push_back(p.string());
  }
  return removed;
}

}  // namespace dpt::checkpoint
