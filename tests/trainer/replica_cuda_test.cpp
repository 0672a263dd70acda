// gpu + mpi: training on the CUDA replica (GptCuda, fused AdamW, NCCL) against the CPU path on
// the same data and configuration: 20 steps whose losses track the CPU run's (fp32 closely,
// bf16 loosely), bit-identical GPU reruns, accumulation over micro-batches matching one
// whole micro-batch, and [ZeRO] stage 1 matching stage 0 (bit for bit on one rank). Runs under
// mpiexec with one rank per GPU; skipped (77) without a GPU.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "common/errors.h"
#include "tests/test_shards.h"
#include "trainer/training.h"

namespace dpt::trainer {
namespace {

TrainConfig base_config() {
  TrainConfig c;
  c.data = "markov shards";
  c.model.vocab_size = 256;
  c.model.seq_len = 32;
  c.model.d_model = 48;
  c.model.n_layer = 2;
  c.model.n_head = 4;
  c.steps = 20;
  c.global_batch = 8;
  c.micro_batch = 8;
  c.opt.lr = 3e-3;
  c.opt.warmup_steps = 3;
  c.opt.total_steps = c.steps;
  c.opt.grad_clip = 1.0;
  c.seed = 77;
  c.check_sync_every = 5;
  return c;
}

class CudaTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_shard(dir_.file("a.h5"), testing::markov_tokens(20000, 5));
    testing::write_shard(dir_.file("b.h5"), testing::markov_tokens(15000, 6));
    dataset_ = testing::open_dataset(io_, dir_.path(), 32, 256);
  }
  TrainResult run(const TrainConfig& c, int gpu, Precision precision,
                  ZeroStage zero = ZeroStage::off) {
    TrainControl ctl;
    ctl.gpu = gpu;
    ctl.precision = precision;
    ctl.zero = zero;
    return trainer::train(c, world_, TrainData{*dataset_}, {}, ctl);
  }
  int my_gpu() const { return 0; }  // one rank per GPU; the test main checked there is one

  comm::MpiCommunicator world_{MPI_COMM_WORLD};
  testing::TempDir dir_{"dpt-cuda-training"};
  storage::IoThread io_;
  std::unique_ptr<datasets::TokenDataset> dataset_;
};

void expect_losses_track(const TrainResult& got, const TrainResult& want, double rel,
                         const char* what) {
  ASSERT_EQ(got.steps.size(), want.steps.size());
  for (size_t i = 0; i < got.steps.size(); ++i) {
    const double x = got.steps[i].loss, y = want.steps[i].loss;
    ASSERT_TRUE(std::isfinite(x)) << what << ": step " << i + 1;
    EXPECT_LE(std::abs(x - y), rel * std::abs(y))
        << what << ": step " << i + 1 << " loss " << x << " vs CPU " << y;
  }
}

TEST_F(CudaTraining, Fp32TwentyStepsTrackTheCpuRun) {
  const TrainConfig c = base_config();
  const TrainResult cpu = run(c, -1, Precision::fp32);
  const TrainResult gpu = run(c, my_gpu(), Precision::fp32);
  // Same arithmetic up to summation order in fp32, over 20 AdamW steps.
  expect_losses_track(gpu, cpu, 1e-4, "fp32");
  for (size_t i = 0; i < gpu.steps.size(); ++i)
    EXPECT_NEAR(gpu.steps[i].grad_norm, cpu.steps[i].grad_norm, 1e-3 * cpu.steps[i].grad_norm)
        << "step " << i + 1;
  EXPECT_LT(gpu.steps.back().loss, gpu.steps.front().loss - 0.5) << "the model should learn";
}

TEST_F(CudaTraining, Bf16TwentyStepsTrackTheCpuRun) {
  const TrainConfig c = base_config();
  const TrainResult cpu = run(c, -1, Precision::fp32);
  const TrainResult gpu = run(c, my_gpu(), Precision::bf16);
  expect_losses_track(gpu, cpu, 3e-2, "bf16");
  EXPECT_LT(gpu.steps.back().loss, gpu.steps.front().loss - 0.5) << "the model should learn";
}

TEST_F(CudaTraining, RerunGivesBitIdenticalLossesAndParameters) {
  const TrainConfig c = base_config();
  for (const Precision precision : {Precision::fp32, Precision::bf16}) {
    const char* dtype = precision_name(precision);
    const TrainResult a = run(c, my_gpu(), precision);
    const TrainResult b = run(c, my_gpu(), precision);
    for (size_t i = 0; i < a.steps.size(); ++i)
      EXPECT_EQ(a.steps[i].loss, b.steps[i].loss) << dtype << " step " << i + 1;
    EXPECT_EQ(a.final_param_hash, b.final_param_hash) << dtype;
  }
}

TEST_F(CudaTraining, AccumulatingMicroBatchesMatchesOneWholeBatch) {
  TrainConfig whole = base_config();
  TrainConfig accum = base_config();
  accum.micro_batch = 2;  // 4 micro-batches of 2 per step
  ASSERT_EQ(accum.accum_steps(world_.world_size()), 4 / world_.world_size());
  if (whole.global_batch % (world_.world_size() * whole.micro_batch) != 0)
    whole.micro_batch = static_cast<int>(whole.global_batch / world_.world_size());
  const TrainResult w = run(whole, my_gpu(), Precision::fp32);
  const TrainResult a = run(accum, my_gpu(), Precision::fp32);
  expect_losses_track(a, w, 1e-5, "accumulation");
}

TEST_F(CudaTraining, ZeroStage1MatchesStage0) {
  const TrainConfig c = base_config();
  for (const Precision precision : {Precision::fp32, Precision::bf16}) {
    const char* dtype = precision_name(precision);
    const TrainResult off = run(c, my_gpu(), precision, ZeroStage::off);
    const TrainResult sharded = run(c, my_gpu(), precision, ZeroStage::optimizer);
    ASSERT_EQ(sharded.steps.size(), off.steps.size());
    for (size_t i = 0; i < off.steps.size(); ++i) {
      const double x = sharded.steps[i].loss, y = off.steps[i].loss;
      // One rank owns everything: the same kernels on the same data, so the same bits. More
      // ranks sum the loss instead of averaging it, and the norm's partials in another order.
      if (world_.world_size() == 1) {
        EXPECT_EQ(x, y) << dtype << " step " << i + 1;
      } else {
        EXPECT_LE(std::abs(x - y), 1e-6 * std::abs(y)) << dtype << " step " << i + 1;
      }
    }
    if (world_.world_size() == 1) {
      EXPECT_EQ(sharded.final_param_hash, off.final_param_hash);
    }
  }
}

TEST_F(CudaTraining, ZeroStage2IsRefusedOnTheGpuNamingWhatToPass) {
  try {
    run(base_config(), my_gpu(), Precision::bf16, ZeroStage::gradients);
    FAIL() << "--zero 2 on the GPU should be refused";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--zero 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dpt::trainer
