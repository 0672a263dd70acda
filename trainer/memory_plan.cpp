// [Memory plan]: the bytes of one rank, the memory the node and the GPU have, and the refusal.
#include "trainer/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "kernels/attention.h"
#include "trainer/gradient_exchange.h"
#include "trainer/param_layout.h"

namespace dpt::trainer {

namespace {

std::string gb(uint64_t bytes) {
  char s[32];
  if (bytes >= (uint64_t{1} << 30)) {
    std::snprintf(s, sizeof(s), "%.2f GiB", bytes / double(uint64_t{1} << 30));
  } else {
    std::snprintf(s, sizeof(s), "%.1f MiB", bytes / double(1 << 20));
  }
  return s;
}

// The largest owned range of `world` ranks: the last rank's ([Owned ranges]).
uint64_t largest_range(uint64_t total, int world) {
  return owned_range(total, world, world - 1).count();
}

// Gradient elements backward holds under stage 2 before its buckets are reduced: the tied token
// embedding and the position embedding (written by the head or the embedding and reduced last,
// after backward), ln_f, and what the bounded exchange leaves in flight
// (GradientExchange::bound_in_flight): the block being computed, the block finished before it
// whose buckets are in flight, and the bucket that straddles a block boundary (with buckets
// larger than a block: two buckets and a block).
uint64_t stage2_window_elements(const ModelConfig& m, uint64_t total, size_t bucket_bytes) {
  const uint64_t C = static_cast<uint64_t>(m.d_model);
  const uint64_t embeddings =
      static_cast<uint64_t>(m.vocab_size) * C + static_cast<uint64_t>(m.seq_len) * C + 2 * C;
  const uint64_t block =
      m.n_layer > 0 ? (total - embeddings) / static_cast<uint64_t>(m.n_layer) : 0;
  const uint64_t bucket = bucket_bytes == 0 ? total : bucket_bytes / sizeof(float);
  return std::min(total, embeddings + 2 * std::max(block, bucket) + std::min(block, bucket));
}

}  // namespace

std::string MemoryPlan::describe() const {
  return "parameters " + gb(params) + ", gradients " + gb(grads) + ", optimizer state " +
         gb(optimizer) + ", activations " + gb(activations) + ", buffers " + gb(buffers) + ": " +
         gb(total()) + (gpu ? " of GPU memory" : " of host memory");
}

uint64_t cpu_activation_elements(const ModelConfig& m, int batch, bool fused) {
  const uint64_t B = static_cast<uint64_t>(batch), T = static_cast<uint64_t>(m.seq_len),
                 C = static_cast<uint64_t>(m.d_model), V = static_cast<uint64_t>(m.padded_vocab()),
                 NH = static_cast<uint64_t>(m.n_head), L = static_cast<uint64_t>(m.n_layer);
  const uint64_t BT = B * T;
  // Gpt<T>'s forward activations: per block 18 BTC (ln1, qkv 3, atty, attproj, res2, ln2,
  // fch 4, fch_gelu 4, fcproj, res3) + 4 BT of LayerNorm statistics + B NH T^2 of attention
  // (B NH T fused); then the embedding output, ln_f with its statistics, logits, probabilities
  // and losses, the logits' rows padded ([Padded vocabulary]).
  const uint64_t att = fused ? B * NH * T : B * NH * T * T;
  const uint64_t acts =
      BT * C + L * (18 * BT * C + 4 * BT + att) + BT * C + 2 * BT + 2 * BT * V + BT;
  // Its backward scratch, reused by every block: d_res, d_ln, d_qkv 3, d_atty, d_fch_gelu 4,
  // d_fch 4 (BTC each), the logits' and losses' gradients, unfused attention's scratch.
  const uint64_t dacts =
      14 * BT * C + BT * V + BT +
      (fused ? 0 : kernels::attention_backward_scratch_elems(batch, m.seq_len, m.n_head));
  return acts + dacts;
}

MemoryPlan plan_memory(const TrainConfig& cfg, int world, ZeroStage zero, bool gpu,
                       Precision precision, bool checkpoints) {
  const uint64_t psi = ParamLayout(cfg.model).total();
  const bool sharded = zero != ZeroStage::off;
  const uint64_t own = sharded ? largest_range(psi, world) : psi;
  const uint64_t f = sizeof(float);
  MemoryPlan p;
  p.gpu = gpu;
  const uint64_t compute = gpu && precision == Precision::bf16 ? 2 : 4;
  p.params = f * psi + (compute == 2 ? 2 * psi : 0);
  p.optimizer = 2 * f * own;
  if (zero == ZeroStage::gradients) {
    p.grads = f * own + f * stage2_window_elements(cfg.model, psi, cfg.bucket_bytes());
  } else {
    p.grads = f * psi;
  }
  p.activations =
      compute * cpu_activation_elements(cfg.model, cfg.micro_batch, cfg.model.fused_attention(gpu));
  // The exchange's scratch: a [Rank-order sum] gathers every rank's copy of this rank's part
  // of a bucket (about two buckets in flight); NCCL keeps its own buffers.
  if (!gpu) {
    const uint64_t bucket = cfg.bucket_bytes() == 0 ? psi : cfg.bucket_bytes() / f;
    const uint64_t part = sharded ? std::min(bucket, own) * static_cast<uint64_t>(world) : bucket;
    p.buffers += 2 * f * part;
  }
  // The host snapshot of an asynchronous checkpoint: this rank's slice of three tensors.
  if (checkpoints && !gpu) p.buffers += 3 * f * largest_range(psi, world);
  // The data reader's chunk cache budget.
  if (!gpu) p.buffers += static_cast<uint64_t>(cfg.data_cache_mb) << 20;
  return p;
}

uint64_t peak_resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // in kB
  }
  return 0;
}

