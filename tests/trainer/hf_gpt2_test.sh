#!/usr/bin/env bash
# A language model exported with `ckpt export --names hf-gpt2` loads into Hugging Face's
# GPT2LMHeadModel (its GPT2Config from the file's metadata, the weights from the safetensors
# bytes) and gives the next-token logits our model gives for the same prompt (bin/attention
# --prompt writes ours), within 1e-4. Skipped (77) where python3's torch or transformers is
# not installed (Debian 12 packages neither transformers nor safetensors).
# shellcheck source-path=SCRIPTDIR source=../script_test_lib.sh
source "$(dirname "$0")/../script_test_lib.sh"
if ! "$py" -c "import torch, transformers" 2> /dev/null; then
  echo "SKIP: python3 has no torch and transformers to load the export into"
  exit 77
fi
words_shards 6 1 40
timeout 120 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --data "$work/data/train" \
  --seq-len 24 --d-model 32 --n-layer 2 --n-head 4 --steps 10 --global-batch 8 --micro-batch 4 \
  --threads 1 --log-every 100 --ckpt-dir "$work/ck" > "$work/train.log"
step_dir="$(ls -d "$work"/ck/step_* | tail -n 1)"
"$bin/ckpt" export "$step_dir" "$work/gpt2.safetensors" --names hf-gpt2 > /dev/null
"$bin/attention" "$work/ck" --prompt "the cat sat on" -o "$work/ours.h5" 2> /dev/null
"$py" - "$work" <<'PY'
import json, struct, sys
import h5py, numpy as np, torch
from transformers import GPT2Config, GPT2LMHeadModel
w = sys.argv[1]
raw = open(f"{w}/gpt2.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n]); meta = header.pop("__metadata__")
state = {k: torch.from_numpy(np.frombuffer(raw[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]],
                                           "<f4").reshape(t["shape"]).copy()) for k, t in header.items()}
model = GPT2LMHeadModel(GPT2Config(**json.loads(meta["hf_config"])))
missing, unexpected = model.load_state_dict(state, strict=False)
assert not unexpected, unexpected
assert all(k == "lm_head.weight" or k.endswith(("attn.bias", "attn.masked_bias")) for k in missing), missing
model.tie_weights()
model.eval()
with h5py.File(f"{w}/ours.h5", "r") as f:
    ids = torch.tensor(f["inputs"][0][None].astype(np.int64))
    ours = f["logits"][0]
with torch.no_grad():
    theirs = model(ids).logits[0, -1].numpy()
diff = float(np.abs(theirs - ours).max())
assert diff < 1e-4, f"GPT2LMHeadModel's next-token logits differ from ours by {diff}"
print(f"transformers GPT2LMHeadModel on the export: next-token logits within {diff:.1e} of ours")
PY
