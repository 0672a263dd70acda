"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): small valid inputs
of each kind, so that libFuzzer starts from files the readers accept. Run from the repository
root with Debian's python3-h5py: /usr/bin/python3 tests/fuzz/make_corpus.py"""
import os
import shutil

import h5py
import numpy as np

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = np.random.default_rng(7)


def path(target, name):
    return os.path.join(root, target, name)


# JSON Lines: the member kinds, escapes, nesting and the syntax prepare-data meets.
lines = [
    b'{"text": "hello world"}',
    b'{"id": 3, "text": "tab\\tnew\\nline \\u00e9 \\ud83d\\ude00", "meta": {"text": 1}}',
    b'  {"text": null, "x": [1, 2.5e-3, true, false, {"a": []}]}  ',
    b'{"a": {"b": {"c": [[[]]]}}, "text": "deep"}',
    b'{"text": 12}',
    b'{"text": "\\"quoted\\" \\\\ back\\/slash"}',
]
for i, line in enumerate(lines):
    with open(path("fuzz_json_line", f"line{i}"), "wb") as f:
        f.write(line)

# Config text (first byte even) and command lines (first byte odd, arguments split at NUL).
with open(path("fuzz_config", "demo_ini"), "wb") as f:
    f.write(b"\x00" + open("scripts/demo.ini", "rb").read())
with open(path("fuzz_config", "options_ini"), "wb") as f:
    f.write(b"\x00seq-len = 64\nd-model = 48\nlr = 0.000123\nshuffle = local\nzero = 2\n"
            b"trace-steps = 3-9\nckpt-on-error = continue\ncollective-timeout = 12.5\n")
with open(path("fuzz_config", "argv"), "wb") as f:
    f.write(b"\x01" + b"\x00".join([b"--data", b"d/train", b"--steps", b"10", b"--task",
                                    b"classify", b"--patch", b"7", b"--pool", b"cls",
                                    b"--ckpt-async", b"--bucket-mb", b"0.5"]))

# Shards: token shards (contiguous, chunked gzip, with doc_offsets) and sample shards (images,
# texts with lengths, float16 series), as small as they come.
def token_shard(name, tokens, **kw):
    with h5py.File(path("fuzz_shard", name), "w") as f:
        f.create_dataset("tokens", data=tokens, **kw)
        if "offsets" in name:
            f.create_dataset("doc_offsets", data=np.array([0, 40, 90], dtype=np.int64))
        f.attrs["vocab_size"] = 257
        f.attrs["format_version"] = 1


token_shard("tokens_u16", rng.integers(0, 257, 200, dtype=np.uint16))
token_shard("tokens_u8_offsets", rng.integers(0, 200, 150, dtype=np.uint8))
token_shard("tokens_i32_gzip", rng.integers(0, 257, 300, dtype=np.int32), chunks=(64,),
            compression="gzip")
with h5py.File(path("fuzz_shard", "images"), "w") as f:
    f["inputs"] = rng.integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    f["labels"] = np.arange(6) % 3
    f.attrs["format_version"] = 1
with h5py.File(path("fuzz_shard", "texts"), "w") as f:
    f["inputs"] = rng.integers(0, 50, (5, 16), dtype=np.int32)
    f["lengths"] = np.array([16, 3, 9, 1, 12])
    f["labels"] = np.array([0, 1, 1, 0, 1])
    f.attrs["format_version"] = 1
with h5py.File(path("fuzz_shard", "series"), "w") as f:
    f["inputs"] = rng.normal(size=(4, 10, 2)).astype(np.float16)
    f["targets"] = rng.normal(size=(4, 2)).astype(np.float32)
    f.attrs["format_version"] = 1

# Checkpoint metadata: round one's, kept as a test fixture.
shutil.copy("tests/checkpoint/fixtures/round1_step_00000004/meta.h5",
            path("fuzz_ckpt_meta", "round1_meta"))
