#!/usr/bin/env bash
# bin/attention on checkpoints of real 2-rank runs, and scripts/plot-attention.py on its files:
# a Vision Transformer's maps equal a double-precision recomputation in numpy from the weights
# `ckpt export --format safetensors` wrote (read with json and numpy alone); every attention row
# sums to 1; a padded text's padding gets no attention; the rollout's rows sum to 1; a language
# model's prompt gives causal maps; each file plots to a PNG; bad input exits 2.
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$py" - "$work" <<'PY'
import os, sys
import h5py, numpy as np
w = sys.argv[1]
rng = np.random.default_rng(3)
for d in ("img", "txt"):
    os.makedirs(f"{w}/{d}", exist_ok=True)
y = rng.integers(0, 3, 96)
x = rng.integers(0, 90, (96, 12, 8, 2)).astype(np.uint8)
for i, k in enumerate(y):
    x[i, 4 * k:4 * k + 4] += 120
with h5py.File(f"{w}/img/a.h5", "w") as f:
    f["inputs"], f["labels"] = x, y
    f.attrs["format_version"] = 1
    f.attrs["class_names"] = ["top", "middle", "bottom"]
ln = rng.integers(3, 11, 64)
t = rng.integers(1, 30, (64, 10)).astype(np.int32)
for i in range(64):
    t[i, ln[i]:] = 0
with h5py.File(f"{w}/txt/a.h5", "w") as f:
    f["inputs"], f["labels"], f["lengths"] = t, (t[:, 0] % 2), ln
    f.attrs["format_version"] = 1
PY
train() {  # train NAME DATA [ARGS...]
  local name="$1" data="$2"
  shift 2
  timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --data "$data" \
    --d-model 16 --n-layer 2 --n-head 2 --steps 6 --global-batch 8 --micro-batch 4 --threads 1 \
    --log-every 100 --ckpt-dir "$work/$name.ck" "$@" > "$work/$name.log"
}
train img "$work/img" --patch 4
train txt "$work/txt" --pool mean
words_shards 5 1 40
train lm "$work/data/train" --seq-len 24

"$bin/attention" "$work/img.ck" --data "$work/img" --samples 0,5,7,90 -o "$work/img.h5" 2> "$work/img.err"
"$bin/attention" "$work/txt.ck" --data "$work/txt" --count 5 --batch 2 -o "$work/txt.h5" 2> "$work/txt.err"
grep -q "attention: 4/5 samples" "$work/txt.err"  # progress with --batch 2
"$bin/attention" "$work/lm.ck" --prompt "the cat sat" -o "$work/lm.h5" 2> "$work/lm.err"
"$bin/ckpt" export "$(ls -d "$work"/img.ck/step_* | tail -n 1)" "$work/img.safetensors" > /dev/null

"$py" - "$work" <<'PY'
import json, struct, sys
import h5py, numpy as np
w = sys.argv[1]

raw = open(f"{w}/img.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n]); header.pop("__metadata__")
W = {k: np.frombuffer(raw[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]], "<f4")
     .reshape(t["shape"]).astype(np.float64) for k, t in header.items()}

def ln(x, g, b):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * g + b

def gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

