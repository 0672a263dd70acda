#!/usr/bin/env python3
"""The PyTorch peer of scripts/bench-gpu.sh: the same GPT-2 model as dptrain's (pre-LN blocks,
learned positions, tied token embedding and output head, GELU tanh, 4x MLP, biases), trained in
bf16 autocast over fp32 master weights with torch.compile, scaled_dot_product_attention and fused
AdamW, on random tokens. Times every step after warm-up with CUDA events and prints one JSON line:
{"impl": "torch", "tokens_per_s": ..., "step_ms": ..., ...} (medians). Exits 2 without a GPU."""
import argparse
import json
import statistics
import sys
import time

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--micro-batch", type=int, default=16)
ap.add_argument("--seq-len", type=int, default=1024)
ap.add_argument("--vocab-size", type=int, default=50304)
ap.add_argument("--d-model", type=int, default=768)
ap.add_argument("--n-layer", type=int, default=12)
ap.add_argument("--n-head", type=int, default=12)
ap.add_argument("--steps", type=int, default=30, help="timed steps")
ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation included)")
ap.add_argument("--grad-clip", type=float, default=1.0, help="clip the global norm (0: off), as dptrain does")
ap.add_argument("--no-compile", action="store_true")
ap.add_argument("--json", help="also write the result line to this file")
a = ap.parse_args()

try:
    import torch
except ImportError as e:
    print(f"bench_gpu_torch: no CUDA device usable: PyTorch is not installed ({e})", file=sys.stderr)
    sys.exit(2)
if not torch.cuda.is_available():
    print("bench_gpu_torch: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
    sys.exit(2)
from bench_torch_model import GPT, adamw


torch.manual_seed(0)
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
dev = torch.device("cuda")
B, T, V = a.micro_batch, a.seq_len, a.vocab_size
model = GPT(V, T, a.d_model, a.n_layer, a.n_head).to(dev)
n_params = sum(p.numel() for p in model.parameters())
opt = adamw(model, 6e-4, fused=True)
step_model = model if a.no_compile else torch.compile(model)

# Random tokens, a few batches cycled: the data path is not what is measured.
gen = torch.Generator(device=dev).manual_seed(1)
batches = [torch.randint(0, V, (B, T + 1), device=dev, generator=gen) for _ in range(4)]


def train_step(i):
    tokens = batches[i % len(batches)]
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        loss = step_model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    if a.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip, foreach=True)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


t0 = time.perf_counter()
for i in range(a.warmup):
    loss = train_step(i)
torch.cuda.synchronize()
warmup_s = time.perf_counter() - t0

starts = [torch.cuda.Event(enable_timing=True) for _ in range(a.steps)]
ends = [torch.cuda.Event(enable_timing=True) for _ in range(a.steps)]
for i in range(a.steps):
    starts[i].record()
    loss = train_step(a.warmup + i)
    ends[i].record()
torch.cuda.synchronize()
ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
step_ms = statistics.median(ms)
result = {
    "impl": "torch",
    "torch": torch.__version__,
    "device": torch.cuda.get_device_name(0),
    "micro_batch": B,
    "seq_len": T,
    "params": n_params,
    "steps": a.steps,
    "step_ms": step_ms,
    "step_ms_min": min(ms),
    "tokens_per_s": B * T / (step_ms / 1000.0),
    "warmup_s": warmup_s,
    "compiled": not a.no_compile,
    "final_loss": float(loss.item()),
    "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
}
line = json.dumps(result)
print(line)
if a.json:
    with open(a.json, "w") as f:
        f.write(line + "\n")
