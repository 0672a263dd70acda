#!/usr/bin/env bash
# [Trace file] end to end on 2 ranks: the file is valid JSON that Perfetto and chrome://tracing
# read (traceEvents with ph, pid, tid, ts), one process per rank with the named spans of a step
# (data wait, forward and backward per block, every bucket's all-reduce as an async pair, the
# exchange wait, the step votes, the optimizer, validation, the checkpoint snapshot and its
# background write), only the --trace-steps window, and in every traced step a bucket whose
# all-reduce starts before that step's last backward ends (the overlap). Tracing does not
# change the numbers: the parameter hash equals an untraced run's.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
words_shards 8 2 60 0.2
args=(--data "$work/data/train" --val-data "$work/data/val" --val-every 3 --val-samples 8
      --seq-len 16 --d-model 32 --n-layer 3 --n-head 4 --steps 6 --global-batch 8
      --micro-batch 2 --threads 1 --bucket-mb 0.004 --ckpt-dir "$work/ck" --ckpt-every 3)
timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
  --trace "$work/trace.json" --trace-steps 2- > "$work/traced.log"
rm -rf "$work/ck"
timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
  > "$work/plain.log"
rm -rf "$work/ck"
timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
  --trace "$work/window.json" --trace-steps 3-4 > "$work/window.log"
hash_of() { grep -o 'parameter hash [0-9a-f]*' "$1"; }
[[ "$(hash_of "$work/traced.log")" == "$(hash_of "$work/plain.log")" ]] || {
  echo "tracing changed the result: $(hash_of "$work/traced.log") vs $(hash_of "$work/plain.log")"
  exit 1
}
"$py" - "$work/trace.json" "$work/window.json" <<'PY'
import json, sys
w = json.load(open(sys.argv[2]))
window = sorted({e["args"]["step"] for e in w["traceEvents"] if e["name"] == "step"})
assert window == [3, 4], f"--trace-steps 3-4 traced steps {window}"
t = json.load(open(sys.argv[1]))
assert t["otherData"]["world_size"] == 2 and t["otherData"]["trace_steps"] == [2, 0], t["otherData"]
ev = t["traceEvents"]
for e in ev:
    assert {"ph", "pid", "name"} <= e.keys(), e
    if e["ph"] != "M":
        assert isinstance(e["ts"], (int, float)) and "tid" in e, e
procs = {e["pid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
assert sorted(procs) == [0, 1] and procs[1].startswith("rank 1 ("), procs
threads = {(e["pid"], e["args"]["name"]) for e in ev if e["name"] == "thread_name"}
for r in (0, 1):
    for name in ("compute", "comm", "checkpoint writer"):
        assert (r, name) in threads, (r, name, threads)

need = ["step", "data wait", "forward", "backward", "embed fwd", "block 0 fwd", "block 2 fwd",
        "head fwd", "head bwd", "block 2 bwd", "block 0 bwd", "embed bwd", "exchange wait",
        "step votes", "optimizer", "validation", "checkpoint snapshot", "checkpoint write"]
for r in (0, 1):
    names = {e["name"] for e in ev if e["pid"] == r and e["ph"] == "X"}
    missing = [n for n in need if n not in names]
    assert not missing, f"rank {r} lacks spans {missing}"
    steps = sorted(e["args"]["step"] for e in ev if e["pid"] == r and e["name"] == "step")
    assert steps == [2, 3, 4, 5, 6], f"rank {r} traced steps {steps}, want the window 2-"

    # Async bucket spans pair up by id, begin before end.
    begins = {e["id"]: e for e in ev if e["pid"] == r and e["ph"] == "b"}
    ends = {e["id"]: e for e in ev if e["pid"] == r and e["ph"] == "e"}
    assert begins and begins.keys() == ends.keys(), (len(begins), len(ends))
    assert all(ends[i]["ts"] >= begins[i]["ts"] for i in begins)
    assert all(b["name"].startswith("all-reduce bucket ") and b["args"]["bytes"] > 0
               for b in begins.values())

    # Per traced step: a bucket starts before the step's last backward ends.
    for s in (e for e in ev if e["pid"] == r and e["name"] == "step"):
        lo, hi = s["ts"], s["ts"] + s["dur"]
        bwd = [e for e in ev if e["pid"] == r and e["name"] == "backward" and lo <= e["ts"] <= hi]
        last_bwd_end = max(e["ts"] + e["dur"] for e in bwd)
        starts = [b["ts"] for b in begins.values() if lo <= b["ts"] <= hi]
        assert starts and min(starts) < last_bwd_end, \
            f"rank {r} step {s['args']['step']}: no bucket started before backward ended"
print(f"{len(ev)} events; spans named on both ranks; buckets overlap backward")
PY
