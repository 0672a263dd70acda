#!/usr/bin/env bash
# [ZeRO] end to end through bin/train: a checkpoint saved with any stage on W ranks resumes with
# any stage on W' ranks and continues as the uninterrupted run does (4 ranks stage 2 -> 1 rank
# stage 0, 1 rank stage 1 -> 3 ranks stage 2, 2 ranks stage 0 -> 4 ranks stage 1, and 2 ranks
# stage 2 -> the same, bit for bit); the rank files of a sharded run hold the same state as an
# unsharded run's (ckpt export), and ckpt verify passes on all of them; a run that cannot fit in
# memory stops with exit 2 before allocating it.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
words_shards 11 2 80
args=(--data "$work/data/train" --seq-len 16 --d-model 32 --n-layer 2 --n-head 4 --steps 20
      --global-batch 12 --micro-batch 1 --lr 3e-3 --warmup-steps 3 --bucket-mb 0.01
      --threads 1 --log-every 100 --ckpt-every 10)
train() {  # train NAME RANKS ZERO [ARGS...]
  local name="$1" ranks="$2" zero="$3"
  shift 3
  timeout 120 "$mpiexec" -n "$ranks" --oversubscribe --bind-to none "$bin/train" "${args[@]}" \
    --zero "$zero" --metrics "$work/$name.jsonl" "$@" > "$work/$name.log" 2>&1 ||
    { cat "$work/$name.log"; echo "FAIL: $name"; exit 1; }
}
hash_of() { grep -o 'parameter hash [0-9a-f]*' "$work/$1.log" | tail -1; }

train straight 1 0 --ckpt-dir "$work/ck_straight"
train straight_4z0 4 0 --ckpt-dir "$work/ck_4z0" --stop-at-step 10
# Each pair: the first run stops after step 10 with a checkpoint, the second resumes it.
pairs=("4 2 1 0" "1 1 3 2" "2 0 4 1" "2 2 2 2")
for p in "${pairs[@]}"; do
  read -r w z w2 z2 <<< "$p"
  name="w${w}z${z}_w${w2}z${z2}"
  train "$name" "$w" "$z" --ckpt-dir "$work/ck_$name" --stop-at-step 10
  train "$name" "$w2" "$z2" --ckpt-dir "$work/ck_$name"
  grep -q "resume: auto; from $work/ck_$name/step_00000010" "$work/$name.log" ||
    { cat "$work/$name.log"; echo "FAIL: $name did not resume from step 10"; exit 1; }
  "$bin/ckpt" verify "$work/ck_$name/step_00000010" > /dev/null
  "$bin/ckpt" verify "$work/ck_$name/step_00000020" > /dev/null
done
train straight_2z2 2 2
[[ $(hash_of w2z2_w2z2) == "$(hash_of straight_2z2)" ]] ||
  { echo "FAIL: 2 ranks stage 2 resumed differs from uninterrupted"; exit 1; }
echo "ok: 2 ranks stage 2, stopped at 10 and resumed, ends with the uninterrupted parameters"

"$py" - "$work" "${pairs[@]}" <<'PY'
import json, sys
w = sys.argv[1]
def losses(name):
    rows = [json.loads(l) for l in open(f"{w}/{name}.jsonl")]
    by_step = {}
    for r in rows:
        if "loss" in r:
            by_step[r["step"]] = r["loss"]  # a resumed run keeps the first run's lines
    return [by_step[s] for s in sorted(by_step)]
ref = losses("straight")
assert len(ref) == 20 and ref[-1] < ref[0] - 0.5, ref
for p in sys.argv[2:]:
    a, za, b, zb = p.split()
    name = f"w{a}z{za}_w{b}z{zb}"
    got = losses(name)
    assert len(got) == 20, (name, len(got))
    for s, (x, y) in enumerate(zip(got, ref), 1):
        assert abs(x - y) <= 1e-5 * abs(y), f"{name} step {s}: {x} vs {y}"
    print(f"ok: {a} rank(s) stage {za} -> {b} rank(s) stage {zb}: 20 losses within 1e-5 of "
          "1 rank stage 0")
PY

