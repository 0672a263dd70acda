#!/usr/bin/env bash
# prepare-data end to end: the shards h5py reads back hold exactly the documents written (text
# with separators, JSON Lines with escapes), whatever the thread count or compression; bad input
# exits 2 with a message naming what to fix.
set -euo pipefail

: "${DPT_BIN:?set DPT_BIN to the bin directory of a build}"
PY=${PYTHON:-/usr/bin/python3}
PREP="$DPT_BIN/prepare-data"
[[ -x $PREP ]] || { echo "FAIL: $PREP not found; build the prepare-data target" >&2; exit 1; }
"$PY" -c 'import h5py, numpy' 2>/dev/null ||
  { echo "FAIL: $PY lacks h5py/numpy; set PYTHON to a python that has them" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

SHARD_TOKENS=3000
CHUNK_TOKENS=256

# Inputs and the documents they hold, in input order (expected.pkl).
mkdir in
"$PY" - <<'EOF'
import json, pickle, random

rng = random.Random(7)
words = ["alpha", "beta", "gamma", "délta", "ε", "日本", "fortune", "cookie", "x", "--", "%%"]

def text(i):
    n = rng.randint(1, 30)
    lines = []
    for _ in range(rng.randint(1, 4)):
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, n))))
    return f"doc {i}: " + "\n".join(lines) + "\n"

expected = []  # per input file: list of document bytes
doc_id = 0

# Text files: a '%' line separates documents; empty documents (a leading separator, two in a
# row) are dropped; a CRLF separator counts; the last document may lack its newline.
for name, flavour in [("a.txt", "plain"), ("b.txt", "edges"), ("c.txt", "crlf")]:
    docs = []
    for _ in range(100):
        docs.append(text(doc_id).encode())
        doc_id += 1
    if flavour == "plain":
        body = b"".join(d + b"%\n" for d in docs)
    elif flavour == "edges":
        body = b"%\n" + b"%\n%\n".join(docs) + b"%\n%\n"
        body = body + b"no newline at the end"
        docs.append(b"no newline at the end")
    else:
        body = b"".join(d + b"%\r\n" for d in docs)
    open(f"in/{name}", "wb").write(body)
    expected.append(docs)

# JSON Lines: escapes (\u00e9, a surrogate pair, \n, \", \\, \t, \u0001), raw UTF-8, nested
# members to skip, blank lines, an empty text (dropped), the field not first.
lines, docs = [], []
specials = ["caf\u00e9", "\U0001F600 smile", "line1\nline2", 'say "hi"', "back\\slash",
            "tab\there", "ctl\u0001", "/slash/", "\u65e5\u672c\u8a9e"]
for k in range(100):
    s = f"json {doc_id}: " + " ".join(rng.choice(specials) for _ in range(rng.randint(1, 5)))
    doc_id += 1
    obj = {"id": k, "meta": {"tags": [1, -2.5e3, True, None, {"a": "}"}], "x": 0.5},
           "text": s}
    ascii_only = k % 2 == 0
    lines.append(json.dumps(obj, ensure_ascii=ascii_only))
    docs.append(s.encode("utf-8"))
    if k % 17 == 0:
        lines.append("   ")
    if k == 50:
        lines.append('{"text": "", "id": -1}')
lines.append('  {"id": 1e-3, "text" : "caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\n\\/end"}  ')
docs.append("café 😀 \"q\" \n/end".encode("utf-8"))
open("in/d.jsonl", "w", encoding="utf-8").write("\n".join(lines) + "\n")
expected.append(docs)
pickle.dump(expected, open("expected.pkl", "wb"))
EOF

inputs=(in/a.txt in/b.txt in/c.txt in/d.jsonl)
common=(--doc-separator % --val-fraction 0.2 --shard-tokens "$SHARD_TOKENS"
  --chunk-tokens "$CHUNK_TOKENS")

# Checks one output directory against expected.pkl: shard layout, attributes, doc_offsets, and
# the documents of train and val merged back in input order.
cat >verify.py <<'EOF'
import glob, pickle, sys
import h5py, numpy as np

out, shard_tokens, chunk, compression = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
compression = None if compression == "none" else compression
EOT = 256
expected = [d for docs in pickle.load(open("expected.pkl", "rb")) for d in docs]

def split_docs(split):
    paths = sorted(glob.glob(f"{out}/{split}/*.h5"))
    assert paths, f"no shards in {out}/{split}"
    parts = []
    for i, p in enumerate(paths):
        assert p.endswith(f"shard-{i:06d}.h5"), p
        with h5py.File(p, "r") as f:
            t = f["tokens"]
            assert t.dtype == np.uint16, (p, t.dtype)
            assert t.chunks == (chunk,), (p, t.chunks)
            assert t.compression == compression, (p, t.compression)
            assert f.attrs["vocab_size"] == 257 and f.attrs["format_version"] == 1, dict(f.attrs)
            tokens = t[:]
            offsets = f["doc_offsets"][:]
        assert offsets.dtype == np.int64
        if i < len(paths) - 1:
            assert len(tokens) == shard_tokens, (p, len(tokens))
        else:
            assert 0 < len(tokens) <= shard_tokens, (p, len(tokens))
        # Each document's EOT starts one, and a document continued from the previous shard
        # starts at 0.
        want = np.flatnonzero(tokens == EOT)
        if tokens[0] != EOT:
            want = np.concatenate([[0], want])
        assert np.array_equal(offsets, want), (p, offsets[:10], want[:10])
        assert tokens.max() <= EOT
        parts.append(tokens)
    stream = np.concatenate(parts)
    assert stream[0] == EOT, "a split must start with end-of-text"
    starts = list(np.flatnonzero(stream == EOT)) + [len(stream)]
    docs = [stream[a + 1:b].astype(np.uint8).tobytes() for a, b in zip(starts, starts[1:])]
    return docs, len(paths)

