#!/usr/bin/env python3
"""The PyTorch peer of scripts/bench-cpu.sh: dptrain's model (pre-LN GPT blocks, learned
positions, tied token embedding and output head, GELU tanh, 4x MLP, biases) in fp32 on the CPU,
as a new user would write it: eager mode, attention as two matrix products and a masked softmax
(scaled_dot_product_attention where the installed PyTorch has it), AdamW with weight decay on
the matrices, the global gradient norm clipped to 1 as dptrain does. Random tokens. Times every
step after warm-up with a wall clock and prints one JSON line (medians):
{"impl": "torch", "threads": ..., "step_ms": ..., "tokens_per_s": ...}. Exits 2 without
PyTorch."""
import argparse
import json
import statistics
import sys
import time

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
ap.add_argument("--micro-batch", type=int, default=8)
ap.add_argument("--seq-len", type=int, default=128)
ap.add_argument("--vocab-size", type=int, default=257)
ap.add_argument("--d-model", type=int, default=128)
ap.add_argument("--n-layer", type=int, default=4)
ap.add_argument("--n-head", type=int, default=4)
ap.add_argument("--steps", type=int, default=30, help="timed steps")
ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
ap.add_argument("--json", help="also write the result line to this file")
a = ap.parse_args()

try:
    import torch
except ImportError as e:
    print(f"bench_cpu_torch: PyTorch is not installed ({e}); on Debian: "
          "apt-get install python3-torch", file=sys.stderr)
    sys.exit(2)
from bench_torch_model import GPT, SDPA, adamw

torch.set_num_threads(a.threads)
torch.set_num_interop_threads(1)


torch.manual_seed(0)
B, T, V = a.micro_batch, a.seq_len, a.vocab_size
model = GPT(V, T, a.d_model, a.n_layer, a.n_head)
n_params = sum(p.numel() for p in model.parameters())
opt = adamw(model, 3e-4)
gen = torch.Generator().manual_seed(1)
batches = [torch.randint(0, V, (B, T + 1), generator=gen) for _ in range(4)]


def train_step(i):
    tokens = batches[i % len(batches)]
    loss = model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


for i in range(a.warmup):
    train_step(i)
ms = []
for i in range(a.steps):
    t0 = time.perf_counter()
    loss = train_step(a.warmup + i)
    ms.append((time.perf_counter() - t0) * 1000.0)
step_ms = statistics.median(ms)
result = {
    "impl": "torch",
    "torch": torch.__version__,
    "threads": a.threads,
    "attention": "scaled_dot_product_attention" if SDPA else "matmul + masked softmax",
    "micro_batch": B,
    "seq_len": T,
    "params": n_params,
    "steps": a.steps,
    "step_ms": step_ms,
    "step_ms_min": min(ms),
    "tokens_per_s": B * T / (step_ms / 1000.0),
    "final_loss": float(loss),
}
line = json.dumps(result)
print(line)
if a.json:
    with open(a.json, "w") as f:
        f.write(line + "\n")
