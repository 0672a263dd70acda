// [ZeRO] under mpiexec (registered at 1, 2, 3 and 4 ranks): the owners' reduce-scatter holds
// the all-reduced gradient of their ranges bit for bit, the sharded norm and clipping equal the
// unsharded ones, and stages 1 and 2 train with the losses of stage 0.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "comm/mpi_communicator.h"
#include "common/rng.h"
#include "tests/test_shards.h"
#include "trainer/gpt.h"
#include "trainer/gradient_exchange.h"
#include "trainer/replica.h"
#include "trainer/training.h"
#include "trainer/zero.h"

namespace dpt::trainer {
namespace {

ModelConfig small_model() {
  ModelConfig m;
  m.vocab_size = 256;
  m.seq_len = 16;
  m.d_model = 32;
  m.n_layer = 3;
  m.n_head = 4;
  return m;
}

// Tokens that differ by rank and seed.
void rank_batch(const ModelConfig& cfg, int rank, uint64_t seed, int batch,
                std::vector<int32_t>& in, std::vector<int32_t>& tgt) {
  in.resize(static_cast<size_t>(batch) * cfg.seq_len);
  tgt.resize(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    in[i] = static_cast<int32_t>(random_u64(seed, rank, i) % cfg.vocab_size);
    tgt[i] = static_cast<int32_t>(random_u64(seed + 1, rank, i) % cfg.vocab_size);
  }
}

// Buckets of every size reduce-scattered to the owners during backward leave each rank the
// all-reduced gradient of its owned range, bit for bit ([Rank-order sum]).
TEST(ZeroExchange, OwnersReceiveTheAllReducedGradientOfTheirRangeBitForBitBoundedOrNot) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  const ModelConfig cfg = small_model();
  Gpt<float> model(cfg, 2);
  model.init_params(5);
  std::vector<int32_t> in, tgt;
  rank_batch(cfg, world.rank(), 77, 2, in, tgt);
  model.zero_grads();
  model.forward(in.data(), tgt.data(), 2);
  model.backward(1.0);
  std::vector<float> reduced(model.grads().begin(), model.grads().end());
  world.all_reduce(std::span<float>(reduced), comm::ReduceOp::avg);
  const OwnedRange own = owned_range(reduced.size(), world.world_size(), world.rank());
  for (size_t bucket_bytes : {size_t{0}, size_t{2048}, size_t{25} << 20})
    for (bool bounded : {false, true}) {
      GradientExchange exchange(plan_gradient_buckets(reduced.size(), sizeof(float), bucket_bytes),
                                world.world_size(), world.rank());
      exchange.bound_in_flight(bounded);
      size_t reported = 0;
      exchange.on_reduced([&](size_t k) { EXPECT_EQ(k, reported++) << "plan order"; });
      model.zero_grads();
      model.forward(in.data(), tgt.data(), 2);
      exchange.begin(world, model.grads());
      size_t started_before = 0;  // buckets whose offset is at or above the previous frontier
      model.backward(1.0, [&](size_t frontier) {
        exchange.ready_from(frontier);
        // Bounded (stage 2): every bucket started at an earlier frontier is reduced by now.
        if (bounded) {
          EXPECT_GE(reported, started_before) << "frontier " << frontier;
        }
        started_before = buckets_ready(exchange.plan(), 0, frontier);
      });
      exchange.finish();
      EXPECT_EQ(reported, exchange.plan().size());
      EXPECT_EQ(std::memcmp(reduced.data() + own.lo, model.grads().data() + own.lo,
                            own.count() * sizeof(float)),
                0)
          << "owned range [" << own.lo << ", " << own.hi << ") with buckets of " << bucket_bytes
          << " bytes" << (bounded ? ", bounded" : "");
    }
}

TrainConfig replica_config() {
  TrainConfig c;
  c.model = small_model();
  c.steps = 4;
  c.micro_batch = 2;
  c.global_batch = 2;
  c.opt.lr = 1e-2;
  c.opt.grad_clip = 0.05;  // below the first steps' norms: clipping acts
  c.bucket_mb = 0.002;
  return c;
}

// One step of each stage from the same parameters and batch: the global norm from the ranks'
// partial squares equals the norm of the whole averaged gradient, clipping acts the same, and
// the updated parameters agree.
TEST(ZeroNorm, ShardedNormAndClippingEqualTheUnshardedOnes) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  const TrainConfig cfg = replica_config();
  std::vector<float> init(ParamLayout(cfg.model).total());
  init_gpt_params<float>(ParamLayout(cfg.model), cfg.model.n_layer, 3, init);
  std::vector<int32_t> in, tgt;
  rank_batch(cfg.model, world.rank(), 11, 2, in, tgt);
  std::vector<ReplicaStep> steps;
  std::vector<std::vector<float>> params;
  for (ZeroStage z : {ZeroStage::off, ZeroStage::optimizer, ZeroStage::gradients}) {
    auto replica = make_cpu_replica(cfg, 2, world, z);
    replica->set_state(init, {}, {});
    replica->zero_grads();
    replica->forward_backward(datasets::Batch{2, in.data(), nullptr, nullptr, tgt.data(), nullptr},
                              1.0, true);
    replica->reduce();
    steps.push_back(replica->update(1));
    const std::span<const float> p = replica->host_params();
    params.emplace_back(p.begin(), p.end());
  }
  ASSERT_LT(steps[0].stats.clip, 1.0) << "the test needs clipping to act";
  for (size_t z = 1; z < steps.size(); ++z) {
    EXPECT_EQ(steps[z].loss, steps[0].loss) << "stage " << z;
    EXPECT_NEAR(steps[z].stats.grad_norm, steps[0].stats.grad_norm,
                1e-12 * steps[0].stats.grad_norm)
        << "stage " << z;
    EXPECT_NEAR(steps[z].stats.clip, steps[0].stats.clip, 1e-12) << "stage " << z;
    double worst = 0;
    for (size_t i = 0; i < init.size(); ++i)
      worst = std::max(worst, std::abs(double(params[z][i]) - params[0][i]) /
                                  std::max(1e-3, std::abs(double(params[0][i]))));
    EXPECT_LE(worst, 1e-6) << "stage " << z << ": parameters after the update";
  }
}

class ZeroTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_shard(dir_.file("a.h5"), testing::markov_tokens(9000, 5));
    testing::write_shard(dir_.file("b.h5"), testing::markov_tokens(11000, 6));
    dataset_ = testing::open_dataset(io_, dir_.path(), 16, 256);
  }
  TrainResult run(ZeroStage zero, int micro_batch, double grad_clip) {
    comm::MpiCommunicator world(MPI_COMM_WORLD);
    TrainConfig c;
    c.data = "markov shards";
    c.model = small_model();
    c.model.n_layer = 2;
    c.steps = 50;
    c.global_batch = 12;  // 1, 2, 3 and 4 ranks divide it
    c.micro_batch = micro_batch;
    c.opt.lr = 3e-3;
    c.opt.warmup_steps = 5;
    c.opt.total_steps = c.steps;
    c.opt.grad_clip = grad_clip;
    c.seed = 7;
    c.bucket_mb = 0.01;  // buckets split tensors and straddle the owned ranges
    c.check_sync_every = 10;
    TrainControl control;
    control.zero = zero;
    return train(c, world, TrainData{*dataset_}, {}, control);
  }
  testing::TempDir dir_{"dpt-zero"};
  storage::IoThread io_;
  std::unique_ptr<datasets::TokenDataset> dataset_;
};

void expect_close_losses(const TrainResult& a, const TrainResult& b, const std::string& what) {
  ASSERT_EQ(a.steps.size(), b.steps.size());
  for (size_t i = 0; i < a.steps.size(); ++i)
    EXPECT_LE(std::abs(a.steps[i].loss - b.steps[i].loss), 1e-6 * std::abs(b.steps[i].loss))
        << what << ", step " << i + 1;
}

// 50 steps with clipping and with gradient accumulation (micro-batch 1: 12 / world_size
// micro-batches per rank): within 1e-6 relative.
TEST_F(ZeroTraining, StagesOneAndTwoGiveTheLossesOfStageZeroWithAccumulationAndClipping) {
  const TrainResult z0 = run(ZeroStage::off, 1, 1.0);
  const TrainResult z1 = run(ZeroStage::optimizer, 1, 1.0);
  const TrainResult z2 = run(ZeroStage::gradients, 1, 1.0);
  expect_close_losses(z1, z0, "stage 1");
  expect_close_losses(z2, z0, "stage 2 (reduce-scatter per micro-batch)");
  EXPECT_LT(z0.steps.back().loss, z0.steps.front().loss - 0.5) << "the model should learn";
}

// Where the summation order is the same, the same bits: without clipping (the norm's order
// cannot reach the parameters) stage 1 always, and stage 2 when each rank's batch is one
// micro-batch (the gradient is summed over ranks once, as in stage 0).
TEST_F(ZeroTraining, WhereTheSummationOrderIsTheSameTheParametersAreBitForBit) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  const int one_micro = 12 / world.world_size();
  const TrainResult z0 = run(ZeroStage::off, one_micro, 0.0);
  const TrainResult z1 = run(ZeroStage::optimizer, one_micro, 0.0);
  const TrainResult z2 = run(ZeroStage::gradients, one_micro, 0.0);
  EXPECT_EQ(z1.final_param_hash, z0.final_param_hash);
  EXPECT_EQ(z2.final_param_hash, z0.final_param_hash);
  for (size_t i = 0; i < z0.steps.size(); ++i) {
    EXPECT_EQ(z1.steps[i].loss, z0.steps[i].loss) << "step " << i + 1;
    EXPECT_EQ(z2.steps[i].loss, z0.steps[i].loss) << "step " << i + 1;
  }
}

}  // namespace
}  // namespace dpt::trainer
