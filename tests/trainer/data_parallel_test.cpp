// The core claim of the system: data-parallel training gives the same per-step losses as one
// process on the same global batch. Runs under mpiexec with 2 ranks; the one-rank references
// train on MPI_COMM_SELF inside the same job.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <vector>

#include "comm/mpi_communicator.h"
#include "common/rng.h"
#include "datasets/byte_file.h"
#include "trainer/training.h"

namespace dpt::trainer {
namespace {

// Text-like bytes with learnable structure: a fixed random first-order Markov chain over 40
// symbols, so the loss falls and gradients are not trivial.
datasets::ByteFile markov_text(size_t n, uint64_t seed) {
  std::vector<uint8_t> out(n);
  uint8_t prev = 0;
  uint64_t counter = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t r = random_below(seed, prev, &counter, 4);
    prev = static_cast<uint8_t>((prev * 7 + r * 3 + 1) % 40);
    out[i] = static_cast<uint8_t>('0' + prev);
  }
  return datasets::ByteFile(std::move(out), "markov");
}

TrainConfig base_config() {
  TrainConfig c;
  c.data = "markov";
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
  datasets::ByteFile data_ = markov_text(20000, 5);
};

TEST_F(DataParallel, TwoRanksMatchOneRankOnSameGlobalBatch) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  ASSERT_EQ(world.world_size(), 2) << "run this test with 2 ranks";
  comm::MpiCommunicator self(MPI_COMM_SELF);

  TrainConfig two = base_config();
  two.micro_batch = 4;  // 2 ranks x 4 = 8, no accumulation
  TrainConfig one = base_config();
  one.micro_batch = 8;  // 1 rank x 8
  const TrainResult r2 = train(two, world, data_);
  const TrainResult r1 = train(one, self, data_);
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
  const TrainResult r2 = train(two, world, data_);
  const TrainResult ra = train(accum, self, data_);
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
  const TrainResult r2 = train(two, world, data_);
  const TrainResult r1 = train(one, self, data_);
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
  const TrainResult a = train(c, world, data_);
  const TrainResult b = train(c, world, data_);
  for (size_t i = 0; i < a.steps.size(); ++i)
    EXPECT_EQ(a.steps[i].loss, b.steps[i].loss);
  EXPECT_EQ(a.final_param_hash, b.final_param_hash);
}

}  // namespace
}  // namespace dpt::trainer
