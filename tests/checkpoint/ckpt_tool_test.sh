#!/usr/bin/env bash
# bin/ckpt on the checkpoints of a real 2-rank run: `list` shows both with `latest` marked and
# notes damaged and incomplete ones; `verify` passes on both; `export --what all` writes every
# tensor under its PyTorch name and shape, equal to the slices h5py cuts from the rank files
# themselves (an independent reader); `export --format safetensors` writes the same tensors bit
# for bit, read back with json and numpy alone, and GPT-2's names and layout; a flipped byte, a truncated and a missing rank file each
# make `verify` exit 2 with one line naming the file and the fault; bad usage exits 2.
set -euo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bin="${DPT_BIN:?set by ctest}"
mpiexec="${MPIEXEC:-mpiexec}"
py=/usr/bin/python3  # Debian's python3-h5py, whatever python3 is first on PATH
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$py" -c "
import random
r = random.Random(5)
words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'and', 'dog', 'ran', 'home']
with open('$work/text.txt', 'w') as f:
    f.write(' '.join(r.choice(words) for _ in range(4000)))
"
"$bin/prepare-data" --out "$work/data" --val-fraction 0 --shard-tokens 6000 "$work/text.txt" \
  > /dev/null
timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --data "$work/data/train" \
  --seq-len 16 --d-model 16 --n-layer 2 --n-head 2 --global-batch 4 --micro-batch 2 --steps 6 \
  --ckpt-every 3 --ckpt-dir "$work/ck" --threads 1 --log-every 100 > "$work/train.log" 2>&1 ||
  { cat "$work/train.log"; exit 1; }
s3="$work/ck/step_00000003"
s6="$work/ck/step_00000006"

# ---- list -------------------------------------------------------------------------------------
"$bin/ckpt" list "$work/ck" > "$work/list.out"
cat "$work/list.out"
grep -Eq '^  step_00000003 +3 +2 ' "$work/list.out"
grep -Eq '^  step_00000006 +6 +2 .*<- latest$' "$work/list.out"
[[ $(grep -c 'latest' "$work/list.out") -eq 1 ]]

# A damaged meta.h5 is listed as such, a partial save is noted, and the listing goes on.
cp -r "$work/ck" "$work/ck_odd"
printf 'not hdf5' > "$work/ck_odd/step_00000003/meta.h5"
mkdir "$work/ck_odd/.partial.step_00000009.somehost.123"
"$bin/ckpt" list "$work/ck_odd" > "$work/list_odd.out"
cat "$work/list_odd.out"
grep -q '^  step_00000003 *damaged: ' "$work/list_odd.out"
grep -Eq '^  step_00000006 +6 +2 .*<- latest$' "$work/list_odd.out"
grep -q '\.partial\.step_00000009\.somehost\.123  incomplete (ignored on resume)' \
  "$work/list_odd.out"
echo "ok   list"

# ---- verify -----------------------------------------------------------------------------------
for s in "$s3" "$s6"; do
  "$bin/ckpt" verify "$s" > "$work/verify.out"
  cat "$work/verify.out"
  grep -q 'rank_00001.h5 .* MB/s' "$work/verify.out"
  grep -q "^OK: .*step $((10#${s##*_})), saved by 2 rank(s), [0-9]* parameters" "$work/verify.out"
done
echo "ok   verify"

# ---- export -----------------------------------------------------------------------------------
"$bin/ckpt" export "$s6" "$work/params.h5"
"$bin/ckpt" export "$s6" "$work/all.h5" --what all
[[ -z $(find "$work" -mindepth 1 -maxdepth 1 -name '*.tmp.*') ]] || { echo "temporary file left"; exit 1; }
"$py" - "$s6" "$work/params.h5" "$work/all.h5" <<'PY'
import sys
import h5py
import numpy as np

step_dir, params_path, all_path = sys.argv[1:]
with h5py.File(f"{step_dir}/meta.h5", "r") as m:
    world = int(m.attrs["world_size"])
    n = int(m.attrs["param_count"])
    config = m.attrs["config"]
    model = {k: int(m.attrs[k]) for k in ("vocab_size", "seq_len", "d_model", "n_layer", "n_head")}
    tensors = {name: (int(g.attrs["offset"]), tuple(int(d) for d in g.attrs["shape"]))
               for name, g in m["tensors"].items()}
