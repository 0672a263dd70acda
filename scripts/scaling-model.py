#!/usr/bin/env python3
"""Scaling model of data-parallel training: from one run's timeline (train --trace) and measured
or preset all-reduce costs, predicts step time, exposed communication and weak-scaling
efficiency from 1 to thousands of GPUs, with the gradient buckets overlapped with backward as
the trainer schedules them ([Gradient buckets]). See docs/scaling-model.md."""
# One file, past the 800-line soft limit, so that it runs from a checkout with Debian's python3
# alone; its sections: shapes, buckets, compute, trace, collectives, the step, predict,
# validate, command line.

import argparse
import bisect
import csv
import json
import math
import os
import re
import statistics
import sys
from dataclasses import dataclass, field

MIB = 1 << 20
GRAD_BYTES = 4  # the flat gradient buffer is fp32 on every path (bf16 runs too)
FIRST_BUCKET_BYTES = MIB  # trainer/gradient_exchange.h kFirstBucketBytes (PyTorch DDP's)

# --- H100 + InfiniBand preset (--network h100-ib). Every figure is per GPU. ---------------------
# NVLink 4 is 900 GB/s bidirectional per H100 SXM, 450 GB/s per direction (NVIDIA H100
# datasheet). NCCL gets ~370 GB/s of it as busbw once its protocol overhead (~20%) is paid, for
# reduce-scatter, all-gather and ring all-reduce; NVLink SHARP lifts all-reduce alone to ~480
# GB/s on 8 GPUs (S. Jeaugey, NCCL maintainer, NVIDIA/nccl-tests issue #212). The hierarchical
# all-reduce below moves the intra-node part as reduce-scatter + all-gather, so 370 applies.
NVLINK_BUSBW_GBPS = 370.0
# DGX H100: one 400 Gb/s NDR ConnectX-7 per GPU, 50 GB/s per direction; NCCL reaches 46-48 GB/s
# per NIC at NDR (NVIDIA/nccl-tests issue #290, NVIDIA's reply). The low end, as a ring sees it.
IB_BW_GBPS = 46.0
# Latencies from NCCL's own cost model (src/graph/tuning.cc, baseLat and hwLat, LL128 protocol,
# the one NCCL picks for the 64 KiB-several MiB messages that buckets are): a fixed cost per
# collective, then a cost per step of the algorithm on each kind of link. They differ between
# NCCL versions by about a factor of 2 either way; these sit in the middle.
COLL_BASE_US = 8.4  # baseLat, Ring/Simple
NVLINK_HOP_US = 1.9  # hwLat NVLink, Ring/LL128
IB_RING_HOP_US = 4.0  # hwLat NET, Ring/LL128: a ring all-reduce takes 2(k-1) of these
IB_TREE_HOP_US = 8.5  # hwLat NET, Tree/LL128: a tree takes 2 log2(k) of these
# NCCL's tuning model gives the tree 0.9 of the ring's bus bandwidth and counts its algbw as half
# of that (each byte goes up the tree and comes down again): time = 2 S / (0.9 bw) for large S.
TREE_BW_EFFICIENCY = 0.9
# H100 SXM dense BF16 peak (NVIDIA H100 datasheet: 1979 TFLOPS with sparsity, half without) and
# HBM3 bandwidth; the trainer's own peak table (trainer/peak_flops.cpp) uses the same figure.
H100_PEAK_TFLOPS = 989.0
H100_HBM_TBPS = 3.35
# AdamW on fp32 state reads parameter, gradient, m and v and writes parameter, m and v.
ADAMW_BYTES_PER_PARAM = 7 * 4
HBM_EFFICIENCY = 0.8  # a streaming kernel's share of the HBM peak (assumption)

# Model shapes. 124M is GPT-2 small; 350M and 1.3B are GPT-3 "Medium" and "XL" (Brown et al.
# 2020, Table 2.1: d_model 1024 and 2048 over 24 layers). GPT-3 lists XL with 24 heads of 128,
# which does not multiply to 2048; 16 heads of 128 are used (the FLOP count does not depend on
# heads). Vocabulary: GPT-2's 50257 tokens; context: GPT-2's 1024 (--seq-len; GPT-3 used 2048).
SHAPES = {
    "124M": dict(n_layer=12, d_model=768, n_head=12),
    "350M": dict(n_layer=24, d_model=1024, n_head=16),
    "1.3B": dict(n_layer=24, d_model=2048, n_head=16),
}
GPT2_VOCAB = 50257


class UsageError(Exception):
    """Bad input or options: reported in one line, exit 2."""


@dataclass(frozen=True)
class Shape:
    name: str
    vocab: int
    seq_len: int
    d_model: int
    n_layer: int
    n_head: int

    # [Parameter layout]: wte, wpe, the blocks, ln_f; each block is 12C^2 + 13C parameters.
    @property
    def block_params(self):
        c = self.d_model
        return 12 * c * c + 13 * c

    def block_offset(self, layer):
        return (self.vocab + self.seq_len) * self.d_model + layer * self.block_params

    @property
    def ln_f_offset(self):
        return self.block_offset(self.n_layer)

    @property
    def params(self):
        return self.ln_f_offset + 2 * self.d_model

    # Training FLOPs per token as llm.c counts them, 6 N + 6 L C T, shared out by where the work
    # is: a block's weights and its attention, the tied head (the wte matmul and ln_f), and the
    # rest of 6 N (wpe: the lookups themselves do no matmul). Forward is 1/3, backward 2/3.
    @property
    def block_flops(self):
        return 6 * self.block_params + 6 * self.d_model * self.seq_len

    @property
    def head_flops(self):
        return 6 * (self.vocab * self.d_model + 2 * self.d_model)

    @property
    def embed_flops(self):
        return 6 * self.seq_len * self.d_model

    @property
    def flops_per_token(self):
        return self.n_layer * self.block_flops + self.head_flops + self.embed_flops


def named_shape(name, seq_len, vocab):
    if name not in SHAPES:
        raise UsageError(f"unknown shape '{name}' (known: {', '.join(SHAPES)}, trace)")
    return Shape(name, vocab, seq_len, **SHAPES[name])


