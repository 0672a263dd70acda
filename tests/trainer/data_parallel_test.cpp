// The core claim of the system: data-parallel training gives the same per-step losses as one
// process on the same global batch. Runs under mpiexec with 2 ranks; the one-rank references
// train on MPI_COMM_SELF inside the same job. Data comes from real HDF5 shards through the
// prefetching reader, in two shards so that samples come from both.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <vector>

#include "comm/mpi_communicator.h"
#include "tests/test_shards.h"
#include "trainer/training.h"

namespace dpt::trainer {
namespace {

TrainConfig base_config() {
  TrainConfig c;
  c.data = "markov shards";
  c.model.vocab_size = 256;
  c.model.seq_len = 16;
  c.model.d_model = 32;
  c.model.n_layer = 2;
  c.model.n_head = 4;
  c.steps = 10;
  c.global_batch = 8;
  c.opt.lr = 3e-3;
  c.opt.warmup_steps = 2;
  c.opt.total_steps = c.steps;
  c.opt.grad_clip = 1.0;
  c.seed = 2024;
  c.check_sync_every = 1;
  return c;
}

void expect_same_losses(const TrainResult& a, const TrainResult& b, const char* what) {
  ASSERT_EQ(a.steps.size(), b.steps.size());
  for (size_t i = 0; i < a.steps.size(); ++i) {
    const double x = a.steps[i].loss, y = b.steps[i].loss;
    EXPECT_LE(std::abs(x - y), 1e-5 * std::abs(y))
        << what << ": step " << i + 1 << " loss " << x << " vs " << y;
    EXPECT_LE(std::abs(a.steps[i].grad_norm - b.steps[i].grad_norm),
              1e-4 * std::abs(b.steps[i].grad_norm))
        << what << ": step " << i + 1 << " grad_norm";
  }
}

class DataParallel : public ::testing::Test {
 protected:
  void SetUp() override {
    // Each rank writes its own copy, as two nodes with local disks would hold.
    testing::write_shard(dir_.file("a.h5"), testing::markov_tokens(9000, 5));
    testing::write_shard(dir_.file("b.h5"), testing::markov_tokens(11000, 6));
    dataset_ = testing::open_dataset(io_, dir_.path(), 16, 256);
  }
  TrainResult train(const TrainConfig& c, comm::Communicator& comm) {
    return trainer::train(c, comm, TrainData{*dataset_});
  }
  testing::TempDir dir_{"dpt-data-parallel"};
  storage::IoThread io_;
  std::unique_ptr<datasets::TokenDataset> dataset_;
};

TEST_F(DataParallel, TwoRanksMatchOneRankOnSameGlobalBatch) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  ASSERT_EQ(world.world_size(), 2) << "run this test with 2 ranks";
  comm::MpiCommunicator self(MPI_COMM_SELF);

  TrainConfig two = base_config();
  two.micro_batch = 4;  // 2 ranks x 4 = 8, no accumulation
  TrainConfig one = base_config();
  one.micro_batch = 8;  // 1 rank x 8
  const TrainResult r2 = train(two, world);
  const TrainResult r1 = train(one, self);
  expect_same_losses(r2, r1, "2 ranks x b vs 1 rank x 2b");
  EXPECT_LT(r1.steps.back().loss, r1.steps.front().loss) << "the model should learn";
}

TEST_F(DataParallel, OneRankAccumulatingMicroBatchesMatchesTwoRanks) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  comm::MpiCommunicator self(MPI_COMM_SELF);
  TrainConfig two = base_config();
  two.micro_batch = 4;
  TrainConfig accum = base_config();
  accum.micro_batch = 4;  // 1 rank, 2 micro-batches of 4
  ASSERT_EQ(accum.accum_steps(1), 2);
  const TrainResult r2 = train(two, world);
  const TrainResult ra = train(accum, self);
  expect_same_losses(r2, ra, "2 ranks x b vs 1 rank accumulating 2 x b");
}

TEST_F(DataParallel, TwoRanksAccumulatingMatchOneRankWholeBatch) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  comm::MpiCommunicator self(MPI_COMM_SELF);
  TrainConfig two = base_config();
  two.micro_batch = 2;  // 2 ranks x 2 micro-batches of 2
  ASSERT_EQ(two.accum_steps(2), 2);
  TrainConfig one = base_config();
  one.micro_batch = 8;
  const TrainResult r2 = train(two, world);
  const TrainResult r1 = train(one, self);
  expect_same_losses(r2, r1, "2 ranks accumulating vs 1 rank x B");
  // Parameters after 10 steps agree too, not only losses.
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < r1.final_params.size(); ++i) {
    max_diff =
        std::max(max_diff, static_cast<double>(std::abs(r2.final_params[i] - r1.final_params[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::abs(r1.final_params[i])));
  }
  EXPECT_LT(max_diff, 1e-4 * max_abs);
}

TEST_F(DataParallel, SameConfigTwiceGivesBitIdenticalLosses) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  TrainConfig c = base_config();
  c.micro_batch = 2;
  const TrainResult a = train(c, world);
  const TrainResult b = train(c, world);
  for (size_t i = 0; i < a.steps.size(); ++i)
    EXPECT_EQ(a.steps[i].loss, b.steps[i].loss);
  EXPECT_EQ(a.final_param_hash, b.final_param_hash);
}

}  // namespace
}  // namespace dpt::trainer
