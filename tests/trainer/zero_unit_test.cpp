// [ZeRO] pieces that need no ranks: owned ranges and the parts of buckets, AdamW over a range,
// the pages stage 2 gives back, and the [Memory plan] against the model's real allocations.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "checkpoint/format.h"
#include "common/errors.h"
#include "common/page_buffer.h"
#include "common/rng.h"
#include "trainer/gpt.h"
#include "trainer/memory_plan.h"
#include "trainer/optimizer.h"
#include "trainer/param_layout.h"
#include "trainer/zero.h"

namespace dpt::trainer {
namespace {

TEST(OwnedRanges, PartitionTheBufferInRankOrderBalancedToOneElementForAwkwardSizes) {
  // Primes, counts smaller than the world, a count that divides evenly, the empty buffer.
  for (size_t total : {size_t{0}, size_t{1}, size_t{2}, size_t{3}, size_t{7}, size_t{97},
                       size_t{1000}, size_t{104729}}) {
    for (int world : {1, 2, 3, 4, 5, 8, 13, 64}) {
      size_t next = 0, smallest = total, largest = 0;
      for (int r = 0; r < world; ++r) {
        const OwnedRange own = owned_range(total, world, r);
        EXPECT_EQ(own.lo, next) << total << " over " << world << ", rank " << r;
        EXPECT_LE(own.lo, own.hi);
        // The checkpoint's rank slice: a sharded rank saves exactly what it owns.
        EXPECT_EQ(own.lo, checkpoint::slice_begin(total, r, world));
        smallest = std::min(smallest, own.count());
        largest = std::max(largest, own.count());
        next = own.hi;
      }
      EXPECT_EQ(next, total) << total << " over " << world;
      EXPECT_LE(largest - smallest, 1u) << total << " over " << world;
      const std::vector<size_t> counts = owned_counts(total, world);
      EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), size_t{0}), total);
    }
  }
}

TEST(OwnedRanges, EachBucketSplitsAmongTheOwnersOfItsElements) {
  const size_t total = 1009;  // prime
  for (int world : {1, 2, 3, 4, 7}) {
    for (size_t offset : {size_t{0}, size_t{5}, size_t{333}, size_t{1000}}) {
      for (size_t count : {size_t{1}, size_t{9}, size_t{400}}) {
        if (offset + count > total) continue;
        const std::vector<size_t> parts = owner_counts(offset, count, total, world);
        size_t at = offset;
        for (int r = 0; r < world; ++r) {
          const OwnedRange own = owned_range(total, world, r);
          const size_t part = parts[static_cast<size_t>(r)];
          if (part > 0) {
            // The part starts at the rank's first owned element of the bucket, and runs on.
            EXPECT_EQ(at, std::max(offset, own.lo));
            EXPECT_LE(at + part, own.hi);
          }
          at += part;
        }
        EXPECT_EQ(at, offset + count) << "parts cover the bucket";
      }
    }
  }
}

ModelConfig tiny_model() {
  ModelConfig m;
  m.vocab_size = 29;
  m.seq_len = 7;
  m.d_model = 12;
  m.n_layer = 2;
  m.n_head = 3;
  return m;
}

std::vector<float> random_floats(size_t n, uint64_t seed, double scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(scale * (2.0 * random_unit(seed, 0, i) - 1.0));
  return v;
}

// Ranges cut at awkward places (inside tensors, one element, empty) update exactly as the whole
// buffer does: the same elements of parameters and moments, bit for bit, over several steps.
TEST(ShardedAdamW, RangesUpdateBitForBitAsTheWholeBuffer) {
  const ParamLayout layout(tiny_model());
  const size_t n = layout.total();
  OptimizerConfig cfg;
  cfg.lr = 1e-2;
  cfg.weight_decay = 0.1;
  cfg.total_steps = 10;
  const std::vector<size_t> cuts = {0, 1, 2, 13, 14, n / 3, n / 2 + 1, n - 1, n, n};
  std::vector<float> whole = random_floats(n, 1, 1.0);
  std::vector<float> pieces = whole;
  AdamW full(cfg, layout);
  std::vector<std::unique_ptr<AdamW>> parts;
  for (size_t i = 0; i + 1 < cuts.size(); ++i)
    parts.push_back(std::make_unique<AdamW>(cfg, layout, cuts[i], cuts[i + 1]));
  for (int64_t step = 1; step <= 3; ++step) {
    const std::vector<float> g = random_floats(n, 100 + step, 3.0);
    const StepStats s = full.step(whole, g, step);
    for (auto& p : parts) {
      const size_t lo = p->lo(), count = p->hi() - p->lo();
      const StepStats sp = p->step(std::span<float>(pieces).subspan(lo, count),
                                   std::span<const float>(g).subspan(lo, count), step, s.grad_norm);
      EXPECT_EQ(sp.clip, s.clip);
    }
  }
  EXPECT_EQ(std::memcmp(whole.data(), pieces.data(), n * sizeof(float)), 0);
  for (auto& p : parts) {
    const size_t lo = p->lo();
    for (size_t i = 0; i < p->m().size(); ++i) {
      ASSERT_EQ(p->m()[i], full.m()[lo + i]) << "m at " << lo + i;
      ASSERT_EQ(p->v()[i], full.v()[lo + i]) << "v at " << lo + i;
    }
  }
}