# --- Buckets: a mirror of plan_gradient_buckets (trainer/gradient_exchange.cpp) ---------------
def plan_buckets(total, bucket_bytes):
    """[(offset, count)] in issue order (from the end of the buffer), as the trainer cuts them."""
    if total == 0:
        return []
    if bucket_bytes == 0:
        return [(0, total)]
    first = max(1, min(FIRST_BUCKET_BYTES, bucket_bytes) // GRAD_BYTES)
    rest = max(1, bucket_bytes // GRAD_BYTES)
    plan, end, size = [], total, first
    while end > 0:
        count = min(size, end)
        plan.append((end - count, count))
        end -= count
        size = rest
    return plan


def mib_to_bytes(mb):
    return int(mb * MIB)  # TrainConfig::bucket_bytes()


# --- Compute --------------------------------------------------------------------------------
@dataclass
class Profile:
    """One rank's compute: per micro-batch forward/backward parts, per step the rest (ms)."""
    shape: Shape
    micro_batch: int
    accum: int
    fwd_blocks: list
    bwd_blocks: list
    fwd_head: float
    bwd_head: float
    fwd_embed: float
    bwd_embed: float
    optimizer: float
    data_wait: float
    other: float
    source: str = ""

    @property
    def tokens(self):  # per micro-batch
        return self.micro_batch * self.shape.seq_len

    @property
    def forward(self):
        return sum(self.fwd_blocks) + self.fwd_head + self.fwd_embed

    @property
    def backward(self):
        return sum(self.bwd_blocks) + self.bwd_head + self.bwd_embed

    def compute_ms(self):
        return self.data_wait + self.accum * (self.forward + self.backward) + self.optimizer + \
            self.other

    def mfu(self, peak_flops):  # over the whole step, as the trainer's mfu (llm.c's)
        flops = self.shape.flops_per_token * self.tokens * self.accum
        return flops / (self.compute_ms() * 1e-3) / peak_flops

    def scaled(self, shape, micro_batch, accum):
        """This profile moved to another shape and micro-batch at the same FLOP rates: blocks and
        the head by their FLOPs, the embedding by tokens x C (memory-bound), the optimizer by
        parameters; data wait and other per-step overhead unchanged."""
        s0, t0 = self.shape, self.tokens
        t1 = micro_batch * shape.seq_len
        blk = shape.block_flops * t1 / (s0.block_flops * t0)
        head = shape.head_flops * t1 / (s0.head_flops * t0)
        emb = shape.d_model * t1 / (s0.d_model * t0)
        if shape.n_layer == s0.n_layer:
            fwd = [x * blk for x in self.fwd_blocks]
            bwd = [x * blk for x in self.bwd_blocks]
        else:  # per-block differences do not carry over to another depth
            fwd = [statistics.median(self.fwd_blocks) * blk] * shape.n_layer
            bwd = [statistics.median(self.bwd_blocks) * blk] * shape.n_layer
        return Profile(shape, micro_batch, accum, fwd, bwd, self.fwd_head * head,
                       self.bwd_head * head, self.fwd_embed * emb, self.bwd_embed * emb,
                       self.optimizer * shape.params / s0.params, self.data_wait, self.other,
                       self.source)


def flops_profile(shape, micro_batch, accum, mfu, peak_tflops, hbm_tbps, overhead_ms):
    """Compute from FLOPs at an assumed MFU (every part at the same rate, so that the whole step
    runs at that MFU) and AdamW from HBM bandwidth."""
    rate = mfu * peak_tflops * 1e12 / 1e3  # FLOP per ms
    tok = micro_batch * shape.seq_len

    def ms(flops, share):
        return flops * tok * share / rate
    opt = shape.params * ADAMW_BYTES_PER_PARAM / (hbm_tbps * 1e12 * HBM_EFFICIENCY) * 1e3
    return Profile(shape, micro_batch, accum, [ms(shape.block_flops, 1 / 3)] * shape.n_layer,
                   [ms(shape.block_flops, 2 / 3)] * shape.n_layer, ms(shape.head_flops, 1 / 3),
                   ms(shape.head_flops, 2 / 3), ms(shape.embed_flops, 1 / 3),
                   ms(shape.embed_flops, 2 / 3), opt, 0.0, overhead_ms,
                   f"FLOPs at MFU {100 * mfu:.0f}% of {peak_tflops:g} TFLOP/s, AdamW at "
                   f"{HBM_EFFICIENCY:.0%} of {hbm_tbps:g} TB/s")


# --- Trace ------------------------------------------------------------------------------------
def load_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{what} {path}: not valid JSON ({e})") from None


def _args(e):
    a = e.get("args")
    return a if isinstance(a, dict) else {}


def _num(d, key, path, where="otherData"):
    v = d.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise UsageError(f"trace {path}: {where}.{key} missing or not a number")
    return v


BLOCK_SPAN = re.compile(r"block (\d+) (fwd|bwd)$")
EXCLUDED = ("validation", "checkpoint snapshot")  # periodic work, not part of a training step


@dataclass
class StepSpans:
    rank: int
    step: int
    dur: float  # ms
    host: dict = field(default_factory=dict)  # span name -> [(dur ms, args)] on the compute thread
    gpu: dict = field(default_factory=dict)  # the same on the GPU compute stream
    buckets: list = field(default_factory=list)  # ("gpu bucket" | "host bucket", index, ms)

    def total(self, name, gpu=False):
        return sum(d for d, _ in (self.gpu if gpu else self.host).get(name, []))

    def count(self, name, gpu=False):
        return len((self.gpu if gpu else self.host).get(name, []))


@dataclass
class Trace:
    path: str
    other: dict
    shape: Shape
    world_size: int
    device: str
    micro_batch: int
    accum: int
    bucket_bytes: int
    steps: list  # StepSpans, warm-up dropped

    def step_numbers(self):
        return sorted({s.step for s in self.steps})


def read_trace(path):
    doc = load_json(path, "trace")
    events = doc if isinstance(doc, list) else doc.get("traceEvents") if isinstance(doc, dict) \
        else None
    if not isinstance(events, list):
        raise UsageError(f"trace {path}: no traceEvents array")
    other = doc.get("otherData") if isinstance(doc, dict) else None
    other = other if isinstance(other, dict) else {}
    model = other.get("model")
    if not isinstance(model, dict):
        raise UsageError(f"trace {path}: otherData.model is missing (write it with train --trace)")
    shape = Shape("trace", *(int(_num(model, k, path, "otherData.model")) for k in
                             ("vocab_size", "seq_len", "d_model", "n_layer")),
                  int(model.get("n_head", 1) or 1))
    if min(shape.vocab, shape.seq_len, shape.d_model, shape.n_layer) <= 0:
        raise UsageError(f"trace {path}: otherData.model has a zero dimension")

    threads = {}  # (pid, tid) -> name
    for e in events:
        if isinstance(e, dict) and e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e.get("pid"), e.get("tid"))] = str(_args(e).get("name", ""))

    def role(pid, tid):
        name = threads.get((pid, tid))
        if name is None:  # unnamed: the trainer's track numbers (common/trace.h)
            return {1: "compute", 5: "gpu"}.get(tid)
        return {"compute": "compute", "gpu compute stream": "gpu"}.get(name)

    steps, spans, begins, ends = {}, [], {}, {}
    for e in events:
        if not isinstance(e, dict):
            continue
        ph, name, pid = e.get("ph"), e.get("name"), e.get("pid")
        ts = e.get("ts")
        if not isinstance(name, str) or not isinstance(ts, (int, float)):
            continue
        if ph == "X" and isinstance(e.get("dur"), (int, float)):
            r = role(pid, e.get("tid"))
            if name == "step" and r == "compute":
                k = _args(e).get("step")
                steps.setdefault(pid, []).append((ts, ts + e["dur"], k))
            elif name.startswith("all-reduce bucket"):  # the NCCL stream's, from CUDA events
                spans.append(("gpu bucket", pid, ts, e["dur"], e))
            elif r:
                spans.append((r, pid, ts, e["dur"], e))
        elif ph in ("b", "e") and name.startswith("all-reduce bucket"):
            (begins if ph == "b" else ends)[(pid, e.get("id"), name)] = e
    for key, b in begins.items():
        if key in ends and ends[key]["ts"] >= b["ts"]:
            spans.append(("host bucket", key[0], b["ts"], ends[key]["ts"] - b["ts"], b))
    if not steps:
        raise UsageError(f"trace {path}: no step spans on a compute thread")

    out = {}
    starts = {}
    for pid, lst in steps.items():
        lst.sort()
        starts[pid] = [lo for lo, _, _ in lst]
        for i, (lo, hi, k) in enumerate(lst):
            out[(pid, i)] = StepSpans(pid, int(k) if isinstance(k, (int, float)) else i + 1,
                                      (hi - lo) / 1e3)
    for kind, pid, ts, dur, e in spans:
        if pid not in steps:
            continue
        i = bisect.bisect_right(starts[pid], ts) - 1
        if i < 0 or ts > steps[pid][i][1]:
            continue  # outside every step
        s = out[(pid, i)]
        if kind.endswith("bucket"):
            m = re.search(r"(\d+)$", e["name"])
            s.buckets.append((kind, int(m.group(1)) if m else -1, dur / 1e3))
        else:
            (s.gpu if kind == "gpu" else s.host).setdefault(e["name"], []).append(
                (dur / 1e3, _args(e)))
    all_steps = list(out.values())
    numbers = sorted({s.step for s in all_steps})
    if numbers and numbers[0] == 1 and len(numbers) > 1:  # step 1 is warm-up
        all_steps = [s for s in all_steps if s.step != 1]
    elif numbers == [1]:
        print(f"scaling-model: note: {path} holds only step 1 (warm-up); its times may be high",
              file=sys.stderr)
    micro = int(other.get("micro_batch", 0) or 0)
    accum = int(other.get("accum_steps", 0) or 0)
    if micro <= 0:
        raise UsageError(f"trace {path}: otherData.micro_batch missing")
    return Trace(path, other, shape, int(other.get("world_size", 1) or 1),
                 str(other.get("device", "cpu")), micro, max(1, accum),
                 int(other.get("bucket_bytes", 0) or 0), all_steps)