# The flat state, assembled from the rank files' own datasets in rank order.
flat = {}
for key in ("params", "adam_m", "adam_v"):
    parts = []
    for r in range(world):
        with h5py.File(f"{step_dir}/rank_{r:05d}.h5", "r") as f:
            parts.append(f[key][()])
    flat[key] = np.concatenate(parts)
    assert flat[key].shape == (n,), (key, flat[key].shape, n)
# The [Parameter layout] names, PyTorch-style.
assert "wte.weight" in tensors and "blocks.0.attn.qkv.weight" in tensors, sorted(tensors)


def check(group, key, where):
    names = {k for k, v in group.items() if isinstance(v, h5py.Dataset)}
    assert names == set(tensors), f"{where}: {sorted(names ^ set(tensors))}"
    total = 0
    for name, (offset, shape) in tensors.items():
        d = group[name]
        assert d.dtype == np.float32 and d.shape == shape, (where, name, d.dtype, d.shape, shape)
        size = int(np.prod(shape))
        want = flat[key][offset:offset + size].reshape(shape)
        assert np.array_equal(d[()], want), f"{where}/{name} differs from the rank files"
        total += size
    assert total == n, f"{where}: {total} parameters, meta.h5 says {n}"


for path in (params_path, all_path):
    with h5py.File(path, "r") as f:
        check(f, "params", path)
        assert int(f.attrs["step"]) == 6
        assert f.attrs["config"] == config and b"steps = 6" in config, f.attrs["config"]
        for k, v in model.items():
            assert int(f.attrs[k]) == v, (k, f.attrs[k], v)
        d_model, vocab = model["d_model"], model["vocab_size"]
        assert f["wte.weight"].shape == (vocab, d_model), f["wte.weight"].shape
        if path == all_path:
            check(f["adam_m"], "adam_m", "adam_m")
            check(f["adam_v"], "adam_v", "adam_v")
            assert set(f.keys()) == set(tensors) | {"adam_m", "adam_v"}
        else:
            assert set(f.keys()) == set(tensors)
print(f"export: {len(tensors)} tensors, {n} parameters, equal to the rank files' slices")
PY
echo "ok   export"

# ---- export --format safetensors ---------------------------------------------------------------
# Read back with json and numpy.frombuffer alone: the header's 8-byte length, the JSON, offsets
# that tile the data in order, every tensor bit for bit equal to the HDF5 export's (--what all:
# the moments too); GPT-2's names map every tensor once, the Conv1D weights transposed.
"$bin/ckpt" export "$s6" "$work/all.safetensors" --what all > "$work/st.out"
"$bin/ckpt" export "$s6" "$work/hf.safetensors" --names hf-gpt2 > /dev/null
grep -q "(safetensors)" "$work/st.out"
"$py" - "$work/all.h5" "$work/all.safetensors" "$work/hf.safetensors" <<'PY'
import json, struct, sys
import h5py
import numpy as np

h5_path, st_path, hf_path = sys.argv[1:]


def read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert (8 + n) % 8 == 0, "data not 8-byte aligned"
    data = raw[8 + n:]
    meta = header.pop("__metadata__")
    tensors, end = {}, 0
    for name, t in header.items():  # offsets in header order, no holes
        b, e = t["data_offsets"]
        assert b == end and t["dtype"] == "F32", (name, t, end)
        tensors[name] = np.frombuffer(data[b:e], "<f4").reshape(t["shape"])
        end = e
    assert end == len(data), f"{len(data) - end} bytes past the last tensor"
    return tensors, meta


st, meta = read(st_path)
with h5py.File(h5_path, "r") as f:
    want = {k: v[()] for k, v in f.items() if isinstance(v, h5py.Dataset)}
    for g in ("adam_m", "adam_v"):
        want.update({f"{g}.{k}": v[()] for k, v in f[g].items()})
    config = f.attrs["config"].decode()
assert set(st) == set(want), sorted(set(st) ^ set(want))
for name, w in want.items():
    assert st[name].shape == w.shape and st[name].tobytes() == w.tobytes(), name
assert meta["step"] == "6" and meta["config"] == config and meta["names"] == "ours", meta