// With a zero gradient the update is the decay alone: a range that starts in the middle of a
// matrix and ends in the middle of a bias decays the matrix's elements and no others.
TEST(ShardedAdamW, WeightDecayReachesExactlyTheTensorsThatDecayWhenARangeStartsMidTensor) {
  const ParamLayout layout(tiny_model());
  const TensorView& qkv = layout.get("blocks.0.attn.qkv.weight");
  const TensorView& bias = layout.get("blocks.0.attn.qkv.bias");
  ASSERT_TRUE(decays(qkv));
  ASSERT_FALSE(decays(bias));
  const size_t lo = qkv.offset + qkv.numel() / 2 + 1, hi = bias.offset + bias.numel() / 2;
  OptimizerConfig cfg;
  cfg.lr = 0.5;
  cfg.weight_decay = 0.25;
  cfg.total_steps = 1;
  AdamW opt(cfg, layout, lo, hi);
  std::vector<float> p(hi - lo, 2.0f);
  const std::vector<float> g(hi - lo, 0.0f);
  const double lr = opt.step(p, g, 1, 0.0).lr;
  for (size_t i = lo; i < hi; ++i) {
    const bool in_matrix = i < qkv.offset + qkv.numel();
    const float expect = in_matrix ? static_cast<float>(2.0 - lr * 0.25 * 2.0) : 2.0f;
    ASSERT_EQ(p[i - lo], expect) << "element " << i << (in_matrix ? " (qkv weight)" : " (bias)");
  }
}

TEST(ShardedAdamW, ANonFiniteGlobalNormSkipsTheRangeUntouched) {
  const ParamLayout layout(tiny_model());
  AdamW opt(OptimizerConfig{}, layout, 10, 50);
  std::vector<float> p(40, 1.0f);
  const std::vector<float> g(40, 0.5f);
  const StepStats s = opt.step(p, g, 1, std::numeric_limits<double>::infinity());
  EXPECT_TRUE(s.skipped);
  for (float x : p)
    EXPECT_EQ(x, 1.0f);
}

TEST(PageBuffer, ReleasedPagesReadZeroAndPagesSharedWithNeighboursKeepTheirValues) {
  const size_t per_page = PageBuffer<float>::page_bytes() / sizeof(float);
  const size_t n = 5 * per_page + 7;  // a partial last page
  PageBuffer<float> buf(n);
  for (size_t i = 0; i < n; ++i)
    buf.data()[i] = static_cast<float>(i + 1);
  // From the middle of page 1 to the middle of page 3: only page 2 is whole.
  EXPECT_EQ(buf.release(per_page + 3, 2 * per_page), PageBuffer<float>::page_bytes());
  for (size_t i = 0; i < n; ++i) {
    const bool released = i >= 2 * per_page && i < 3 * per_page;
    ASSERT_EQ(buf.data()[i], released ? 0.0f : static_cast<float>(i + 1)) << "element " << i;
  }
  // A range reaching the end takes the partial last page with it.
  buf.release(4 * per_page, n - 4 * per_page);
  for (size_t i = 4 * per_page; i < n; ++i)
    ASSERT_EQ(buf.data()[i], 0.0f);
  EXPECT_EQ(buf.data()[4 * per_page - 1], static_cast<float>(4 * per_page));
  buf.data()[n - 1] = 3.0f;  // writable again after release
  EXPECT_EQ(buf.data()[n - 1], 3.0f);
}

// The plan's activations are what the CPU model allocates, for odd shapes.
TEST(MemoryPlan, ActivationsAreWhatTheModelAllocates) {
  for (int batch : {1, 3}) {
    ModelConfig m = tiny_model();
    for (int layers : {1, 3}) {
      for (AttentionImpl att : {AttentionImpl::unfused, AttentionImpl::fused}) {
        m.n_layer = layers;
        m.attention = att;
        Gpt<float> model(m, batch);
        EXPECT_EQ(cpu_activation_elements(m, batch, model.fused_attention()) * sizeof(float),
                  model.activation_bytes())
            << "batch " << batch << ", " << layers << " layer(s), " << attention_impl_name(att);
      }
    }
  }
}

