#!/usr/bin/env bash
# Checkpoint benchmark on a GPT-2-small-shaped model (123.7M parameters; a checkpoint holds
# params, AdamW m and v as float32: ~1.5 GB) on 1 rank:
#  - save: MB/s of the write (O_DIRECT pwrite + CRC-32C + fsync: the checkpoint event's write_s)
#    and end to end, sync and async, next to dd of as many bytes to a new file on the same disk
#    with conv=fsync, both through the page cache and with oflag=direct; "vs raw" divides by
#    the faster of the two;
#  - load: MB/s of the load of a resume (reading, checking and placing every tensor; train's
#    "loaded ... MB/s") and of `bin/ckpt verify`, next to dd of=/dev/null of the same files,
#    buffered and iflag=direct, each on a cold page cache (when this process may drop it: root);
#  - the training stall: steps of a few seconds, a checkpoint every 2 steps, async vs sync.
# Usage: scripts/bench-ckpt.sh   (env: BUILD_DIR, default build/; PYTHON, default
#        /usr/bin/python3; REPEATS, default 3; STEPS, default 10; GLOBAL_BATCH, default 8;
#        THREADS, default nproc; SETTLE seconds after dropping the cache, default 3;
#        KEEP=1 keeps data/bench-ckpt/work.PID with the checkpoints, metrics and logs)
# About 4 minutes on 2 cores, 3 GB free disk at most under data/bench-ckpt/.
# SETTLE: on a VM with free page reporting (Firecracker here) memory freed a moment ago is
# handed back to the host, and the next touch of it costs a host page fault (~0.4 GB/s here
# instead of several GB/s), which is what a buffered write of fresh page-cache pages meets;
# ours and raw therefore each start after the same pause.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
py="${PYTHON:-/usr/bin/python3}"
repeats="${REPEATS:-3}"
steps="${STEPS:-10}"
settle="${SETTLE:-3}"
[[ -x $build/bin/train && -x $build/bin/prepare-data ]] || BUILD_DIR="$build" "$root/scripts/build.sh"
corpus="$root/data/fortunes"
[[ -d $corpus/train ]] || BUILD_DIR="$build" "$root/scripts/fortunes-corpus.sh" "$corpus" >/dev/null
data="$corpus/train"
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
# On the disk of the repository, not /tmp (which may be tmpfs).
mkdir -p "$root/data/bench-ckpt"
work="$root/data/bench-ckpt/work.$$"
mkdir "$work"
cleanup() {
  if [[ ${KEEP:-0} == 1 ]]; then
    echo "bench-ckpt: kept $work" >&2
  else
    rm -rf "$work"
    rmdir "$root/data/bench-ckpt" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# GPT-2 small: V=50304 C=768 L=12 NH=12; T=64 and micro-batch 1 keep a step at a few seconds.
big=(--vocab-size 50304 --seq-len 64 --d-model 768 --n-layer 12 --n-head 12)
batch=(--global-batch "${GLOBAL_BATCH:-8}" --micro-batch 1)
train() {  # train LOG ARGS...
  local log=$1; shift
  mpiexec -n 1 --bind-to none "$build/bin/train" --data "$data" "${batch[@]}" \
    --threads "${THREADS:-$(nproc)}" --log-every 1000 "$@" > "$log" 2>&1 ||
    { cat "$log" >&2; exit 1; }
}
now() { date +%s%N; }
cold=0
if [[ -w /proc/sys/vm/drop_caches ]]; then cold=1; fi
drop() {  # cold page cache, then the same pause before ours and raw
  sync
  if ((cold)); then echo 3 > /proc/sys/vm/drop_caches; fi
  sleep "$settle"
}
src=$(df -P "$work" | awk 'NR == 2 {print $1}')
fstype=$(df -PT "$work" | awk 'NR == 2 {print $2}')
avail=$(df -Ph "$work" | awk 'NR == 2 {print $4}')
echo "$src $fstype $avail" > "$work/disk.txt"

# --- Training with a checkpoint every 2 steps, sync, then async (the default).
for mode in sync async; do
  echo "bench-ckpt: train $steps steps, checkpoint every 2, $mode" >&2
  a=$([[ $mode == async ]] && echo true || echo false)
  train "$work/$mode.log" "${big[@]}" --steps "$steps" --ckpt-dir "$work/ckpt-$mode" \
    --ckpt-every 2 --ckpt-async "$a" --metrics "$work/$mode.jsonl"
done
ckpt="$work/ckpt-async/$(cat "$work/ckpt-async/latest")"
rm -rf "$work/ckpt-sync"
bytes=$(du -cb "$ckpt"/* | tail -n 1 | cut -f 1)

# --- Raw write: as many bytes to a new file, the earlier ones kept (as --ckpt-keep keeps
# checkpoints), after the same pause as ours; buffered, then direct.
echo "bench-ckpt: raw write, dd buffered and oflag=direct, x$repeats" >&2
for i in $(seq "$repeats"); do
  for kind in buffered direct; do
    flag=()
    [[ $kind == direct ]] && flag=(oflag=direct)
    sync
    sleep "$settle"
    t0=$(now)
    dd if=/dev/zero of="$work/raw.$kind.$i" bs=64M count="$bytes" iflag=count_bytes \
      "${flag[@]}" conv=fsync status=none
    t1=$(now)
    echo "$bytes $((t1 - t0))" >> "$work/raw-write-$kind.txt"
  done
done
rm -f "$work"/raw.*

# --- Load, cold cache: resume of the big checkpoint (train reports the load's own time and
# stops once it is done: --stop-at-step at the checkpoint's step), dd of the same files
# (buffered and iflag=direct), bin/ckpt verify.
step=$(basename "$ckpt" | sed 's/^step_0*//')
echo "bench-ckpt: load, cold cache: resume, dd buffered, dd iflag=direct, ckpt verify;" \
  "1 warm-up + $repeats rounds" >&2
for i in $(seq 0 "$repeats"); do
  out() { if ((i > 0)); then echo "$1 $2" >> "$work/$3.txt"; fi; }
  drop; t0=$(now)
  train "$work/resume.log" "${big[@]}" --steps "$steps" --resume "$ckpt" --stop-at-step "$step"
  t1=$(now); out "$bytes" $((t1 - t0)) resume-wall
  grep -q "nothing left to train" "$work/resume.log" ||
    { echo "bench-ckpt: the resume did not stop after loading:" >&2; cat "$work/resume.log" >&2; exit 1; }
  load=$(sed -n 's/.*; loaded \([0-9.]*\) MB in \([0-9.]*\) s.*/\1 \2/p' "$work/resume.log")
  [[ -n $load ]] || { echo "bench-ckpt: no load time in:" >&2; cat "$work/resume.log" >&2; exit 1; }
  out "$(awk '{printf "%d", $1 * 1e6}' <<< "$load")" "$(awk '{printf "%d", $2 * 1e9}' <<< "$load")" load
  for kind in buffered direct; do
    flag=()
    [[ $kind == direct ]] && flag=(iflag=direct)
    drop; t0=$(now)
    for f in "$ckpt"/*; do dd if="$f" of=/dev/null bs=64M "${flag[@]}" status=none; done
    t1=$(now); out "$bytes" $((t1 - t0)) raw-read-$kind
  done
  drop; t0=$(now)
  "$build/bin/ckpt" verify "$ckpt" > "$work/verify.log" 2>&1 ||
    { cat "$work/verify.log" >&2; exit 1; }
  t1=$(now); out "$bytes" $((t1 - t0)) verify
done

"$py" - "$work" "$cold" "$repeats" "$settle" "${GLOBAL_BATCH:-8}" <<'PY'
import json, statistics, sys
work, cold, repeats, settle, gb = sys.argv[1], *map(int, sys.argv[2:])
med = statistics.median
def pairs(name):
    return [(int(b), int(ns) / 1e9) for b, ns in (l.split() for l in open(f"{work}/{name}.txt"))]
def rate(name):  # median MB/s
    return med(b / s / 1e6 for b, s in pairs(name))
src, fstype, avail = open(f"{work}/disk.txt").read().split()
runs = {}
for mode in ("sync", "async"):
    rows = [json.loads(l) for l in open(f"{work}/{mode}.jsonl")]
    steps = [r for r in rows if "event" not in r and r["step"] >= 2]  # step 1: warm-up
    events = [r for r in rows if r.get("event") == "checkpoint"]
    runs[mode] = dict(steps=steps, events=events,
                      plain=med(r["step_ms"] for r in steps if "ckpt_stall_ms" not in r),
                      stall=med(r["ckpt_stall_ms"] for r in steps if "ckpt_stall_ms" in r),
                      write_s=med(e["write_s"] for e in events),
                      publish=med(e["publish_ms"] for e in events),
                      e2e_s=med(e["stall_ms"] / 1e3 if mode == "sync" else
                                e["stall_ms"] / 1e3 + e["write_s"] + e["publish_ms"] / 1e3
                                for e in events))
nbytes = runs["async"]["events"][-1]["bytes"]
step_ms = runs["sync"]["plain"]  # one step with nothing written in the background
for r in runs.values():
    s = r["steps"]
    saves = sum("ckpt_stall_ms" in x for x in s)
    total = sum(x["step_ms"] + x.get("ckpt_stall_ms", 0) for x in s)
    r["cost"] = (total - len(s) * step_ms) / saves  # extra ms per save over plain steps

print(f"bench-ckpt: GPT-2 small shape (V=50304 T=64 C=768 L=12 NH=12, 123.7M params), 1 rank; "
      f"checkpoint {nbytes / 1e6:.0f} MB (params, AdamW m, v; float32)")
print(f"disk: {work} on {src} ({fstype}, {avail} free); "
      + (f"load rows on a cold cache (dropped, then {settle} s idle)" if cold
         else "load rows on a WARM cache (drop_caches not writable)")
      + f"; medians of {repeats}")
h = f"{'':<58} {'MB/s':>7} {'vs raw':>7}"
print(h)
print("-" * len(h))
raw_wb, raw_wd = rate("raw-write-buffered"), rate("raw-write-direct")
raw_w = max(raw_wb, raw_wd)
print(f"{'save  raw: dd if=/dev/zero conv=fsync, new file, buffered':<58} {raw_wb:>7.0f} "
      f"{raw_wb / raw_w:>7.2f}")
print(f"{'      raw: the same with oflag=direct':<58} {raw_wd:>7.0f} {raw_wd / raw_w:>7.2f}")
for mode in ("sync", "async"):
    r = runs[mode]
    w, e = nbytes / r["write_s"] / 1e6, nbytes / r["e2e_s"] / 1e6
    print(f"{'      ours ' + mode + ': write (O_DIRECT pwrite + CRC + fsync)':<58} {w:>7.0f} "
          f"{w / raw_w:>7.2f}")
    what = "the stall" if mode == "sync" else "stall + write + publish"
    print(f"{'      ours ' + mode + ': end to end (' + what + ')':<58} {e:>7.0f} {e / raw_w:>7.2f}")
raw_rb, raw_rd = rate("raw-read-buffered"), rate("raw-read-direct")
raw_r = max(raw_rb, raw_rd)
print(f"{'load  raw: dd of=/dev/null, every file, buffered':<58} {raw_rb:>7.0f} {raw_rb / raw_r:>7.2f}")
print(f"{'      raw: the same with iflag=direct':<58} {raw_rd:>7.0f} {raw_rd / raw_r:>7.2f}")
load = rate("load")
print(f"{'      ours: resume (read + CRC + place every tensor)':<58} {load:>7.0f} {load / raw_r:>7.2f}")
v = rate("verify")
print(f"{'      ours: ckpt verify (size + CRC-32C, whole process)':<58} {v:>7.0f} {v / raw_r:>7.2f}")
print(f"      (resume: {med(s for _, s in pairs('resume-wall')):.2f} s wall for the whole "
      f"train process)")
n = len(runs["sync"]["steps"])
print(f"train: global batch {gb} x 64 tokens, micro-batch 1; steps 2..{n + 1}, checkpoint every "
      f"2; one step = {step_ms:.0f} ms (sync run, steps without a save)")
h = (f"{'mode':<6} {'plain step ms':>14} {'stall ms':>9} {'stall/step':>11} "
     f"{'publish ms':>11} {'cost/save ms':>13} {'cost/step':>10}")
print(h)
print("-" * len(h))
for mode in ("sync", "async"):
    r = runs[mode]
    print(f"{mode:<6} {r['plain']:>14.0f} {r['stall']:>9.0f} {100 * r['stall'] / step_ms:>10.1f}% "
          f"{r['publish']:>11.1f} {r['cost']:>13.0f} {100 * r['cost'] / step_ms:>9.1f}%")
print("stall: the saving step's wait in save(); publish: meta.h5, renames, pruning (async: in a "
      "later step); cost/save: all steps' time beyond one step each, per save")
sw = nbytes / runs["sync"]["write_s"] / 1e6 / raw_w
la = load / raw_r
st = runs["async"]["stall"] / step_ms
print(f"goals: save >= 80% of raw write: {'yes' if sw >= 0.8 else 'NO'} (sync write {100 * sw:.0f}%); "
      f"load >= 80% of raw read: {'yes' if la >= 0.8 else 'NO'} ({100 * la:.0f}%"
      f"{'' if cold else ', warm cache'}); async stall < 5% of one step: "
      f"{'yes' if st < 0.05 else 'NO'} ({100 * st:.1f}%)")
PY