train, train_shards = split_docs("train")
val, val_shards = split_docs("val")
assert len(train) + len(val) == len(expected), (len(train), len(val), len(expected))
ti = vi = 0
for k, doc in enumerate(expected):  # documents are unique, so the merge is unambiguous
    if ti < len(train) and train[ti] == doc:
        ti += 1
    elif vi < len(val) and val[vi] == doc:
        vi += 1
    else:
        raise AssertionError(f"document {k} ({doc[:40]!r}) is not next in train or val")
frac = len(val) / len(expected)
assert 0.1 < frac < 0.3, f"val fraction {frac:.3f}, asked for 0.2"
assert train_shards >= 2, "expected several train shards"
print(f"{len(expected)} documents (val {frac:.2f}), shards train {train_shards} val {val_shards}")
EOF

# (a) text with separators + JSON Lines -> documents back exactly.
"$PREP" --out outA --threads 2 "${common[@]}" "${inputs[@]}" >logA.txt
grep -q "documents  train" logA.txt || fail "(a) no summary on stdout: $(cat logA.txt)"
"$PY" verify.py outA $SHARD_TOKENS $CHUNK_TOKENS none || fail "(a) verify outA"
echo "ok documents round-trip through text, JSON Lines and shards"

# (b) gzip: the filter is set and the tokens are the same.
"$PREP" --out outB --threads 2 "${common[@]}" --compression gzip --gzip-level 6 \
  "${inputs[@]}" >/dev/null
"$PY" verify.py outB $SHARD_TOKENS $CHUNK_TOKENS gzip || fail "(b) verify outB"
cat >same_tokens.py <<'EOF'
import glob, sys
import h5py, numpy as np
a, b = sys.argv[1], sys.argv[2]
pa = sorted(glob.glob(f"{a}/*/*.h5"))
pb = sorted(glob.glob(f"{b}/*/*.h5"))
assert [p[len(a):] for p in pa] == [p[len(b):] for p in pb], "different shard files"
for x, y in zip(pa, pb):
    with h5py.File(x, "r") as f, h5py.File(y, "r") as g:
        for name in ("tokens", "doc_offsets"):
            assert np.array_equal(f[name][:], g[name][:]), f"{x} vs {y}: {name} differ"
EOF
"$PY" same_tokens.py outA outB || fail "(b) gzip tokens differ"
echo "ok gzip shards carry the gzip filter and the same tokens"

# (c) one worker thread gives the same tokens, and the same bytes, as two.
"$PREP" --out outC --threads 1 "${common[@]}" "${inputs[@]}" >/dev/null
"$PY" same_tokens.py outA outC || fail "(c) --threads 1 and 2 differ"
for f in outA/*/*.h5; do
  cmp -s "$f" "outC/${f#outA/}" || fail "(c) $f differs byte-wise from --threads 1"
done
echo "ok --threads 1 and --threads 2 write identical shards"

# (d) errors: exit 2 and one line naming the problem.
expect_usage_error() {
  local name=$1 want=$2
  shift 2
  local rc=0
  "$PREP" "$@" >out.txt 2>err.txt || rc=$?
  [[ $rc == 2 ]] || fail "$name: exit code $rc, want 2; stderr: $(cat err.txt)"
  grep -qF -- "$want" err.txt || fail "$name: message lacks '$want': $(cat err.txt)"
  grep -q '^prepare-data: error: ' err.txt || fail "$name: message format: $(cat err.txt)"
  [[ $(wc -l <err.txt) == 1 ]] || fail "$name: want one line on stderr: $(cat err.txt)"
  echo "ok $name exits 2: $(cut -c1-110 err.txt)"
}
printf '{"text": "one"}\n{"text": "two"}\n{"text": "three",}\n' >in/bad.jsonl
printf '{"text": "one"}\n{"body": "two", "id": 2}\n' >in/nofield.jsonl
printf '{"text": "one"}\n{"text": ["two"]}\n' >in/notstring.jsonl

expect_usage_error missing-input "in/nope.txt" --out outD in/a.txt in/nope.txt
expect_usage_error no-inputs "no input files" --out outD
expect_usage_error bad-json "in/bad.jsonl:3:" --out outD in/a.txt in/bad.jsonl
expect_usage_error missing-field 'in/nofield.jsonl:2: the object has no member "text"' \
  --out outD in/nofield.jsonl
expect_usage_error non-string-field 'in/notstring.jsonl:2: member "text" is an array' \
  --out outD in/notstring.jsonl
expect_usage_error bad-val-fraction "--val-fraction" --out outD --val-fraction 1.5 in/a.txt
expect_usage_error existing-shards "--overwrite" --out outA "${common[@]}" "${inputs[@]}"
if compgen -G "outD/*/*.h5" >/dev/null; then fail "a failed run left shards in outD"; fi
echo "ok failed runs leave no shards behind"

"$PREP" --out outA --overwrite --threads 2 "${common[@]}" "${inputs[@]}" >/dev/null
"$PY" same_tokens.py outA outC || fail "--overwrite output differs"
echo "ok --overwrite replaces existing shards"
echo "ok prepare_data_test"