def vit_attention(img, P, L, NH):
    H, Wd, C = img.shape
    x = img.astype(np.float64) / 255.0
    patches = x.reshape(H // P, P, Wd // P, P, C).transpose(0, 2, 1, 3, 4).reshape(-1, P * P * C)
    e = patches @ W["patch_embed.weight"].T + W["patch_embed.bias"]
    h = np.vstack([W["cls_token"][None], e]) + W["wpe.weight"]
    T, D = h.shape
    hs = D // NH
    maps = []
    for l in range(L):
        p = f"blocks.{l}."
        a = ln(h, W[p + "ln1.weight"], W[p + "ln1.bias"])
        qkv = a @ W[p + "attn.qkv.weight"].T + W[p + "attn.qkv.bias"]
        q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
        y = np.zeros((T, D))
        heads = []
        for hh in range(NH):
            s = slice(hh * hs, (hh + 1) * hs)
            sc = q[:, s] @ k[:, s].T / np.sqrt(hs)
            att = np.exp(sc - sc.max(1, keepdims=True))
            att /= att.sum(1, keepdims=True)
            heads.append(att)
            y[:, s] = att @ v[:, s]
        maps.append(heads)
        h = h + y @ W[p + "attn.proj.weight"].T + W[p + "attn.proj.bias"]
        a = ln(h, W[p + "ln2.weight"], W[p + "ln2.bias"])
        h = h + gelu(a @ W[p + "mlp.fc.weight"].T + W[p + "mlp.fc.bias"]) @ W[p + "mlp.proj.weight"].T \
            + W[p + "mlp.proj.bias"]
    return np.array(maps)

with h5py.File(f"{w}/img.h5", "r") as f:
    assert f.attrs["format_version"] == 1 and f.attrs["has_cls"] == 1
    att, roll = f["attention"][()], f["rollout"][()]
    assert att.shape == (4, 2, 2, 7, 7), att.shape  # 3 x 2 patches of 4 and the class token
    assert list(f["sample_index"][()]) == [0, 5, 7, 90]
    assert np.allclose(att.sum(-1), 1, atol=1e-5) and np.allclose(roll.sum(-1), 1, atol=1e-5)
    assert f["inputs"].shape == (4, 12, 8, 2) and f["logits"].shape == (4, 3)
    with h5py.File(f"{w}/img/a.h5", "r") as src:
        assert np.array_equal(f["inputs"][1], src["inputs"][5]), "the image read back"
        assert list(f["labels"][()]) == list(src["labels"][[0, 5, 7, 90]])
    worst = 0.0
    for i in range(4):
        want = vit_attention(f["inputs"][i], 4, 2, 2)
        worst = max(worst, float(np.abs(want - att[i]).max()))
    assert worst < 1e-5, f"attention differs from numpy's double recomputation by {worst}"
    print(f"image: 4 samples x 2 layers x 2 heads equal numpy's float64 recomputation within {worst:.1e}")

with h5py.File(f"{w}/txt.h5", "r") as f:
    att, lengths = f["attention"][()], f["lengths"][()]
    assert att.shape == (5, 2, 2, 10, 10) and f.attrs["has_cls"] == 0, att.shape
    for i, n in enumerate(lengths):
        assert np.all(att[i, :, :, :, n:] == 0), f"sample {i}: padding past {n} got attention"
    assert np.allclose(att.sum(-1), 1, atol=1e-5)
    print(f"text: padding past each length gets exactly 0 (lengths {list(lengths)})")

with h5py.File(f"{w}/lm.h5", "r") as f:
    att = f["attention"][()]
    n = len("the cat sat") + 1
    assert att.shape == (1, 2, 2, n, n) and list(f["inputs"][0][:4]) == [256, 116, 104, 101]
    assert np.all(np.triu(att[0, :, :], 1) == 0), "a language model's attention is causal"
    assert f["logits"].shape == (1, 257) and 0 <= f["predicted"][0] < 257
    print("prompt: causal maps of", n, "tokens and the next token's logits")
PY
for name in img txt lm; do
  "$py" "$root/scripts/plot-attention.py" "$work/$name.h5" -o "$work/$name.png" > /dev/null
  "$py" -c "b = open('$work/$name.png', 'rb').read(); assert b[:4] == b'\x89PNG' and len(b) > 10000"
done
echo "plot-attention: image, text and prompt files drawn"
rc=0; "$bin/attention" "$work/img.ck" --prompt "x" > /dev/null 2> "$work/bad.err" || rc=$?
[[ $rc == 2 ]] && grep -q "pass --data" "$work/bad.err"
rc=0; "$bin/attention" "$work/img.ck" --data "$work/img" --samples 96 > /dev/null 2> "$work/bad.err" || rc=$?
[[ $rc == 2 ]] && grep -q "not a sample index in \[0, 96)" "$work/bad.err"
rc=0; "$bin/attention" "$work/img.ck" --data "$work/txt" > /dev/null 2> "$work/bad.err" || rc=$?
[[ $rc == 2 ]] || { echo "a text dataset for an image model: exit $rc"; cat "$work/bad.err"; exit 1; }
echo "bad input: exit 2"
