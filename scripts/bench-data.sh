#!/usr/bin/env bash
# Data-path benchmark: our reader (bin/bench-data: TokenDataset + BatchStream) with the full and
# the local shuffle against `cat` of the same shards and against h5py reading the very same
# samples on a warm page cache, cat and the local shuffle on a cold cache as well (when the page
# cache may be dropped), plus the data stall of a short real training run; then the same for
# image shards (Fashion-MNIST as sample shards): ours against cat and h5py reading the same
# images, and the data stall of the image demo's model.
# Usage: scripts/bench-data.sh   (env: GB dataset size in GB of token payload, default 1;
#        BUILD_DIR, default build/; PYTHON, default /usr/bin/python3; REPEATS, default 3;
#        COLD=0 skips the cold rows; TOKENS=0 the token shards, IMAGES=0 the image shards; FULL_SAMPLES, default min(262144, half an epoch); H5PY_SAMPLES, default 0 = all)
# The dataset is generated once (random words -> prepare-data) and kept in data/bench-data/.
# About 1.5 minutes on 2 cores after that, most of it h5py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
py="${PYTHON:-/usr/bin/python3}"
gb="${GB:-1}"
repeats="${REPEATS:-3}"
T=1024 B=16 window=8
[[ -x $build/bin/bench-data && -x $build/bin/prepare-data && -x $build/bin/train ]] ||
  BUILD_DIR="$build" "$root/scripts/build.sh"
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [[ ${TOKENS:-1} != 0 ]]; then  # TOKENS=0 skips the token shards
# --- The dataset, once: prepare-data's defaults (32M-token shards, 64K-token chunks, no
# compression), uint16 ids. Byte-level tokens, so text bytes ~= tokens = payload / 2.
dir="$root/data/bench-data/gb$gb"
data="$dir/train"
if [[ ! -f $dir/complete ]]; then
  rm -rf "$dir" && mkdir -p "$dir"
  echo "bench-data: generating ~$gb GB of token payload in $dir (once)" >&2
  "$py" - "$dir/text.txt" "$gb" <<'PY'
# Random words (a fixed Zipf-like vocabulary), lines of ~12 words, documents of ~300 words
# separated by '%' lines; numpy gathers bytes in blocks, so this runs at hundreds of MB/s.
import sys, time
import numpy as np
out, gb = sys.argv[1], float(sys.argv[2])
target = int(gb * 1e9 / 2 * 1.04)  # bytes of text: a little over the asked payload
rng = np.random.default_rng(20240611)
letters = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz", np.uint8)
words = [bytes(rng.choice(letters, size=int(n))) + b" " for n in rng.integers(1, 11, 5000)]
words += [b"\n", b"\n%\n"]
p = 1.0 / (np.arange(5000) + 10.0)
p = np.concatenate([p / p.sum() * (1 - 1 / 12 - 1 / 300), [1 / 12, 1 / 300]])
pool = np.frombuffer(b"".join(words), np.uint8)
lens = np.array([len(w) for w in words], np.int64)
starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
written, t0, last = 0, time.time(), 0
with open(out, "wb") as f:
    while written < target:
        idx = rng.choice(len(words), size=2_000_000, p=p)
        n = lens[idx]
        ends = np.cumsum(n)
        gather = np.repeat(starts[idx] - (ends - n), n) + np.arange(ends[-1])
        f.write(pool[gather].tobytes())
        written += int(ends[-1])
        if written - last > 100e6 or written >= target:
            last = written
            print(f"  text {written / 1e6:.0f} / {target / 1e6:.0f} MB "
                  f"({written / 1e6 / (time.time() - t0):.0f} MB/s)", file=sys.stderr, flush=True)
PY
  "$build/bin/prepare-data" --out "$dir" --doc-separator % --val-fraction 0 "$dir/text.txt" >&2
  rm -f "$dir/text.txt"
  touch "$dir/complete"