hf, meta = read(hf_path)
cfg = json.loads(meta["hf_config"])
assert cfg["model_type"] == "gpt2" and cfg["n_layer"] == 2 and cfg["n_embd"] == want["wte.weight"].shape[1]
params = {k: v for k, v in want.items() if not k.startswith("adam_")}
assert len(hf) == len(params), (len(hf), len(params))
assert np.array_equal(hf["transformer.wte.weight"], params["wte.weight"])
for l in range(cfg["n_layer"]):
    for ours, theirs in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                         ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")):
        w = params[f"blocks.{l}.{ours}.weight"]
        assert np.array_equal(hf[f"transformer.h.{l}.{theirs}.weight"], w.T), (l, ours)
        assert np.array_equal(hf[f"transformer.h.{l}.{theirs}.bias"], params[f"blocks.{l}.{ours}.bias"])
    assert np.array_equal(hf[f"transformer.h.{l}.ln_1.weight"], params[f"blocks.{l}.ln1.weight"])
print(f"safetensors: {len(st)} tensors bit for bit; GPT-2 names: {len(hf)} tensors")
PY
echo "ok   export safetensors"

# ---- damage: each makes verify (and export) exit 2 with one line naming the file -----------------
# expect_damage NAME PATTERN... : verify of $work/NAME exits 2, one stderr line, every PATTERN in it.
expect_damage() {
  local name="$1"
  shift
  local rc=0
  "$bin/ckpt" verify "$work/$name" > "$work/$name.out" 2> "$work/$name.err" || rc=$?
  cat "$work/$name.err"
  [[ $rc -eq 2 ]] || { echo "FAIL $name: verify exit $rc (want 2)"; exit 1; }
  [[ $(wc -l < "$work/$name.err") -eq 1 ]] || { echo "FAIL $name: not one line"; exit 1; }
  for pattern in "$@"; do
    grep -qF -- "$pattern" "$work/$name.err" || { echo "FAIL $name: no '$pattern'"; exit 1; }
  done
  rc=0
  "$bin/ckpt" export "$work/$name" "$work/$name.h5" > /dev/null 2> "$work/$name.export.err" || rc=$?
  [[ $rc -eq 2 && ! -e "$work/$name.h5" ]] || { echo "FAIL $name: export exit $rc"; exit 1; }
  echo "ok   $name"
}

cp -r "$s6" "$work/flipped"
"$py" - "$work/flipped/rank_00001.h5" <<'PY'
import os, sys
path = sys.argv[1]
with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0xFF]))
PY
expect_damage flipped "rank_00001.h5" "checksum"

cp -r "$s6" "$work/truncated"
truncate -s -1000 "$work/truncated/rank_00001.h5"
expect_damage truncated "rank_00001.h5" "truncated"

cp -r "$s6" "$work/missing"
rm "$work/missing/rank_00001.h5"
expect_damage missing "rank_00001.h5" "cannot be opened"

cp -r "$s6" "$work/bad_meta"
truncate -s 100 "$work/bad_meta/meta.h5"
expect_damage bad_meta "meta.h5"

# ---- usage --------------------------------------------------------------------------------------
"$bin/ckpt" --help | grep -q 'ckpt export STEP_DIR OUT \[--format h5|safetensors\]'
# expect_usage PATTERN ARGS...: `ckpt ARGS` exits 2 with one stderr line holding PATTERN.
expect_usage() {
  local pattern="$1" rc=0
  shift
  "$bin/ckpt" "$@" > /dev/null 2> "$work/usage.err" || rc=$?
  [[ $rc -eq 2 && $(wc -l < "$work/usage.err") -eq 1 ]] &&
    grep -q "^ckpt: error: .*$pattern" "$work/usage.err" ||
    { echo "FAIL ckpt $*: exit $rc (want 2), stderr (want one line with '$pattern'):"
      cat "$work/usage.err"; exit 1; }
  echo "ok   ckpt $*: $(cat "$work/usage.err")"
}
expect_usage 'no command; usage: ckpt list CKPT_DIR'
expect_usage "unknown command 'frobnicate'; usage: ckpt list" frobnicate
expect_usage 'missing CKPT_DIR; usage:' list
expect_usage 'missing STEP_DIR; usage:' verify
expect_usage 'missing OUT; usage:' export "$s6"
expect_usage '--what weights is not one of params, all' export "$s6" "$work/x.h5" --what weights
expect_usage '--format npz is not one of h5, safetensors' export "$s6" "$work/x.npz" --format npz
expect_usage '--names hf-gpt2 applies to --format safetensors' export "$s6" "$work/x.h5" --names hf-gpt2
expect_usage 'usage:' verify "$s6" extra
expect_usage 'holds checkpoints rather than being one' verify "$work/ck"
expect_usage 'is not a directory' list "$work/nonexistent"
echo "PASS"