uint64_t host_memory_available() {
  uint64_t avail = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") avail = kb * 1024;
  }
  // Control groups (Slurm's job or step, a container) may cap this process below what the
  // machine has, at its own group or any group above it. /proc/self/cgroup names the groups:
  // "0::/path" for cgroup v2 (memory.max, memory.current), "N:memory:/path" for v1
  // (memory.limit_in_bytes, memory.usage_in_bytes; "unlimited" is a huge number there).
  std::ifstream self("/proc/self/cgroup");
  std::string line;
  while (std::getline(self, line)) {
    const bool v2 = line.rfind("0::", 0) == 0;
    const size_t mem = line.find(":memory:");
    if (!v2 && mem == std::string::npos) continue;
    const std::string root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
    const char* limit_name = v2 ? "/memory.max" : "/memory.limit_in_bytes";
    const char* usage_name = v2 ? "/memory.current" : "/memory.usage_in_bytes";
    std::string dir = v2 ? line.substr(3) : line.substr(mem + 8);
    while (!dir.empty()) {
      std::ifstream limit_file(root + (dir == "/" ? "" : dir) + limit_name),
          usage_file(root + (dir == "/" ? "" : dir) + usage_name);
      std::string limit_text;
      uint64_t usage = 0;
      if (limit_file >> limit_text && limit_text != "max" && usage_file >> usage) {
        const uint64_t cap = std::stoull(limit_text);
        avail = std::min(avail, cap > usage ? cap - usage : 0);
      }
      if (dir == "/") break;
      const size_t slash = dir.find_last_of('/');
      dir = slash == 0 ? "/" : dir.substr(0, slash);
    }
  }
  return avail;
}

void check_memory_fits(const MemoryPlan& plan, uint64_t available, const std::string& where,
                       const TrainConfig& cfg, int world, ZeroStage zero, Precision precision,
                       bool checkpoints) {
  if (plan.total() <= available) return;
  std::ostringstream msg;
  msg << "this run needs " << gb(plan.total()) << " per rank (" << plan.describe() << ") but "
      << where << " has " << gb(available) << ".";
  // What each change would need, computed with the same plan.
  auto need = [&](ZeroStage z, int ranks, int micro) {
    TrainConfig c = cfg;
    c.micro_batch = micro;
    return plan_memory(c, ranks, z, plan.gpu, precision, checkpoints).total();
  };
  // The deepest stage this processor has ([ZeRO]: stage 2 is the CPU path's).
  const ZeroStage deepest = plan.gpu ? ZeroStage::optimizer : ZeroStage::gradients;
  // The least a rank can hold: the deepest stage, --micro-batch 1, over rank counts up to 4096
  // (the exchange's scratch grows with the rank count once a range is smaller than a bucket).
  uint64_t floor_bytes = need(deepest, world, 1);
  for (int w = world; w <= 4096; w *= 2)
    floor_bytes = std::min(floor_bytes, need(deepest, w, 1));
  if (floor_bytes > available) {
    msg << " Even with --zero " << zero_level(deepest)
        << ", --micro-batch 1 and up to 4096 ranks a rank holds the whole model and more ("
        << gb(floor_bytes)
        << "): make the model smaller (--n-layer, --d-model, --seq-len, --vocab-size) or run "
           "where a rank has more memory.";
    throw UsageError(msg.str());
  }
  // Each change alone that fits: the least sharding on these ranks, the fewest ranks (doubling,
  // the least sharding first), the largest smaller micro-batch that divides this one.
  std::vector<std::string> fixes;
  const auto fits = [&](ZeroStage z, int w, int micro) { return need(z, w, micro) <= available; };
  const auto fix = [&](ZeroStage z, int w, int micro, const std::string& what) {
    fixes.push_back(what + " (" + gb(need(z, w, micro)) + " per rank)");
  };
  for (int z = zero_level(zero) + 1; z <= zero_level(deepest); ++z) {
    if (fits(static_cast<ZeroStage>(z), world, cfg.micro_batch)) {
      fix(static_cast<ZeroStage>(z), world, cfg.micro_batch, "--zero " + std::to_string(z));
      break;
    }
  }
  bool ranks_found = false;
  for (int z = std::max(1, zero_level(zero)); z <= zero_level(deepest) && !ranks_found; ++z) {
    for (int w = world * 2; w <= 4096 && !ranks_found; w *= 2) {
      if (fits(static_cast<ZeroStage>(z), w, cfg.micro_batch)) {
        fix(static_cast<ZeroStage>(z), w, cfg.micro_batch,
            "more ranks: " + std::to_string(w) + " with --zero " + std::to_string(z));
        ranks_found = true;
      }
    }
  }
  for (int m = cfg.micro_batch - 1; m >= 1; --m) {
    if (cfg.micro_batch % m == 0 && fits(zero, world, m)) {
      fix(zero, world, m,
          "--micro-batch " + std::to_string(m) +
              " (the global batch then accumulates over more micro-batches)");
      break;
    }
  }
  if (!fixes.empty()) {
    msg << " Any one of these fits:";
    for (size_t i = 0; i < fixes.size(); ++i)
      msg << (i == 0 ? " " : "; ") << fixes[i];
    msg << ".";
  } else {
    // No one change is enough: the deepest stage and --micro-batch 1 on the fewest ranks.
    int w = world;
    while (!fits(deepest, w, 1))
      w *= 2;  // the floor check above found a count up to 4096 that fits
    msg << " No one change fits; together: --zero " << zero_level(deepest)
        << ", --micro-batch 1 and " << w << " ranks (" << gb(need(deepest, w, 1)) << " per rank).";
  }
  throw UsageError(msg.str());
}

}  // namespace dpt::trainer