fi
shards=("$data"/*.h5)
file_bytes=$(du -cb "${shards[@]}" | tail -n 1 | cut -f 1)
echo "bench-data: ${#shards[@]} shards, $((file_bytes / 1000000)) MB in $data" >&2

# --- Cold cache, when this process may drop the page cache (root; COLD=0 skips it; it flushes
# the whole machine's cache): cat, then one local-shuffle epoch, each after a drop.
cold=0
if [[ ${COLD:-1} != 0 && -w /proc/sys/vm/drop_caches ]]; then
  cold=1
  drop() { sync && echo 3 > /proc/sys/vm/drop_caches; }
  echo "bench-data: cold cache: cat, then ours (local shuffle), each after dropping the cache" >&2
  drop
  t0=$(date +%s%N); cat "${shards[@]}" > /dev/null; t1=$(date +%s%N)
  echo "$file_bytes $((t1 - t0))" > "$work/raw-cold.txt"
  drop
  "$build/bin/bench-data" --data "$data" --seq-len $T --batch $B --shuffle local --window $window \
    --samples 0 --cold | grep '^RESULT' > "$work/cold.result"
fi

# --- Warm cache: every file read once, so every row below reads from the page cache.
cat "${shards[@]}" > /dev/null
echo "bench-data: raw: cat of all shards x3" >&2
for _ in 1 2 3; do
  t0=$(date +%s%N); cat "${shards[@]}" > /dev/null; t1=$(date +%s%N)
  echo "$file_bytes $((t1 - t0))" >> "$work/raw.txt"
done

# --- Ours: one epoch with the local shuffle (every chunk read once per epoch by design); the
# full shuffle has no reuse to amortize, so up to half an epoch shows its rate as well.
ours() {  # ours NAME ARGS...
  local name=$1; shift
  echo "bench-data: ours, $name shuffle" >&2
  "$build/bin/bench-data" --data "$data" --seq-len $T --batch $B --repeats "$repeats" \
    --dump-order "$work/$name.order" "$@" > "$work/$name.out"
  grep '^RESULT' "$work/$name.out" > "$work/$name.result"
}
ours local --shuffle local --window $window --samples 0
half_epoch=$((file_bytes / 2 / (T + 1) / 2))
ours full --shuffle full --samples "${FULL_SAMPLES:-$((half_epoch < 262144 ? half_epoch : 262144))}"

# --- h5py on the same samples in the same order (H5PY_SAMPLES > 0 takes a prefix), files kept
# open, one slice per sample. Every sample's token sum must equal what bench-data read.
h5py_samples="${H5PY_SAMPLES:-0}"
for name in local full; do
  echo "bench-data: h5py, same $name order" >&2
  "$py" - "$work/$name.order" $T "$h5py_samples" "$repeats" > "$work/$name.h5py" <<'PY'
import statistics, sys, time
import h5py
import numpy as np
order, T, n, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
paths, refs = [], []
with open(order) as f:
    for line in f:
        a = line.split()
        if a[0] == "shard":
            paths.append(a[2])
        elif n <= 0 or len(refs) < n:
            refs.append((int(a[0]), int(a[1]), int(a[2])))
files = [h5py.File(p, "r") for p in paths]
tokens = [f["tokens"] for f in files]
def once(refs):
    t0 = time.perf_counter()
    bad = 0
    for i, a, want in refs:
        bad += int(tokens[i][a:a + T + 1].sum(dtype=np.uint64)) != want
    dt = time.perf_counter() - t0
    if bad:
        sys.exit(f"h5py: {bad} samples differ from what bench-data read")
    return dt
once(refs[:4096])  # warm-up
secs = statistics.median(once(refs) for _ in range(repeats))
print(f"samples={len(refs)} seconds={secs} width={tokens[0].dtype.itemsize}")
PY
done

# --- The data stall of a real (small) training run, local shuffle.
echo "bench-data: train, 60 steps, local shuffle" >&2
mpiexec -n 1 --bind-to none "$build/bin/train" --data "$data" --seq-len 256 --d-model 64 \
  --n-layer 2 --n-head 4 --global-batch 16 --micro-batch 16 --steps 60 --shuffle local \
  --shuffle-window $window --log-every 1000 --metrics "$work/train.jsonl" > "$work/train.log"

"$py" - "$work" "$repeats" $T $B ${#shards[@]} "$file_bytes" $cold <<'PY'
import json, statistics, sys
work, repeats, T, B, nshards, file_bytes, cold = sys.argv[1], *map(int, sys.argv[2:])
def rate(path):
    return statistics.median(int(b) / (int(ns) / 1e9) / 1e6
                             for b, ns in (l.split() for l in open(path)))
raw = rate(f"{work}/raw.txt")
def kv(path):
    return {k: float(v) for k, v in (w.split("=") for w in open(path).read().split()[1:])}
ours = {n: kv(f"{work}/{n}.result") for n in ("local", "full")}
peer = {}
for n in ("local", "full"):
    d = dict(w.split("=") for w in open(f"{work}/{n}.h5py").read().split())
    tok = int(d["samples"]) * (T + 1)
    peer[n] = dict(samples=int(d["samples"]), tps=tok / float(d["seconds"]),
                   mbs=tok * int(d["width"]) / 1e6 / float(d["seconds"]))
rows = [r for r in (json.loads(l) for l in open(f"{work}/train.jsonl")) if r["step"] >= 2]
stall = sum(r["data_wait_ms"] for r in rows) / sum(r["step_ms"] for r in rows)
step_ms = statistics.median(r["step_ms"] for r in rows)

print(f"bench-data: warm cache (every shard read once first); {nshards} shards, "
      f"{file_bytes / 1e6:.0f} MB; T={T}, micro-batch {B}; medians of {repeats} after a warm-up")
print("MB = token payload bytes (tokens x 2 B uint16) / 1e6; raw counts file bytes")
h = f"{'reader':<34} {'samples':>8} {'tokens/s':>10} {'MB/s':>8} {'vs raw':>7} {'vs h5py':>8} {'I/O-thread MB/s':>16}"
print(h)
print("-" * len(h))
print(f"{'raw: cat shards > /dev/null':<34} {'':>8} {'':>10} {raw:>8.0f} {1:>7.2f} {'':>8} {'':>16}")
for n, label in (("local", f"ours, local shuffle (window 8)"), ("full", "ours, full shuffle")):
    o = ours[n]
    print(f"{label:<34} {int(o['samples']):>8} {o['tokens_per_s']:>10.3g} {o['mb_per_s']:>8.0f} "
          f"{o['mb_per_s'] / raw:>7.3f} {o['mb_per_s'] / peer[n]['mbs']:>7.2f}x "
          f"{o['io_mb_per_s']:>16.0f}")
for n in ("local", "full"):
    p = peer[n]
    print(f"{'h5py, same ' + n + ' order':<34} {p['samples']:>8} {p['tps']:>10.3g} "
          f"{p['mbs']:>8.0f} {p['mbs'] / raw:>7.3f} {1:>7.2f}x {'':>16}")
if cold:
    raw_cold, c = rate(f"{work}/raw-cold.txt"), kv(f"{work}/cold.result")
    print(f"{'cold: cat shards > /dev/null':<34} {'':>8} {'':>10} {raw_cold:>8.0f} {1:>7.2f}")
    print(f"{'cold: ours, local shuffle':<34} {int(c['samples']):>8} {c['tokens_per_s']:>10.3g} "
          f"{c['mb_per_s']:>8.0f} {c['mb_per_s'] / raw_cold:>7.3f}")
print(f"train (T=256 C=64 L=2, batch 16, local shuffle, steps 2..{rows[-1]['step']}): "
      f"data stall {100 * stall:.4f}% of step time, median step {step_ms:.1f} ms")
lr = ours["local"]["mb_per_s"] / raw
lc = f", cold {100 * c['mb_per_s'] / raw_cold:.1f}%" if cold else ", cold not measured"
print(f"goals: local >= 80% of raw: {'yes' if lr >= 0.8 else 'NO'} (warm {100 * lr:.1f}%{lc}); "
      f"faster than h5py: {'yes' if all(ours[n]['mb_per_s'] > peer[n]['mbs'] for n in ours) else 'NO'}; "
      f"stall < 1%: {'yes' if stall < 0.01 else 'NO'}")
PY
fi

# --- Image shards (IMAGES=0 skips): Fashion-MNIST's 60,000 training images as prepare-data
# writes them (scripts/sample-data.sh), warm cache: cat of the shards, ours (one epoch of the
# full shuffle in micro-batches of 64, train's default 512 MiB block cache), h5py reading the
# same images in the same order one by one (as a PyTorch Dataset's __getitem__ would), and the
# data stall of a short training run of the image demo's model on 2 ranks.
if [[ ${IMAGES:-1} != 0 ]]; then
  img="$root/data/bench-data/fashion"
  [[ -d $img/train ]] || BUILD_DIR="$build" "$root/scripts/sample-data.sh" image "$img" >&2
  ishards=("$img"/train/*.h5)
  ibytes=$(du -cb "${ishards[@]}" | tail -n 1 | cut -f 1)
  cat "${ishards[@]}" > /dev/null
  echo "bench-data: images: cat x3, ours, h5py, train" >&2
  for _ in 1 2 3; do
    t0=$(date +%s%N); cat "${ishards[@]}" > /dev/null; t1=$(date +%s%N)
    echo "$ibytes $((t1 - t0))" >> "$work/img-raw.txt"
  done
  "$build/bin/bench-data" --data "$img/train" --batch 64 --shuffle full --samples 0 \
    --repeats "$repeats" --dump-order "$work/img.order" > "$work/img.out"
  grep '^RESULT' "$work/img.out" > "$work/img.result"
  "$py" - "$work/img.order" "$repeats" > "$work/img.h5py" <<'PY'
import statistics, sys, time
import h5py
import numpy as np
order, repeats = sys.argv[1], int(sys.argv[2])
paths, refs = [], []
for line in open(order):
    a = line.split()
    if a[0] == "shard":
        paths.append(a[2])
    else:
        refs.append((int(a[0]), int(a[1]), int(a[2])))
inputs = [h5py.File(p, "r")["inputs"] for p in paths]
def once(refs):
    t0 = time.perf_counter()
    bad = 0
    for i, k, want in refs:
        bad += int(inputs[i][k].sum(dtype=np.uint64)) != want
    dt = time.perf_counter() - t0
    if bad:
        sys.exit(f"h5py: {bad} images differ from what bench-data read")
    return dt
once(refs[:2048])  # warm-up
secs = statistics.median(once(refs) for _ in range(repeats))
print(f"samples={len(refs)} seconds={secs} bytes={inputs[0].dtype.itemsize * int(np.prod(inputs[0].shape[1:]))}")
PY
  mpiexec -n 2 --oversubscribe --bind-to none "$build/bin/train" \
    --config "$root/scripts/demo-image.ini" --data "$img/train" --steps 40 --log-every 1000 \
    --val-every 0 --metrics "$work/img-train.jsonl" > "$work/img-train.log"
  "$py" - "$work" "$repeats" <<'PY'
import json, statistics, sys
work, repeats = sys.argv[1], int(sys.argv[2])
raw = statistics.median(int(b) / (int(ns) / 1e9) / 1e6
                        for b, ns in (l.split() for l in open(f"{work}/img-raw.txt")))
o = {k: float(v) for k, v in (w.split("=") for w in open(f"{work}/img.result").read().split()[1:])}
d = dict(w.split("=") for w in open(f"{work}/img.h5py").read().split())
h_sps = int(d["samples"]) / float(d["seconds"])
h_mbs = h_sps * int(d["bytes"]) / 1e6
rows = [r for r in (json.loads(l) for l in open(f"{work}/img-train.jsonl")) if r.get("step", 0) >= 2 and "step_ms" in r]
stall = sum(r["data_wait_ms"] for r in rows) / sum(r["step_ms"] for r in rows)
step_ms = statistics.median(r["step_ms"] for r in rows)
print()
print(f"bench-data: image shards (Fashion-MNIST train, 60,000 x 28x28x1 uint8), warm cache; "
      f"medians of {repeats} after a warm-up")
print("MB = stored image bytes / 1e6; raw counts file bytes")
h = f"{'reader':<38} {'samples/s':>10} {'MB/s':>8} {'vs raw':>7} {'vs h5py':>8}"
print(h)
print("-" * len(h))
print(f"{'raw: cat shards > /dev/null':<38} {'':>10} {raw:>8.0f} {1:>7.2f} {'':>8}")
print(f"{'ours, full shuffle, batch 64':<38} {o['samples_per_s']:>10.3g} {o['mb_per_s']:>8.0f} "
      f"{o['mb_per_s'] / raw:>7.3f} {o['samples_per_s'] / h_sps:>7.1f}x")
print(f"{'h5py, same order, one image a read':<38} {h_sps:>10.3g} {h_mbs:>8.1f} {h_mbs / raw:>7.3f} {1:>7.1f}x")
print(f"train (demo-image.ini, 2 ranks, steps 2..{rows[-1]['step']}): data stall "
      f"{100 * stall:.4f}% of step time, median step {step_ms:.1f} ms "
      f"({128 / step_ms * 1000:.0f} images/s trained vs {o['samples_per_s']:.3g} read)")
PY
fi