# The 4-rank stage-2 files hold the state the 4-rank stage-0 files hold at the same step.
"$bin/ckpt" export "$work/ck_4z0/step_00000010" "$work/z0.h5" --what all > /dev/null
"$bin/ckpt" export "$work/ck_w4z2_w1z0/step_00000010" "$work/z2.h5" --what all > /dev/null
"$py" - "$work" <<'PY'
import sys
import h5py
import numpy as np
w = sys.argv[1]
a, b = h5py.File(f"{w}/z0.h5", "r"), h5py.File(f"{w}/z2.h5", "r")
names = []
a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
assert any(n.startswith("adam_m/") for n in names) and any(n.startswith("adam_v/") for n in names)
for n in names:
    x, y = a[n][()], b[n][()]
    assert x.shape == y.shape, n
    # Stage 2 sums micro-batches after ranks: the same state to rounding.
    assert np.allclose(x, y, rtol=1e-4, atol=1e-6), (n, float(np.abs(x - y).max()))
    assert np.abs(y).max() > 0, f"{n}: all zero in the sharded run's files"
print(f"ok: ckpt export of 4 ranks stage 2 equals 4 ranks stage 0 ({len(names)} datasets)")
PY

# The metrics measure what each stage holds and sends ([Memory plan], [Bytes sent]): against
# the parameter count from the export, rank 0's bytes per step and the largest rank's state.
"$py" - "$work" <<'PY'
import json, sys
import h5py
w = sys.argv[1]
f = h5py.File(f"{w}/z0.h5", "r")
sizes = []
f.visititems(lambda n, o: sizes.append(o.size) if isinstance(o, h5py.Dataset) and
             not n.startswith(("adam_m/", "adam_v/")) and o.ndim > 0 else None)
psi = sum(sizes)
page = 4096
grad_pages = -(-4 * psi // page) * page  # the gradient's pages, all written
def rows(name, first, last):
    out = [json.loads(l) for l in open(f"{w}/{name}.jsonl")]
    out = [r for r in out if "loss" in r and first <= r["step"] <= last]
    assert len(out) == last - first + 1, (name, len(out))
    return out
def check(name, first, last, world, zero, accum):
    own0 = psi // world  # rank 0's range, the smallest
    own_max = -(-psi // world)
    fixed = 4 * psi + (grad_pages if zero < 2 else 0)
    state = {0: 12 * psi + grad_pages, 1: fixed + 8 * own_max}.get(zero)
    if world == 1:
        sent = 0
    elif zero == 0:
        sent = 2 * 4 * psi * (world - 1) / world
    else:
        sent = accum ** (zero == 2) * 4 * (psi - own0) + 4 * own0 * (world - 1)
    for r in rows(name, first, last):
        # The step's small collectives (votes, loss, norm) add a few hundred bytes at most.
        assert 0 <= r["sent_bytes"] - sent <= 512 + 8 * world, (name, r["step"], r["sent_bytes"], sent)
        if state is not None:
            assert r["mem_state_bytes"] == state, (name, r["mem_state_bytes"], state)
        else:  # the owned gradient, its moments, and at most the whole gradient's pages
            lo = 4 * psi + 12 * own0
            assert lo < r["mem_state_bytes"] <= 4 * psi + 12 * own_max + grad_pages, (name, r)
        assert r["mem_peak_bytes"] > r["mem_state_bytes"], (name, r)
    print(f"ok: {name} steps {first}-{last}: {world} rank(s) stage {zero} hold "
          f"{r['mem_state_bytes']} state bytes and send {r['sent_bytes']} a step (psi {psi})")
check("straight", 1, 20, 1, 0, 12)
check("straight_4z0", 1, 10, 4, 0, 3)
check("w2z0_w4z1", 11, 20, 4, 1, 3)
check("straight_2z2", 1, 20, 2, 2, 6)
PY

# A run that cannot fit stops before allocating, on every rank, with exit 2.
rc=0
timeout 60 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --data "$work/data/train" \
  --d-model 8192 --n-head 64 --n-layer 64 --threads 1 > "$work/huge.log" 2> "$work/huge.err" || rc=$?
[[ $rc -eq 2 ]] || { cat "$work/huge.log" "$work/huge.err"; echo "FAIL: exit $rc, not 2"; exit 1; }
grep -q "make the model smaller" "$work/huge.err" ||
  { cat "$work/huge.err"; echo "FAIL: no advice"; exit 1; }
[[ $(grep -c "train: error" "$work/huge.err") -eq 1 ]] || { echo "FAIL: one message"; exit 1; }
grep -q "memory per rank: parameters" "$work/huge.log"
echo "ok: a 52-billion-parameter model refused with exit 2 by the memory plan"