def _median(xs, default=0.0):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else default


def profile_from_trace(tr):
    """Medians over the traced steps (all ranks pooled) of each part of a step. On a GPU trace,
    forward, backward and the optimizer come from the compute stream's CUDA events (the host's
    spans are enqueue times there) and are split into blocks, head and embedding by FLOPs."""
    sh = tr.shape
    L = sh.n_layer
    rows = []
    for s in tr.steps:
        gpu = s.count("forward", gpu=True) > 0 and s.count("backward", gpu=True) > 0
        micro = s.count("forward", gpu) or s.count("backward", gpu)
        if micro == 0:
            continue
        fwd = s.total("forward", gpu) / micro
        bwd = s.total("backward", gpu) / micro
        blocks_f, blocks_b = [0.0] * L, [0.0] * L
        have_blocks = False
        if not gpu:
            for name, lst in s.host.items():
                m = BLOCK_SPAN.match(name)
                if m and int(m.group(1)) < L:
                    have_blocks = True
                    (blocks_f if m.group(2) == "fwd" else blocks_b)[int(m.group(1))] = \
                        sum(d for d, _ in lst) / micro
        parts = dict(
            fwd=fwd, bwd=bwd, blocks_f=blocks_f if have_blocks else None,
            blocks_b=blocks_b if have_blocks else None,
            head_f=s.total("head fwd") / micro if not gpu and s.count("head fwd") else None,
            head_b=s.total("head bwd") / micro if not gpu and s.count("head bwd") else None,
            emb_f=s.total("embed fwd") / micro if not gpu and s.count("embed fwd") else None,
            emb_b=s.total("embed bwd") / micro if not gpu and s.count("embed bwd") else None,
            opt=s.total("optimizer", gpu and s.count("optimizer", True) > 0),
            data=s.total("data wait"), xwait=s.total("exchange wait"),
            excluded=sum(s.total(n) for n in EXCLUDED), step=s.dur, micro=micro)
        known = parts["data"] + micro * (fwd + bwd) + parts["xwait"] + parts["opt"] + \
            parts["excluded"]
        parts["other"] = max(0.0, s.dur - known)
        rows.append(parts)
    if not rows:
        raise UsageError(f"trace {tr.path}: no forward or backward spans inside its steps")

    def med(key):
        return _median([r[key] for r in rows])
    fwd, bwd = med("fwd"), med("bwd")
    def split(total, part_flops):  # by FLOPs, where the trace has no finer spans
        return total * part_flops / sh.flops_per_token
    fb = [r["blocks_f"] for r in rows if r["blocks_f"]]
    bb = [r["blocks_b"] for r in rows if r["blocks_b"]]
    fwd_blocks = [_median([b[l] for b in fb]) for l in range(L)] if fb else \
        [split(fwd, sh.block_flops)] * L
    bwd_blocks = [_median([b[l] for b in bb]) for l in range(L)] if bb else \
        [split(bwd, sh.block_flops)] * L

    def part(key, total, flops, blocks):
        vals = [r[key] for r in rows if r[key] is not None]
        if vals:
            return _median(vals)
        # Missing span: what the step's forward/backward holds beyond the blocks, shared out.
        rest = max(0.0, total - sum(blocks))
        other_flops = sh.head_flops + sh.embed_flops
        return rest * flops / other_flops if fb or bb else split(total, flops)
    prof = Profile(sh, tr.micro_batch, tr.accum, fwd_blocks, bwd_blocks,
                   part("head_f", fwd, sh.head_flops, fwd_blocks),
                   part("head_b", bwd, sh.head_flops, bwd_blocks),
                   part("emb_f", fwd, sh.embed_flops, fwd_blocks),
                   part("emb_b", bwd, sh.embed_flops, bwd_blocks),
                   med("opt"), med("data"), med("other"))
    # The block/head/embed spans nest inside forward/backward with small gaps between them
    # (callbacks, MPI_Test): fold the gaps into the head's share so the totals stay measured.
    prof.fwd_head += max(0.0, fwd - prof.forward)
    prof.bwd_head += max(0.0, bwd - prof.backward)
    nums = tr.step_numbers()
    prof.source = (f"trace {os.path.basename(tr.path)} ({tr.device}, {tr.world_size} rank(s), "
                   f"steps {nums[0]}-{nums[-1]}, medians)")
    return prof


