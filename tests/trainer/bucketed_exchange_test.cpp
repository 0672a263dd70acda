// [Gradient buckets] under mpiexec (registered at 1, 2 and 4 ranks): the plan is the same on
// every rank, buckets start during backward, and bucketed training gives the same parameters
// as one flat exchange after backward, bit for bit.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <span>
#include <vector>

#include "comm/mpi_communicator.h"
#include "comm/typed_collectives.h"
#include "common/hash.h"
#include "common/rng.h"
#include "tests/test_shards.h"
#include "trainer/gpt.h"
#include "trainer/gradient_exchange.h"
#include "trainer/training.h"

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

TEST(BucketedExchange, BucketPlanIsIdenticalOnEveryRank) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  const ParamLayout layout(small_model());
  for (size_t bytes : {size_t{0}, size_t{1000}, size_t{4096}, size_t{25} << 20}) {
    const auto plan = plan_gradient_buckets(layout.total(), sizeof(float), bytes);
    std::vector<uint64_t> words;
    for (const GradientBucket& b : plan) {
      words.push_back(b.offset);
      words.push_back(b.count);
    }
    const uint64_t h = fnv1a64(words.data(), words.size() * sizeof(uint64_t));
    const std::vector<uint64_t> all = comm::all_gather_value(world, h);
    for (int r = 0; r < world.world_size(); ++r)
      EXPECT_EQ(all[r], all[0]) << "rank " << r << " plans buckets of " << bytes
                                << " bytes differently";
  }
}

// One backward with the exchange: buckets start at the block boundaries (not only in
// finish()), and the averaged gradient equals a flat all-reduce of the same gradient bit for
// bit. Each rank's micro-batch differs (tokens from rank and seed).
TEST(BucketedExchange, BucketsStartDuringBackwardAndAverageAsOneFlatAllReduce) {
  comm::MpiCommunicator world(MPI_COMM_WORLD);
  const ModelConfig cfg = small_model();
  Gpt<float> model(cfg, 2);
  model.init_params(5);
  std::vector<int32_t> in(2 * cfg.seq_len), tgt(2 * cfg.seq_len);
  for (size_t i = 0; i < in.size(); ++i) {
    in[i] = static_cast<int32_t>(random_u64(77, world.rank(), i) % cfg.vocab_size);
    tgt[i] = static_cast<int32_t>(random_u64(78, world.rank(), i) % cfg.vocab_size);
  }
  // Reference: the same backward, then one flat average.
  model.zero_grads();
  model.forward(in.data(), tgt.data(), 2);
  model.backward(1.0);
  std::vector<float> flat(model.grads().begin(), model.grads().end());
  world.all_reduce(std::span<float>(flat), comm::ReduceOp::avg);

  // 2 KB buckets: several per block.
  GradientExchange exchange(plan_gradient_buckets(model.grads().size(), sizeof(float), 2048));
  model.zero_grads();
  model.forward(in.data(), tgt.data(), 2);
  exchange.begin(world, model.grads());
  model.backward(1.0, [&](size_t frontier) { exchange.ready_from(frontier); });
  size_t final_in_backward = 0;  // buckets entirely at or above block 0's first tensor
  const size_t block0 = model.layout().get("blocks.0.ln1.weight").offset;
  for (const GradientBucket& b : exchange.plan())
    final_in_backward += b.offset >= block0;
  EXPECT_EQ(exchange.started_in_backward(), final_in_backward);
  EXPECT_GT(exchange.started_in_backward(), 3u);
  EXPECT_LT(exchange.started_in_backward(), exchange.plan().size()) << "the embedding waits";
  exchange.finish();
  EXPECT_EQ(std::memcmp(flat.data(), model.grads().data(), flat.size() * sizeof(float)), 0)
      << "bucketed average differs from the flat one";
}

class BucketedTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::write_shard(dir_.file("a.h5"), testing::markov_tokens(9000, 5));
    testing::write_shard(dir_.file("b.h5"), testing::markov_tokens(11000, 6));
    dataset_ = testing::open_dataset(io_, dir_.path(), 16, 256);
  }
  TrainResult train_with_buckets(double bucket_mb) {
    comm::MpiCommunicator world(MPI_COMM_WORLD);
    TrainConfig c;
    c.data = "markov shards";
    c.model = small_model();
    c.steps = 6;
    c.global_batch = 8;
    c.micro_batch = 2;  // 4, 2 or 1 micro-batches per rank on 1, 2 or 4 ranks
    c.opt.lr = 3e-3;
    c.opt.warmup_steps = 2;
    c.opt.total_steps = c.steps;
    c.seed = 99;
    c.bucket_mb = bucket_mb;
    return train(c, world, TrainData{*dataset_});
  }
  testing::TempDir dir_{"dpt-bucketed"};
  storage::IoThread io_;
  std::unique_ptr<datasets::TokenDataset> dataset_;
};

TEST_F(BucketedTraining, BucketedAndFlatExchangeGiveTheSameParametersBitForBit) {
  const TrainResult flat = train_with_buckets(0);
  // 0.002 MiB = 524 floats: dozens of buckets, splitting tensors; 25: one bucket here.
  for (double mb : {0.002, 0.05, 25.0}) {
    const TrainResult bucketed = train_with_buckets(mb);
    EXPECT_EQ(bucketed.final_param_hash, flat.final_param_hash) << "--bucket-mb " << mb;
    ASSERT_EQ(bucketed.steps.size(), flat.steps.size());
    for (size_t i = 0; i < flat.steps.size(); ++i) {
      EXPECT_EQ(bucketed.steps[i].loss, flat.steps[i].loss) << "step " << i + 1 << ", " << mb;
      EXPECT_EQ(bucketed.steps[i].grad_norm, flat.steps[i].grad_norm) << "step " << i + 1;
    }
  }
  EXPECT_LT(flat.steps.back().loss, flat.steps.front().loss) << "the model should learn";
}

}  // namespace
}  // namespace dpt::trainer
