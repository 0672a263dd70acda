// [GPU mapping] as a pure function (job/gpu_placement.h): each rank's device from its node's
// visible GPUs, its local rank and CUDA_VISIBLE_DEVICES, for jobs whose nodes differ.
#include "job/gpu_placement.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace dpt::job {
namespace {

// What one node of a job looks like to each of its ranks.
struct Node {
  std::string name;
  int ranks;                       // tasks on the node (--ntasks-per-node)
  int visible;                     // CUDA devices each task sees
  std::optional<std::string> cvd;  // CUDA_VISIBLE_DEVICES of each task
};

// Every rank's pick, node by node, local ranks in order (as MPI's split and SLURM_LOCALID give).
std::vector<std::vector<LocalGpuPick>> place(const std::vector<Node>& nodes) {
  std::vector<std::vector<LocalGpuPick>> out;
  for (const Node& n : nodes) {
    out.emplace_back();
    for (int lr = 0; lr < n.ranks; ++lr)
      out.back().push_back(pick_local_gpu(lr, n.ranks, n.visible, n.cvd));
  }
  return out;
}

TEST(GpuPlacement, NodesWithDifferentGpuCountsGiveEachLocalRankItsOwnDevice) {
  // --gres=gpu:N: every task of a node sees all N of its GPUs. Node a has 8 GPUs and 8 tasks,
  // b 4 and 4, c 8 GPUs but 3 tasks (a smaller last node of an allocation).
  const std::vector<Node> nodes = {
      {"a", 8, 8, "0,1,2,3,4,5,6,7"}, {"b", 4, 4, "0,1,2,3"}, {"c", 3, 8, std::nullopt}};
  const auto picks = place(nodes);
  for (size_t n = 0; n < nodes.size(); ++n) {
    std::set<int> taken;
    for (int lr = 0; lr < nodes[n].ranks; ++lr) {
      const LocalGpuPick& p = picks[n][lr];
      EXPECT_EQ(p.gpu, lr) << nodes[n].name << " local rank " << lr;
      EXPECT_EQ(p.problem, "");
      taken.insert(p.gpu);
    }
    EXPECT_EQ(static_cast<int>(taken.size()), nodes[n].ranks) << "two ranks of one node share";
  }
}

TEST(GpuPlacement, OneGpuPerTaskFromSlurmIsDeviceZeroOfEachTask) {
  // --gpus-per-task=1: Slurm sets each task's CUDA_VISIBLE_DEVICES to its own GPU, so each sees
  // one device, ordinal 0, whatever its local rank and whichever physical GPU it is.
  for (const char* cvd : {"0", "3", "GPU-8c1f5d2e-aaaa-bbbb-cccc-0123456789ab", "MIG-1/2/0"}) {
    for (int lr = 0; lr < 4; ++lr) {
      const LocalGpuPick p = pick_local_gpu(lr, 4, 1, std::string(cvd));
      EXPECT_EQ(p.gpu, 0) << cvd << " local rank " << lr;
      EXPECT_EQ(p.problem, "");
    }
  }
}

TEST(GpuPlacement, MoreLocalRanksThanGpusIsAnErrorSayingWhatToChange) {
  // 4 tasks on a node that gave them 2 GPUs each (--gres=gpu:2).
  for (int lr = 0; lr < 4; ++lr) {
    const LocalGpuPick p = pick_local_gpu(lr, 4, 2, std::string("0,1"));
    EXPECT_EQ(p.gpu, -1) << "local rank " << lr;
    for (const char* part :
         {"sees 2 GPUs (CUDA_VISIBLE_DEVICES=0,1)", "fewer than the 4 ranks on its node",
          "--gpus-per-task=1", "--gres=gpu:4", "at most 2 ranks"})
      EXPECT_NE(p.problem.find(part), std::string::npos) << p.problem << "\nlacks: " << part;
    EXPECT_NE(p.problem.find("local rank " + std::to_string(lr)), std::string::npos);
  }
  // Unset CUDA_VISIBLE_DEVICES is said as such.
  EXPECT_NE(pick_local_gpu(2, 3, 2, std::nullopt).problem.find("CUDA_VISIBLE_DEVICES unset"),
            std::string::npos);
}

TEST(GpuPlacement, AListNamingDevicesTheRuntimeDoesNotSeeIsAnError) {
  // The runtime stops at the first entry that is no device here: "0,1,7" on a 2-GPU node
  // leaves 2 visible. Even when 2 would be enough for the node's ranks, the list is wrong.
  const LocalGpuPick p = pick_local_gpu(0, 2, 2, std::string("0,1,7"));
  EXPECT_EQ(p.gpu, -1);
  for (const char* part : {"CUDA_VISIBLE_DEVICES=0,1,7 names 3 devices", "sees only 2",
                           "entry 3 ('7') is not a device of this node"})
    EXPECT_NE(p.problem.find(part), std::string::npos) << p.problem << "\nlacks: " << part;
  // An empty entry ends the list the same way.
  EXPECT_NE(pick_local_gpu(0, 1, 1, std::string("0,,1")).problem.find("entry 2 ('')"),
            std::string::npos);
  // One trailing comma ends the list without naming a device.
  EXPECT_EQ(pick_local_gpu(1, 2, 2, std::string("0,1,")).gpu, 1);
  // A list of exactly what the runtime sees is fine.
  EXPECT_EQ(pick_local_gpu(1, 2, 2, std::string("4,5")).gpu, 1);
}

TEST(GpuPlacement, NoVisibleGpuIsNoPickAndNoProblemOfItsOwn) {
  // Whether that is an error depends on --device and on the other ranks (choose_device).
  const LocalGpuPick p = pick_local_gpu(0, 2, 0, std::string(""));
  EXPECT_EQ(p.gpu, -1);
  EXPECT_EQ(p.problem, "");
}

TEST(GpuPlacement, AnImpossiblePlacementIsReportedNotPicked) {
  for (auto [lr, ls, vis] :
       std::vector<std::tuple<int, int, int>>{{2, 2, 4}, {-1, 2, 4}, {0, 0, 4}, {0, 1, -1}}) {
    const LocalGpuPick p = pick_local_gpu(lr, ls, vis, std::nullopt);
    EXPECT_EQ(p.gpu, -1) << lr << " " << ls << " " << vis;
    EXPECT_NE(p.problem.find("is not a placement"), std::string::npos) << p.problem;
  }
}

}  // namespace
}  // namespace dpt::job