def measured_step_ms(tr):
    """Median over steps of the ranks' mean step time, validation and checkpoint snapshots out."""
    by_step = {}
    for s in tr.steps:
        by_step.setdefault(s.step, []).append(s.dur - sum(s.total(n) for n in EXCLUDED))
    return statistics.median(statistics.fmean(v) for v in by_step.values()), len(by_step)


# --- Collectives ------------------------------------------------------------------------------
def bus_factor(op, n):
    """nccl-tests: busbw = algbw x this (PERFORMANCE.md in NVIDIA/nccl-tests)."""
    return 2 * (n - 1) / n if op == "all_reduce" else (n - 1) / n


class FittedAllReduce:
    """time = alpha + bytes x 2(n-1)/n / busbw, alpha and busbw fitted per rank count measured;
    another rank count uses the nearest one measured (busbw is what stays constant with n for a
    ring; alpha does not grow with n here, so use a preset for thousands of ranks)."""

    def __init__(self, fits, backend):
        self.fits = fits  # ranks -> (alpha_us, busbw_GBps)
        self.backend = backend
        self.label = f"{backend} all-reduce fit"

    def _fit(self, n):
        return self.fits[min(self.fits, key=lambda r: (abs(math.log(r / n)), -r))]

    def cost_us(self, nbytes, n):
        if n <= 1 or nbytes <= 0:
            return 0.0
        alpha, busbw = self._fit(n)
        return alpha + nbytes * bus_factor("all_reduce", n) / (busbw * 1e3)

    def latency_us(self, n):
        return 0.0 if n <= 1 else self._fit(n)[0]

    def describe(self):
        fits = ", ".join(f"{r} ranks: alpha {a:.1f} us, busbw {b:.2f} GB/s"
                         for r, (a, b) in sorted(self.fits.items()))
        return f"{self.backend} all-reduce fitted ({fits})"


def fit_alpha_beta(points):
    """Least squares on relative error (every size counts alike): time = alpha + x / bw."""
    # Normal equations of sum(((alpha + b x) / t - 1)^2), solved by hand (2 unknowns).
    s11 = sum(1 / t ** 2 for x, t in points)
    s12 = sum(x / t ** 2 for x, t in points)
    s22 = sum(x * x / t ** 2 for x, t in points)
    r1 = sum(1 / t for x, t in points)
    r2 = sum(x / t for x, t in points)
    det = s11 * s22 - s12 * s12
    alpha, b = ((r1 * s22 - r2 * s12) / det, (s11 * r2 - s12 * r1) / det) if det > 0 else (-1, 0)
    if alpha < 0 or b <= 0:  # noise or a single size: the line through the origin
        alpha, b = 0.0, r2 / s22
    return alpha, 1e-3 / b  # us, GB/s


