#!/usr/bin/env bash
# Every bad input of the shard validation ends a 2-rank training run before step 1 with exit
# code 2 and one message from rank 0 naming the file (or path), what is wrong, and the fix; no
# rank hangs (each case runs under a 60 s timeout). The shards are written with h5py, as users
# write them.
set -uo pipefail
bin="${DPT_BIN:?set by ctest}"
src="${DPT_SOURCE:?set by ctest}"
mpiexec="${MPIEXEC:-mpiexec}"
python="${PYTHON:-/usr/bin/python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" "$src/tests/datasets/make_bad_shards.py" "$work" || {
  echo "FAIL: writing the shards with h5py failed (scripts/install-deps.sh installs python3-h5py)"
  exit 1
}
fails=0

# expect NAME DATA PATTERN REGEX [ARGS...]: train --data DATA on 2 ranks exits 2; stderr holds
# exactly one line with PATTERN (fixed text), and that line matches REGEX (case-insensitive).
expect() {
  local name="$1" data="$2" pattern="$3" regex="$4"
  shift 4
  local err="$work/$name.err"
  timeout 60 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --data "$data" \
    --steps 1 --seq-len 16 --d-model 16 --n-layer 1 --n-head 2 --global-batch 4 \
    --micro-batch 2 --threads 1 "$@" >"$work/$name.out" 2>"$err"
  local rc=$?
  local lines
  lines=$(grep -cF -- "$pattern" "$err")
  if [[ $rc -ne 2 || $lines -ne 1 ]] || ! grep -F -- "$pattern" "$err" | grep -qiE -- "$regex"; then
    echo "FAIL $name: exit $rc (want 2), $lines line(s) with '$pattern' (want 1) matching /$regex/"
    sed 's/^/    stderr: /' "$err" | head -10
    fails=$((fails + 1))
  else
    echo "ok   $name: $(grep -F -- "$pattern" "$err")"
  fi
}

expect no_such_path "$work/nope" "$work/nope" "no such file"
expect glob_matches_nothing "$work/*.h5" "$work/*.h5" "matches no file"
expect empty_directory "$work/empty_dir" "$work/empty_dir" "no \*\.h5"
expect unreadable "$work/unreadable/*.h5" "unreadable/bad.h5" "not a regular file|cannot read|unreadable"
expect not_hdf5 "$work/not_hdf5" "not_hdf5/bad.h5" "not an HDF5 file"
expect no_tokens "$work/no_tokens" "no_tokens/bad.h5" "/tokens"
expect tokens_2d "$work/tokens_2d" "tokens_2d/bad.h5" "/tokens.*(1-D|one-dimensional|dimension)"
expect tokens_float "$work/tokens_float" "tokens_float/bad.h5" "/tokens.*float"
expect tokens_negative "$work/tokens_negative" "tokens_negative/bad.h5" "negative.*-7|-7.*negative"
expect tokens_int64 "$work/tokens_int64" "tokens_int64/bad.h5" "/tokens.*(64|int64)"
expect id_above_shard_vocab "$work/id_above_vocab" "id_above_vocab/bad.h5" "300.*256|256.*300"
expect id_above_model_vocab "$work/model_vocab" "model_vocab/a.h5" "--vocab-size 100" \
  --vocab-size 100
expect shard_shorter_than_a_sample "$work/too_short" "too_short/bad.h5" "fewer than one sample"
expect vocab_differs_between_shards "$work/vocab_differs" "vocab_differs/bad.h5" "512.*256|256.*512"
expect doc_offsets_unordered "$work/doc_offsets_unordered" "doc_offsets_unordered/bad.h5" "/doc_offsets"
expect doc_offsets_first_not_zero "$work/doc_offsets_first_not_zero" \
  "doc_offsets_first_not_zero/bad.h5" "/doc_offsets"
expect doc_offsets_past_end "$work/doc_offsets_past_end" "doc_offsets_past_end/bad.h5" "/doc_offsets"
expect no_vocab_size "$work/no_vocab_size" "no_vocab_size/bad.h5" "vocab_size"
expect format_version_2 "$work/format_version_2" "format_version_2/bad.h5" "format_version"
expect truncated "$work/truncated" "truncated/bad.h5" "truncat|damaged"
expect external_link "$work/external_link" "external_link/bad.h5" \
  "/tokens is an external link to .*elsewhere/outside.h5:/tokens"
expect soft_link_to_external "$work/soft_to_external" "soft_to_external/bad.h5" \
  "/tokens leads to an object in another file, .*elsewhere/outside.h5"
expect virtual_dataset "$work/virtual_dataset" "virtual_dataset/bad.h5" \
  "/tokens is a virtual dataset .*elsewhere/outside.h5"
expect external_storage "$work/external_storage" "external_storage/bad.h5" \
  "/tokens keeps its data in 1 external file.*elsewhere/tokens.raw"
expect sample_external_link "$work/sample_external" "sample_external/bad.h5" \
  "/inputs is an external link to .*elsewhere/samples.h5:/inputs"
expect val_data_bad "$work/model_vocab" "not_hdf5/bad.h5" "not an HDF5 file" \
  --val-data "$work/not_hdf5"

# Different files behind the same path on the two ranks (as on two nodes without a shared
# filesystem): refused before any rank trains on a different global batch.
launcher="$work/rank1_other.sh"
cat > "$launcher" <<INNER
#!/usr/bin/env bash
if [[ \$OMPI_COMM_WORLD_RANK == 0 ]]; then d="$work/model_vocab"; else d="$work/too_short"; fi
exec "$bin/train" --data "\$d" "\$@"
INNER
chmod +x "$launcher"
err="$work/differ.err"
timeout 60 "$mpiexec" -n 2 --oversubscribe --bind-to none "$launcher" --steps 1 --seq-len 16 \
  --d-model 16 --n-layer 1 --n-head 2 --global-batch 4 --micro-batch 2 >/dev/null 2>"$err"
rc=$?
if [[ $rc -eq 2 ]] && grep -q "resolves to different shards on rank 0" "$err"; then
  echo "ok   data_differs_between_ranks: $(head -1 "$err")"
else
  echo "FAIL data_differs_between_ranks: exit $rc"; sed 's/^/    stderr: /' "$err" | head
  fails=$((fails + 1))
fi

echo "$fails failed"
[[ $fails -eq 0 ]]