// The state follows the ZeRO formulas (fp32, Psi parameters, N ranks): 16 Psi; 8 Psi + 8 Psi/N;
// 4 Psi + 12 Psi/N plus the gradient backward holds before reducing it.
TEST(MemoryPlan, StateFollowsTheZeroFormulas) {
  TrainConfig cfg;
  cfg.model.vocab_size = 512;
  cfg.model.seq_len = 64;
  cfg.model.d_model = 128;
  cfg.model.n_layer = 8;
  cfg.model.n_head = 4;
  cfg.bucket_mb = 0.25;
  const double psi = static_cast<double>(ParamLayout(cfg.model).total());
  for (int n : {1, 2, 4, 7}) {
    const MemoryPlan z0 = plan_memory(cfg, n, ZeroStage::off, false, Precision::fp32, false);
    const MemoryPlan z1 = plan_memory(cfg, n, ZeroStage::optimizer, false, Precision::fp32, false);
    const MemoryPlan z2 = plan_memory(cfg, n, ZeroStage::gradients, false, Precision::fp32, false);
    EXPECT_EQ(static_cast<double>(z0.state()), 16 * psi);
    EXPECT_NEAR(static_cast<double>(z1.state()), 8 * psi + 8 * psi / n, 8.0 * 2);
    const double window = static_cast<double>(z2.grads) - 4 * psi / n;
    EXPECT_NEAR(static_cast<double>(z2.params + z2.optimizer), 4 * psi + 8 * psi / n, 8.0 * 2);
    EXPECT_GT(window, 0.0);
    EXPECT_LT(window, 4 * psi) << "stage 2 holds less than a full gradient";
    // One rank holds its whole gradient twice over in stage 2 (owned + window); from two on
    // stage 2 holds less.
    if (n > 1) {
      EXPECT_LT(z2.state(), z1.state()) << n << " ranks";
    }
  }
}

TEST(MemoryPlan, ARunThatCannotFitIsRefusedNamingWhatToChange) {
  TrainConfig cfg;
  cfg.model.vocab_size = 512;
  cfg.model.seq_len = 64;
  cfg.model.d_model = 128;
  cfg.model.n_layer = 8;
  cfg.model.n_head = 4;
  cfg.micro_batch = 8;
  const MemoryPlan p = plan_memory(cfg, 2, ZeroStage::off, false, Precision::fp32, false);
  EXPECT_NO_THROW(
      check_memory_fits(p, p.total(), "here", cfg, 2, ZeroStage::off, Precision::fp32, false));
  try {
    check_memory_fits(p, p.total() - 1, "rank 0's share of node1", cfg, 2, ZeroStage::off,
                      Precision::fp32, false);
    FAIL() << "expected a refusal";
  } catch (const UsageError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rank 0's share of node1"), std::string::npos) << what;
    // One byte short: the least of each change fits.
    EXPECT_NE(what.find("Any one of these fits: --zero 1 ("), std::string::npos) << what;
    EXPECT_NE(what.find("more ranks: 4 with --zero 1"), std::string::npos) << what;
    EXPECT_NE(what.find("--micro-batch 4"), std::string::npos) << what;
  }
  // Room for stage 2 with micro-batches of 1 on 64 ranks only: no one change is enough.
  TrainConfig lean = cfg;
  lean.data_cache_mb = 0;
  const MemoryPlan q = plan_memory(lean, 2, ZeroStage::off, false, Precision::fp32, false);
  const uint64_t room = plan_memory(
                            [&] {
                              TrainConfig c = lean;
                              c.micro_batch = 1;
                              return c;
                            }(),
                            64, ZeroStage::gradients, false, Precision::fp32, false)
                            .total();
  try {
    check_memory_fits(q, room, "here", lean, 2, ZeroStage::off, Precision::fp32, false);
    FAIL() << "expected a refusal";
  } catch (const UsageError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("No one change fits; together: --zero 2, --micro-batch 1 and "),
              std::string::npos)
        << what;
    EXPECT_EQ(what.find("Any one of these"), std::string::npos) << what;
  }
  // Too small for any sharding: the model itself must shrink.
  try {
    check_memory_fits(p, 1000, "here", cfg, 2, ZeroStage::off, Precision::fp32, false);
    FAIL() << "expected a refusal";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("make the model smaller"), std::string::npos);
  }
}

}  // namespace
}  // namespace dpt::trainer