def read_collectives(path, backend=None):
    rows = []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"collectives {path}: {e.strerror}") from None
    with f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                r = json.loads(line)
                rows.append((str(r["backend"]), str(r["op"]), int(r["ranks"]), float(r["bytes"]),
                             float(r["time_us"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise UsageError(f"collectives {path}:{i}: not a bench-collectives --json line "
                                 f"({e.__class__.__name__}: {e})") from None
    ar = [r for r in rows if r[1] == "all_reduce" and r[2] >= 2 and r[3] > 0 and r[4] > 0]
    backends = sorted({r[0] for r in ar})
    if not ar:
        raise UsageError(f"collectives {path}: no all_reduce measurements at 2 or more ranks")
    if backend is None:
        if len(backends) > 1:
            raise UsageError(f"collectives {path}: holds {', '.join(backends)}; pick one with "
                             "--backend")
        backend = backends[0]
    by_n = {}
    for b, _, n, nbytes, t in ar:
        if b == backend:
            by_n.setdefault(n, []).append((nbytes * bus_factor("all_reduce", n), t))
    if not by_n:
        raise UsageError(f"collectives {path}: no {backend} all_reduce rows")
    return FittedAllReduce({n: fit_alpha_beta(p) for n, p in by_n.items()}, backend)


class H100InfiniBand:
    """Hierarchical all-reduce over n GPUs, g per node (k = n/g nodes): reduce-scatter within the
    node over NVLink, all-reduce of the node's 1/g share across nodes over InfiniBand (ring or
    tree, whichever is faster at this size, as NCCL's tuner chooses), all-gather within the
    node. The three run one after another (NCCL pipelines them, so this is an upper bound)."""
    backend = "nccl"

    def __init__(self, gpus_per_node):
        self.g = gpus_per_node
        self.label = f"H100 x{gpus_per_node} per node + NDR InfiniBand"

    def _intra(self, nbytes, g):  # reduce-scatter or all-gather over g GPUs of one node
        return (g - 1) * NVLINK_HOP_US + nbytes * (g - 1) / g / (NVLINK_BUSBW_GBPS * 1e3)

    def _inter(self, nbytes, k):  # all-reduce of nbytes across k nodes, one NIC per GPU
        if k <= 1:
            return 0.0
        ring = 2 * (k - 1) * IB_RING_HOP_US + 2 * (k - 1) / k * nbytes / (IB_BW_GBPS * 1e3)
        tree = 2 * math.ceil(math.log2(k)) * IB_TREE_HOP_US + \
            2 * nbytes / (TREE_BW_EFFICIENCY * IB_BW_GBPS * 1e3)
        return min(ring, tree)

    def cost_us(self, nbytes, n):
        if n <= 1 or nbytes <= 0:
            return 0.0
        if n <= self.g:  # one node: a ring all-reduce over NVLink
            return COLL_BASE_US + 2 * (n - 1) * NVLINK_HOP_US + \
                2 * (n - 1) / n * nbytes / (NVLINK_BUSBW_GBPS * 1e3)
        k = math.ceil(n / self.g)
        return COLL_BASE_US + 2 * self._intra(nbytes, self.g) + self._inter(nbytes / self.g, k)

    def latency_us(self, n):
        return self.cost_us(1e-9, n) if n > 1 else 0.0

    def describe(self):
        return (f"h100-ib preset: {self.g} H100 per node, NVLink busbw {NVLINK_BUSBW_GBPS:g} GB/s,"
                f" NDR InfiniBand {IB_BW_GBPS:g} GB/s per GPU, hierarchical all-reduce")


# --- The step -------------------------------------------------------------------------------
@dataclass
class Result:
    step_ms: float
    compute_ms: float
    comm_ms: float  # every bucket's all-reduce, end to end
    exposed_ms: float  # what the exchange adds to the step
    tail: dict = field(default_factory=dict)  # where the exposed time comes from


def simulate_step(prof, net, n, bucket_bytes, overlap):
    """[Gradient buckets] on one step: the last micro-batch's backward finishes the head, then
    block L-1 down to block 0, then the embeddings; each finish moves the frontier down; a bucket
    is issued once the frontier reaches its offset (the tied wte only at the end) and buckets run
    one after another on one channel. overlap is the share of the overlap that the hardware
    delivers: 1 on a GPU (NCCL on its own stream), 0 on the CPU path (MPI's copies and sums take
    the cores that compute uses), so there every bucket's time adds to the step."""
    sh = prof.shape
    compute = prof.compute_ms()
    plan = plan_buckets(sh.params, bucket_bytes)
    costs = [net.cost_us(c * GRAD_BYTES, n) / 1e3 for _, c in plan]
    comm = sum(costs)
    # (time since backward began, frontier) after each part of backward.
    t = prof.bwd_head
    frontier = [(t, sh.ln_f_offset)]
    for layer in reversed(range(sh.n_layer)):
        t += prof.bwd_blocks[layer]
        frontier.append((t, sh.block_offset(layer)))
    t_end = t + prof.bwd_embed
    frontier.append((t_end, 0))
    free, f, backlog, at_end = 0.0, 0, 0.0, 0.0
    for (offset, _), cost in zip(plan, costs):
        while frontier[f][1] > offset:
            f += 1
        ready = frontier[f][0]
        if ready >= t_end:  # final only when backward is done: the embeddings
            if at_end == 0:  # what the blocks' buckets still hold the channel for
                backlog = max(0.0, free - t_end)
            at_end += cost
        free = max(free, ready) + cost
    ideal = max(0.0, free - t_end)
    exposed = overlap * ideal + (1 - overlap) * comm
    nb = len(plan)
    tail = dict(buckets=nb, latency_ms=nb * net.latency_us(n) / 1e3, end_ms=at_end,
                backlog_ms=max(0.0, backlog), backward_ms=t_end)
    return Result(compute + exposed, compute, comm, exposed, tail)


def default_overlap(net):
    return 0.0 if net.backend == "mpi" else 1.0


# --- predict --------------------------------------------------------------------------------
def predict(args):
    net = make_network(args)
    overlap = args.overlap_efficiency if args.overlap_efficiency is not None else \
        default_overlap(net)
    tr = read_trace(args.trace) if args.trace else None
    gpu_target = net.backend == "nccl"
    use_flops = args.mfu is not None or tr is None or (gpu_target and tr.device != "cuda")
    mfu = args.mfu if args.mfu is not None else 0.40
    notes = []
    if use_flops and args.mfu is None:
        notes.append("MFU 40% assumed" + (f" (the trace is from the {tr.device})" if tr else "")
                     + "; pass --mfu to change it")
    base = profile_from_trace(tr) if tr else None
    micro = args.micro_batch or (tr.micro_batch if tr and not use_flops else 16)
    accum = args.accum_steps or (tr.accum if tr and not use_flops else 1)
    shapes = []
    for name in (x.strip() for x in args.shapes.split(",") if x.strip()):
        if name == "trace":
            if not tr:
                raise UsageError("--shapes trace needs --trace")
            shapes.append(tr.shape)
        else:
            shapes.append(named_shape(name, args.seq_len, args.vocab_size))

    def profile(shape):
        if use_flops:
            return flops_profile(shape, micro, accum, mfu, args.peak_tflops, args.hbm_tbps,
                                 args.overhead_ms)
        return base.scaled(shape, micro, accum)
    gpus = parse_ints(args.gpus, "--gpus")
    buckets = parse_floats(args.bucket_mb, "--bucket-mb")
    rows = []
    for shape in shapes:
        prof = profile(shape)
        one = prof.compute_ms()  # 1 GPU: nothing to exchange
        for mb in buckets:
            for n in gpus:
                r = simulate_step(prof, net, n, mib_to_bytes(mb), overlap)
                rows.append(dict(shape=shape.name, params=shape.params, gpus=n, bucket_mb=mb,
                                 step_ms=r.step_ms, compute_ms=r.compute_ms, comm_ms=r.comm_ms,
                                 exposed_ms=r.exposed_ms,
                                 hidden_pct=max(0.0, 100 * (1 - r.exposed_ms / r.comm_ms))
                                 if r.comm_ms > 0 else None,
                                 efficiency_pct=100 * one / r.step_ms))
    if not shapes:
        raise UsageError("--shapes is empty")
    p0 = profile(shapes[0])
    if base and not use_flops:
        peak = tr.other.get("peak_flops")
        traced = f", MFU {100 * base.mfu(peak):.1f}% of its peak_flops, kept for every shape" \
            if isinstance(peak, (int, float)) and peak > 0 else ""
        print(f"compute: {base.source}{traced}")
    else:
        print(f"compute: {p0.source}" + (f"; {'; '.join(notes)}" if notes else ""))
    print(f"  per GPU: micro-batch {micro} x {p0.shape.seq_len} tokens, accumulation {accum};"
          f" {shapes[0].name}: forward {p0.forward:.2f} ms, backward {p0.backward:.2f} ms,"
          f" optimizer {p0.optimizer:.2f} ms, other {p0.data_wait + p0.other:.2f} ms per step")
    print(f"network: {net.describe()}")
    print(f"overlap efficiency {overlap:g} ("
          + ("GPU: NCCL runs on its own stream beside compute" if overlap == 1 else
             "CPU path: MPI shares the cores with compute, so the exchange adds to the step"
             if overlap == 0 else "partial") + ")")
    print_table(rows)
    write_outputs(args, rows)
    print(verdict(profile, net, args, buckets, overlap))
    if args.out_png:
        plot(args, shapes, profile, net, gpus, overlap)
    return 0


def parse_ints(text, flag):
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes a comma-separated list of whole numbers: '{text}'") \
            from None
    if not vals or min(vals) < 1:
        raise UsageError(f"{flag} needs numbers >= 1: '{text}'")
    return vals


def parse_floats(text, flag):
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes a comma-separated list of numbers: '{text}'") from None
    if not vals or min(vals) < 0:
        raise UsageError(f"{flag} needs numbers >= 0: '{text}'")
    return vals


def make_network(args):
    if args.collectives:
        return read_collectives(args.collectives, args.backend)
    if args.network == "h100-ib":
        if args.gpus_per_node < 1:
            raise UsageError("--gpus-per-node must be >= 1")
        return H100InfiniBand(args.gpus_per_node)
    raise UsageError("give --collectives FILE (from bench-collectives --json) or --network h100-ib")


COLUMNS = [("shape", "shape", "{:<6}"), ("gpus", "gpus", "{:>5}"),
           ("bucket MiB", "bucket_mb", "{:>10g}"), ("step ms", "step_ms", "{:>9.2f}"),
           ("comm ms", "comm_ms", "{:>9.2f}"), ("exposed ms", "exposed_ms", "{:>10.2f}"),
           ("hidden %", "hidden_pct", "{:>8.1f}"), ("efficiency %", "efficiency_pct", "{:>12.1f}")]


def print_table(rows):
    widths = [6 if k == "shape" else max(len(h), len(fmt.format(0))) for h, k, fmt in COLUMNS]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    print(line([h for h, _, _ in COLUMNS]))
    for r in rows:
        print(line(["-" if r[k] is None else fmt.format(r[k]).strip() for _, k, fmt in COLUMNS]))


def open_out(path, flag):
    try:
        return open(path, "w", newline="", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"{flag} {path}: {e.strerror}") from None


def write_outputs(args, rows):
    keys = ["shape", "params", "gpus", "bucket_mb", "step_ms", "compute_ms", "comm_ms",
            "exposed_ms", "hidden_pct", "efficiency_pct"]
    if args.out_csv:
        with open_out(args.out_csv, "--out-csv") as f:
            w = csv.writer(f)
            w.writerow(keys)
            for r in rows:
                w.writerow(["" if r[k] is None else round(r[k], 6) if isinstance(r[k], float)
                            else r[k] for k in keys])
    if args.out_md:
        with open_out(args.out_md, "--out-md") as f:
            f.write("| " + " | ".join(h for h, _, _ in COLUMNS) + " |\n")
            f.write("|" + "|".join("---" if k == "shape" else "---:" for _, k, _ in COLUMNS)
                    + "|\n")
            for r in rows:
                f.write("| " + " | ".join("-" if r[k] is None else fmt.format(r[k]).strip()
                                          for _, k, fmt in COLUMNS) + " |\n")


def verdict(profile, net, args, buckets, overlap, goal=90.0):
    """One line on 124M at 1024 GPUs with overlap: the efficiency, or what holds it back."""
    n = 1024
    shape = named_shape("124M", args.seq_len, args.vocab_size)
    prof = profile(shape)
    sizes = [b for b in buckets if b > 0] or [25.0]
    one = prof.compute_ms()
    best = max(sizes, key=lambda mb: one / simulate_step(prof, net, n, mib_to_bytes(mb),
                                                         overlap).step_ms)
    r = simulate_step(prof, net, n, mib_to_bytes(best), overlap)
    eff = 100 * one / r.step_ms
    where = f"{net.g} per node" if hasattr(net, "g") else "one-level fit"
    head = (f"verdict: 124M at {n} GPUs ({where}), {best:g} MiB buckets overlapped: "
            f"efficiency {eff:.1f}% (goal >= {goal:g}%)")
    t = r.tail
    wte_mb = shape.vocab * shape.d_model * GRAD_BYTES / 1e6
    why = []
    latency_bound = t["latency_ms"] > 0.5 * r.comm_ms
    bw = "" if latency_bound else "bandwidth-bound: "
    if latency_bound:
        why.append(f"latency-bound: {t['buckets']} buckets x {net.latency_us(n):.0f} us of "
                   f"latency = {t['latency_ms']:.1f} ms of the {r.comm_ms:.1f} ms exchange "
                   "(larger buckets help)")
    if overlap < 1:
        why.append(f"the exchange ({r.comm_ms:.1f} ms) does not overlap compute "
                   f"(overlap efficiency {overlap:g})")
    if overlap > 0 and t["end_ms"] >= 0.25 * r.exposed_ms:
        why.append(f"{bw}the embedding buckets at the end of backward: {t['end_ms']:.1f}"
                   f" ms of the {r.exposed_ms:.1f} ms exposed is wte ({wte_mb:.0f} MB, tied to the"
                   " head, final only when the input embedding's backward is done) and wpe, which"
                   " cannot overlap")
    if overlap > 0 and t["backlog_ms"] >= 0.25 * r.exposed_ms:
        why.append(f"{bw}the blocks' buckets outlast backward ({t['backward_ms']:.1f}"
                   f" ms) by {t['backlog_ms']:.1f} ms")
    if not why:
        why.append(f"{r.exposed_ms:.1f} ms exposed of {r.step_ms:.1f} ms")
    return head + (": met; what is left: " if eff >= goal else ": not met; ") + "; ".join(why)


def plot(args, shapes, profile, net, gpus, overlap):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    mb = args.plot_bucket_mb
    for i, shape in enumerate(shapes):
        prof = profile(shape)
        one = prof.compute_ms()
        for b, style, label in ((mb, "-", f"{mb:g} MiB buckets, overlapped"),
                                (0, "--", "flat, after backward")):
            eff = [100 * one / simulate_step(prof, net, n, mib_to_bytes(b), overlap).step_ms
                   for n in gpus]
            ax.plot(gpus, eff, style, color=f"C{i}", marker="o", markersize=3,
                    label=f"{shape.name}: {label}")
    ax.axhline(90, color="gray", linewidth=0.8, linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_xticks(gpus)
    ax.set_xticklabels([str(n) for n in gpus], fontsize=8)
    ax.set_xlabel("GPUs (weak scaling, fixed micro-batch per GPU)")
    ax.set_ylabel("efficiency, % of the 1-GPU step rate")
    ax.set_title(f"Weak scaling, {net.label}, overlap efficiency {overlap:g}",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with open_out(args.out_png, "--out-png") as f:  # a clear error for a bad path
        f.close()
    fig.savefig(args.out_png, dpi=120)
    plt.close(fig)


# --- validate -------------------------------------------------------------------------------
def validate(args):
    net = make_network(args)
    overlap = args.overlap_efficiency if args.overlap_efficiency is not None else \
        default_overlap(net)
    tr = read_trace(args.trace)
    base = profile_from_trace(tr)
    meas = read_trace(args.measured) if args.measured else None
    if meas:
        if (meas.shape.vocab, meas.shape.seq_len, meas.shape.d_model, meas.shape.n_layer) != \
                (tr.shape.vocab, tr.shape.seq_len, tr.shape.d_model, tr.shape.n_layer):
            raise UsageError(f"{args.trace} and {args.measured} trace different models")
        n, micro, accum, bucket_bytes = meas.world_size, meas.micro_batch, meas.accum, \
            meas.bucket_bytes
        measured, nsteps = measured_step_ms(meas)
        what = f"{os.path.basename(args.measured)}, median of {nsteps} steps"
    else:
        n = args.ranks
        micro = args.micro_batch or tr.micro_batch
        accum = args.accum_steps or tr.accum
        bucket_bytes = mib_to_bytes(args.bucket_mb) if args.bucket_mb is not None else \
            tr.bucket_bytes
        measured, what = args.measured_step_ms, "--measured-step-ms"
    prof = base if (micro, accum) == (tr.micro_batch, tr.accum) else \
        base.scaled(tr.shape, micro, accum)
    r = simulate_step(prof, net, n, bucket_bytes, overlap)
    err = 100 * (r.step_ms - measured) / measured
    plan = plan_buckets(tr.shape.params, bucket_bytes)
    print(f"validate: {n} ranks, micro-batch {micro} x {tr.shape.seq_len} tokens, accumulation "
          f"{accum}, {tr.shape.params} parameters in {len(plan)} bucket(s) of "
          f"{bucket_bytes / MIB:g} MiB")
    print(f"  network: {net.describe()}; overlap efficiency {overlap:g}")
    rows = [(f"compute, from {base.source}", r.compute_ms),
            ("all-reduce of every bucket", r.comm_ms),
            ("exposed: what the exchange adds to the step", r.exposed_ms),
            ("predicted step", r.step_ms), (f"measured step ({what})", measured)]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}} {v:10.2f} ms")
    if meas:
        by_bucket = {}
        kinds = {k for s in meas.steps for k, _, _ in s.buckets}
        kind = "gpu bucket" if "gpu bucket" in kinds else "host bucket"
        for s in meas.steps:
            for k, i, d in s.buckets:
                if k == kind:
                    by_bucket.setdefault(i, []).append(d)
        if by_bucket:
            tot = sum(statistics.median(v) for v in by_bucket.values())
            cpu = "; on the CPU they include the compute they wait behind" \
                if meas.device == "cpu" else ""
            print(f"  measured: all-reduce spans {tot:.2f} ms (sum of medians, issue to "
                  f"completion{cpu}), exchange wait "
                  f"{_median([s.total('exchange wait') for s in meas.steps]):.2f} ms")
    ok = abs(err) <= args.tolerance
    print(f"  error {err:+.1f}% ({'within' if ok else 'OUTSIDE'} the {args.tolerance:g}% "
          "tolerance)")
    return 0 if ok else 1


# --- command line -----------------------------------------------------------------------------
DESCRIPTION = __doc__
EPILOG = """\
modes:
  predict   step time, exposed communication and weak-scaling efficiency for each shape, GPU
            count and bucket size; a table, a verdict line for 124M at 1024 GPUs, and
            optionally CSV, markdown and a PNG plot
  validate  the step at N ranks predicted from a 1-rank trace and measured all-reduce times,
            against a measured N-rank trace (or --measured-step-ms); exit 1 when the error is
            beyond --tolerance

inputs:
  --trace      train --trace FILE (Chrome trace-event JSON). Medians over its steps (step 1,
               warm-up, is left out) of data wait, forward and backward per block, head and
               embedding, optimizer, and the rest of the step; validation and checkpoint
               snapshots are not part of a step. On a GPU trace the compute stream's spans are
               used and split into blocks by FLOPs.
  --collectives  bench-collectives --json FILE: time = alpha + bytes*2(n-1)/n/busbw fitted to
               the all_reduce lines (nccl-tests' busbw) per rank count.
  --network h100-ib  no file: 8 H100 per node over NVLink, 400 Gb/s NDR InfiniBand per GPU,
               hierarchical all-reduce (constants and sources in the script and the doc).

compute for other shapes: the trace's per-part times scaled by FLOPs (6N + 6LCT per token, as
llm.c counts) at the trace's own rates; or, with --mfu (and by default for GPU targets when the
trace is not from a GPU), FLOPs at that share of --peak-tflops. Weak scaling: the micro-batch
per GPU stays fixed; efficiency(n) = step(1) / step(n).

overlap: 1 on GPUs (NCCL on its own stream), 0 for an MPI fit (the CPU path has no idle core:
MPI's copies and rank-order sums run on the compute cores, so the exchange adds to the step).
--overlap-efficiency E in between blends the two: exposed = E*overlapped + (1-E)*serial.

examples:
  scripts/scaling-model.py predict --trace one.json --network h100-ib --out-png scaling.png
  scripts/scaling-model.py validate --trace one.json --collectives coll.jsonl \\
      --measured two.json
"""


def build_parser():
    p = argparse.ArgumentParser(prog="scaling-model.py", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True, metavar="{predict,validate}")

    def network_options(q):
        g = q.add_mutually_exclusive_group()
        g.add_argument("--collectives", metavar="FILE",
                       help="bench-collectives --json output (JSON lines)")
        g.add_argument("--network", choices=["h100-ib"],
                       help="preset network instead of measurements")
        q.add_argument("--backend", choices=["mpi", "nccl"],
                       help="which backend's lines of --collectives to fit (needed if both)")
        q.add_argument("--gpus-per-node", type=int, default=8, metavar="G",
                       help="GPUs per node for the preset (default 8)")
        q.add_argument("--overlap-efficiency", type=float, metavar="E",
                       help="share of the ideal overlap achieved, 0..1 (default: 1 for NCCL and "
                            "the preset, 0 for MPI)")
        q.add_argument("--micro-batch", type=int, metavar="B",
                       help="sequences per GPU per micro-batch (default: the trace's; 16 when "
                            "compute comes from --mfu)")
        q.add_argument("--accum-steps", type=int, metavar="A",
                       help="micro-batches per step (default: the trace's; 1 with --mfu)")

    pr = sub.add_parser("predict", help="predict scaling", description=DESCRIPTION,
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("--trace", metavar="FILE", help="train --trace output (needed unless --mfu)")
    network_options(pr)
    pr.add_argument("--shapes", default="124M,350M,1.3B",
                    help="comma-separated: 124M, 350M, 1.3B, trace (default 124M,350M,1.3B)")
    pr.add_argument("--gpus", default=",".join(str(1 << i) for i in range(13)),
                    help="comma-separated GPU counts (default 1,2,4,...,4096)")
    pr.add_argument("--bucket-mb", default="0,1,5,25,100",
                    help="comma-separated bucket sizes in MiB, 0 = flat (default 0,1,5,25,100)")
    pr.add_argument("--seq-len", type=int, default=1024, help="T for the named shapes (1024)")
    pr.add_argument("--vocab-size", type=int, default=GPT2_VOCAB,
                    help=f"V for the named shapes ({GPT2_VOCAB})")
    pr.add_argument("--mfu", type=float, help="compute from FLOPs at this MFU (0..1)")
    pr.add_argument("--peak-tflops", type=float, default=H100_PEAK_TFLOPS,
                    help=f"per-GPU dense peak for --mfu (default {H100_PEAK_TFLOPS:g}: H100 bf16)")
    pr.add_argument("--hbm-tbps", type=float, default=H100_HBM_TBPS,
                    help=f"memory bandwidth for AdamW with --mfu (default {H100_HBM_TBPS:g})")
    pr.add_argument("--overhead-ms", type=float, default=0.0,
                    help="per-step host overhead with --mfu (default 0)")
    pr.add_argument("--out-csv", metavar="FILE", help="also write the table as CSV")
    pr.add_argument("--out-md", metavar="FILE", help="also write the table as markdown")
    pr.add_argument("--out-png", metavar="FILE", help="plot efficiency against GPUs")
    pr.add_argument("--plot-bucket-mb", type=float, default=25.0,
                    help="the overlapped bucket size plotted against flat (default 25)")

    va = sub.add_parser("validate", help="check a prediction against a measured run",
                        description=DESCRIPTION, epilog=EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    va.add_argument("--trace", required=True, metavar="FILE", help="a 1-rank train --trace")
    network_options(va)
    m = va.add_mutually_exclusive_group(required=True)
    m.add_argument("--measured", metavar="FILE", help="the N-rank train --trace to predict")
    m.add_argument("--measured-step-ms", type=float, metavar="MS",
                   help="a measured N-rank step time instead of a trace")
    va.add_argument("--ranks", type=int, default=2,
                    help="N with --measured-step-ms (default 2)")
    va.add_argument("--bucket-mb", type=float,
                    help="bucket size with --measured-step-ms (default: the trace's)")
    va.add_argument("--tolerance", type=float, default=15.0,
                    help="allowed error in percent (default 15)")
    return p


def check_args(args):
    if args.overlap_efficiency is not None and not 0 <= args.overlap_efficiency <= 1:
        raise UsageError("--overlap-efficiency must be in [0, 1]")
    for flag in ("micro_batch", "accum_steps"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1")
    if args.mode == "predict":
        if args.mfu is not None and not 0 < args.mfu <= 1:
            raise UsageError("--mfu must be in (0, 1]")
        if args.seq_len < 1 or args.vocab_size < 1 or args.peak_tflops <= 0 or \
                args.hbm_tbps <= 0 or args.overhead_ms < 0:
            raise UsageError("--seq-len, --vocab-size, --peak-tflops and --hbm-tbps must be "
                             "positive, --overhead-ms >= 0")
        if not args.trace and args.mfu is None:
            raise UsageError("predict needs --trace, or --mfu for compute from FLOPs alone")
        for flag in ("out_csv", "out_md", "out_png"):  # before any work, not after it
            path = getattr(args, flag)
            if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                raise UsageError(f"--{flag.replace('_', '-')} {path}: no such directory")
    else:
        if args.measured_step_ms is not None and args.measured_step_ms <= 0:
            raise UsageError("--measured-step-ms must be positive")
        if args.ranks < 1 or args.tolerance < 0:
            raise UsageError("--ranks must be >= 1 and --tolerance >= 0")
        if args.bucket_mb is not None and args.bucket_mb < 0:
            raise UsageError("--bucket-mb must be >= 0")
    if not args.collectives and not args.network:
        raise UsageError("give --collectives FILE (from bench-collectives --json) or "
                         "--network h100-ib")


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        return predict(args) if args.mode == "predict" else validate(args)
    except UsageError as e:
        print(f"scaling-model: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
