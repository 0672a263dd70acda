"""Writes one directory per bad-input case of the shard validation (tests/datasets/bad_data_test.sh),
each holding a valid shard good.h5 next to the bad one, with h5py as users write shards."""
import os
import sys

import h5py
import numpy as np

root = sys.argv[1]
rng = np.random.default_rng(5)


def shard(path, tokens, vocab=256, version=1, doc_offsets=None, **dataset_args):
    with h5py.File(path, "w") as f:
        f.create_dataset("tokens", data=tokens, **dataset_args)
        if doc_offsets is not None:
            f.create_dataset("doc_offsets", data=np.asarray(doc_offsets, dtype=np.int64))
        if vocab is not None:
            f.attrs["vocab_size"] = vocab
        if version is not None:
            f.attrs["format_version"] = version


def case(name):
    d = os.path.join(root, name)
    os.makedirs(d)
    shard(os.path.join(d, "good.h5"), rng.integers(0, 200, 5000, dtype=np.uint16), chunks=(1024,))
    return d


good = rng.integers(0, 200, 5000, dtype=np.uint16)
os.makedirs(os.path.join(root, "empty_dir"))
os.makedirs(os.path.join(case("unreadable"), "bad.h5"))  # a directory where a shard should be
with open(os.path.join(case("not_hdf5"), "bad.h5"), "w") as f:
    f.write("this is a text file, not an HDF5 file\n" * 100)
with h5py.File(os.path.join(case("no_tokens"), "bad.h5"), "w") as f:
    f.create_dataset("ids", data=good)
    f.attrs["vocab_size"] = 256
    f.attrs["format_version"] = 1
shard(os.path.join(case("tokens_2d"), "bad.h5"), good.reshape(50, 100))
shard(os.path.join(case("tokens_float"), "bad.h5"), good.astype(np.float32))
neg = good.astype(np.int32)
neg[1234] = -7
shard(os.path.join(case("tokens_negative"), "bad.h5"), neg)
shard(os.path.join(case("tokens_int64"), "bad.h5"), good.astype(np.int64))
high = good.copy()
high[4321] = 300  # above the shard's own vocab_size 256
shard(os.path.join(case("id_above_vocab"), "bad.h5"), high, chunks=(1024,))
shard(os.path.join(case("too_short"), "bad.h5"), good[:10])
shard(os.path.join(case("vocab_differs"), "bad.h5"), good, vocab=512)
shard(os.path.join(case("doc_offsets_unordered"), "bad.h5"), good, doc_offsets=[0, 100, 50])
shard(os.path.join(case("doc_offsets_first_not_zero"), "bad.h5"), good, doc_offsets=[3, 100])
shard(os.path.join(case("doc_offsets_past_end"), "bad.h5"), good, doc_offsets=[0, 5000])
shard(os.path.join(case("no_vocab_size"), "bad.h5"), good, vocab=None)
shard(os.path.join(case("format_version_2"), "bad.h5"), good, version=2)
# Truncated after the header: a valid, contiguous shard cut in half.
trunc = os.path.join(case("truncated"), "bad.h5")
shard(trunc, rng.integers(0, 200, 200000, dtype=np.uint16))
with open(trunc, "r+b") as f:
    f.truncate(os.path.getsize(trunc) // 2)
# Ids below the shards' vocab_size 256 but not below a model --vocab-size of 100.
os.makedirs(os.path.join(root, "model_vocab"))
shard(os.path.join(root, "model_vocab", "a.h5"), good, chunks=(1024,))

# [Foreign data]: datasets whose bytes live in another file, each refused before it is read.
# The file they point at is a good shard outside the dataset's directory.
os.makedirs(os.path.join(root, "elsewhere"))
outside = os.path.join(root, "elsewhere", "outside.h5")
shard(outside, good)
raw = os.path.join(root, "elsewhere", "tokens.raw")
good.astype("<u2").tofile(raw)
with h5py.File(os.path.join(case("external_link"), "bad.h5"), "w") as f:
    f["tokens"] = h5py.ExternalLink(outside, "/tokens")
    f.attrs["vocab_size"] = 256
    f.attrs["format_version"] = 1
with h5py.File(os.path.join(case("soft_to_external"), "bad.h5"), "w") as f:
    f["far"] = h5py.ExternalLink(outside, "/tokens")
    f["tokens"] = h5py.SoftLink("/far")
    f.attrs["vocab_size"] = 256
    f.attrs["format_version"] = 1
layout = h5py.VirtualLayout(shape=good.shape, dtype=np.uint16)
layout[:] = h5py.VirtualSource(outside, "tokens", shape=good.shape)
with h5py.File(os.path.join(case("virtual_dataset"), "bad.h5"), "w") as f:
    f.create_virtual_dataset("tokens", layout)
    f.attrs["vocab_size"] = 256
    f.attrs["format_version"] = 1
shard(os.path.join(case("external_storage"), "bad.h5"), None, shape=good.shape, dtype="<u2",
      external=[(raw, 0, good.nbytes)])
# A sample shard (texts of 16 tokens) whose /inputs is an external link.
os.makedirs(os.path.join(root, "sample_external"))
with h5py.File(os.path.join(root, "elsewhere", "samples.h5"), "w") as f:
    f["inputs"] = rng.integers(0, 200, (32, 16), dtype=np.int32)
with h5py.File(os.path.join(root, "sample_external", "bad.h5"), "w") as f:
    f["inputs"] = h5py.ExternalLink(os.path.join(root, "elsewhere", "samples.h5"), "/inputs")
    f["labels"] = np.arange(32) % 2
    f.attrs["format_version"] = 1
