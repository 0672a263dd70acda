#!/usr/bin/env python3
"""Synthetic inputs for scaling_model_test.sh: a train --trace file whose steps are built from
known compute and known all-reduce times, and bench-collectives --json lines of an exact
alpha-beta. Written apart from scripts/scaling-model.py (its own bucket plan and timeline), so
that the model is checked against an independent construction."""

import argparse
import json

MIB = 1 << 20


def layout(v, t, c, n_layer):
    """Offsets of [Parameter layout]: wte, wpe, blocks (12C^2 + 13C each), ln_f."""
    per_block = 12 * c * c + 13 * c
    blocks = [(v + t) * c + i * per_block for i in range(n_layer)]
    total = (v + t) * c + n_layer * per_block + 2 * c
    return blocks, blocks[-1] + per_block, total


def buckets(total, bucket_bytes):
    """From the end: 1 MiB first (or the bucket size if smaller), then bucket_bytes each."""
    if bucket_bytes == 0:
        return [(0, total)]
    out, end = [], total
    size = max(1, min(MIB, bucket_bytes) // 4)
    while end > 0:
        take = min(size, end)
        out.append((end - take, take))
        end -= take
        size = max(1, bucket_bytes // 4)
    return out


def allreduce_us(nbytes, n, alpha, busbw):
    return 0.0 if n < 2 else alpha + nbytes * 2 * (n - 1) / n / (busbw * 1e3)


def write_trace(a):
    v, t, c, L = a.vocab, a.seq_len, a.d_model, a.n_layer
    blocks, ln_f, total = layout(v, t, c, L)
    bucket_bytes = int(a.bucket_mb * MIB)
    plan = buckets(total, bucket_bytes)
    ev = []
    for r in range(a.world_size):
        ev.append({"ph": "M", "name": "process_name", "pid": r, "args": {"name": f"rank {r} (x)"}})
        for tid, name in ((1, "compute"), (2, "comm"), (4, "io")) + \
                (((5, "gpu compute stream"),) if a.device == "cuda" else ()):
            ev.append({"ph": "M", "name": "thread_name", "pid": r, "tid": tid,
                       "args": {"name": name}})
    us = 1000.0  # ms -> us
    origin = 0.0
    for step in range(a.first_step, a.first_step + a.steps):
        slow = 3.0 if step == 1 else 1.0  # warm-up: the model must leave it out
        for r in range(a.world_size):
            ts = origin

            def span(name, dur_ms, tid=1, args=None):
                e = {"ph": "X", "name": name, "cat": "run", "pid": r, "tid": tid, "ts": ts,
                     "dur": dur_ms * us}
                if args:
                    e["args"] = args
                ev.append(e)
            span("data wait", a.data_wait_ms)
            ts += a.data_wait_ms * us
            bwd_end = bwd_start = 0.0
            for m in range(a.accum):
                f0 = ts
                if not a.no_parts:
                    span("embed fwd", a.embed_fwd_ms * slow)
                ts += (a.embed_fwd_ms * slow + a.gap_ms) * us
                for i in range(L):
                    if not a.no_parts:
                        span(f"block {i} fwd", a.block_fwd_ms * slow, args={"block": i})
                    ts += (a.block_fwd_ms * slow + a.gap_ms) * us
                if not a.no_parts:
                    span("head fwd", a.head_fwd_ms * slow)
                ts += a.head_fwd_ms * slow * us
                fwd_dur = (ts - f0) / us
                ts, ts_f = f0, ts
                span("forward", fwd_dur, args={"step": step, "micro": m})
                if a.device == "cuda":
                    span("forward", fwd_dur, tid=5)
                ts = ts_f
                b0 = ts
                ready = []  # (time, frontier) as backward moves down the buffer
                if not a.no_parts:
                    span("head bwd", a.head_bwd_ms * slow)
                ts += a.head_bwd_ms * slow * us
                ready.append((ts, ln_f))
                ts += a.gap_ms * us
                for i in reversed(range(L)):
                    if not a.no_parts:
                        span(f"block {i} bwd", a.block_bwd_ms * slow, args={"block": i})
                    ts += a.block_bwd_ms * slow * us
                    ready.append((ts, blocks[i]))
                    ts += a.gap_ms * us
                if not a.no_parts:
                    span("embed bwd", a.embed_bwd_ms * slow)
                ts += a.embed_bwd_ms * slow * us
                ready.append((ts, 0))
                bwd_dur = (ts - b0) / us
                ts, ts_b = b0, ts
                span("backward", bwd_dur, args={"step": step, "micro": m})
                if a.device == "cuda":
                    span("backward", bwd_dur, tid=5)
                ts = ts_b
                bwd_start, bwd_end, last_ready = b0, ts, ready
            # The exchange of the last micro-batch: overlapped (each bucket issued when its
            # offset is final, one at a time) or, on the CPU path, all of it after backward.
            free = bwd_end if not a.overlap else bwd_start
            for k, (off, cnt) in enumerate(plan):
                t_ready = next(tm for tm, fr in last_ready if fr <= off) if a.overlap else bwd_end
                start = max(free, t_ready)
                free = start + allreduce_us(cnt * 4, a.world_size, a.alpha_us, a.busbw) \
                    if a.world_size > 1 else start
                ident = f"{r}:{step}:{k}"
                common = {"name": f"all-reduce bucket {k}", "cat": "comm", "id": ident,
                          "pid": r, "tid": 2}
                ev.append(dict(common, ph="b", ts=start,
                               args={"bytes": cnt * 4, "offset": off, "count": cnt}))
                ev.append(dict(common, ph="e", ts=free))
            wait = max(0.0, free - bwd_end)
            span("exchange wait", wait / us)
            ts += wait
            span("step votes", 0.01)
            ts += 0.01 * us
            span("optimizer", a.optimizer_ms)
            if a.device == "cuda":
                span("optimizer", a.optimizer_ms, tid=5)
            ts += a.optimizer_ms * us
            if step == a.first_step + 1:  # periodic work inside a step: not a training step
                span("validation", 50.0)
                ts += 50.0 * us
            ts += a.other_ms * us
            ev.append({"ph": "X", "name": "step", "cat": "run", "pid": r, "tid": 1,
                       "ts": origin, "dur": ts - origin, "args": {"step": step}})
            ev.append({"ph": "i", "name": "unknown instant", "pid": r, "tid": 1, "ts": origin,
                       "s": "t"})  # an event kind the model does not know
            end = ts
        origin = end + 100.0
    doc = {"displayTimeUnit": "ms",
           "otherData": {"tool": "dpt train", "world_size": a.world_size, "device": a.device,
                         "precision": "bf16" if a.device == "cuda" else "fp32",
                         "model": {"vocab_size": v, "seq_len": t, "d_model": c, "n_layer": L,
                                   "n_head": a.n_head, "params": total},
                         "global_batch": a.micro_batch * a.accum * a.world_size,
                         "micro_batch": a.micro_batch, "accum_steps": a.accum,
                         "bucket_bytes": bucket_bytes,
                         "peak_flops": 989e12 if a.device == "cuda" else 1e11,
                         "clock_offsets_us": [0.0] * a.world_size},
           "traceEvents": ev}
    with open(a.out, "w") as f:
        json.dump(doc, f)
    # What a step costs here, for the test: compute alone and the comm on top.
    compute = a.data_wait_ms + a.accum * (
        a.embed_fwd_ms + L * a.block_fwd_ms + a.head_fwd_ms + a.head_bwd_ms + L * a.block_bwd_ms
        + a.embed_bwd_ms + 2 * (L + 1) * a.gap_ms) + 0.01 + a.optimizer_ms + a.other_ms
    print(json.dumps({"params": total, "compute_ms": compute, "buckets": len(plan),
                      "step_ms": compute + max(0.0, free - bwd_end) / us}))


def write_collectives(a):
    with open(a.out, "w") as f:
        f.write("# synthetic: time = alpha + bytes * 2(n-1)/n / busbw\n")
        for e in range(12, 27, 2):
            nbytes = 1 << e
            tm = allreduce_us(nbytes, a.ranks, a.alpha_us, a.busbw)
            algbw = nbytes / tm / 1e3
            f.write(json.dumps({"backend": a.backend, "op": "all_reduce", "ranks": a.ranks,
                                "bytes": nbytes, "time_us": tm, "algbw_GBps": algbw,
                                "busbw_GBps": algbw * 2 * (a.ranks - 1) / a.ranks}) + "\n")
            tm_rs = a.alpha_us + nbytes * (a.ranks - 1) / a.ranks / (a.busbw * 1e3)
            f.write(json.dumps({"backend": a.backend, "op": "reduce_scatter", "ranks": a.ranks,
                                "bytes": nbytes, "time_us": tm_rs}) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("trace")
    t.add_argument("out")
    for name, default in (("vocab", 512), ("seq-len", 64), ("d-model", 128), ("n-layer", 4),
                          ("n-head", 4), ("world-size", 1), ("micro-batch", 4), ("accum", 1),
                          ("steps", 6), ("first-step", 1)):
        t.add_argument("--" + name, type=int, default=default)
    for name, default in (("bucket-mb", 0.05), ("block-fwd-ms", 2.0), ("block-bwd-ms", 4.0),
                          ("head-fwd-ms", 0.5), ("head-bwd-ms", 1.0), ("embed-fwd-ms", 0.1),
                          ("embed-bwd-ms", 0.2), ("optimizer-ms", 3.0), ("data-wait-ms", 0.2),
                          ("other-ms", 0.3), ("alpha-us", 20.0), ("busbw", 5.0),
                          ("gap-ms", 0.05)):  # between the parts: callbacks, MPI_Test
        t.add_argument("--" + name, type=float, default=default)
    t.add_argument("--device", default="cpu")
    t.add_argument("--overlap", action="store_true", help="buckets run beside backward (GPU)")
    t.add_argument("--no-parts", action="store_true", help="no block/head/embed spans")
    c = sub.add_parser("collectives")
    c.add_argument("out")
    c.add_argument("--backend", default="mpi")
    c.add_argument("--ranks", type=int, default=2)
    c.add_argument("--alpha-us", type=float, default=20.0)
    c.add_argument("--busbw", type=float, default=5.0)
    a = p.parse_args()
    (write_trace if a.what == "trace" else write_collectives)(a)


if __name__ == "__main__":
    main()
