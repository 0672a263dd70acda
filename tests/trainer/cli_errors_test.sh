#!/usr/bin/env bash
# Each bad configuration ends a 2-rank run with exit code 2, one message from rank 0 saying
# what to change, and no rank left hanging (every case runs under a 60 s timeout).
set -uo pipefail
bin="${DPT_BIN:?set by ctest}"
mpiexec="${MPIEXEC:-mpiexec}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
head -c 20000 /dev/urandom | base64 > "$work/text.txt"
"$bin/prepare-data" --out "$work/prepared" --val-fraction 0 "$work/text.txt" >/dev/null
data="$work/prepared/train"
fails=0

# expect_exit2 NAME PATTERN COMMAND...: COMMAND on 2 ranks exits 2 with PATTERN in stderr
# exactly once.
expect_exit2() {
  local name="$1" pattern="$2"
  shift 2
  local out="$work/$name.out" err="$work/$name.err"
  timeout 60 "$mpiexec" -n 2 --oversubscribe --bind-to none "$@" >"$out" 2>"$err"
  local rc=$?
  local count
  count=$(grep -cF -- "$pattern" "$err")
  if [[ $rc -ne 2 || $count -ne 1 ]]; then
    echo "FAIL $name: exit $rc (want 2), message found $count time(s) (want 1): $pattern"
    sed 's/^/    stderr: /' "$err" | head -20
    fails=$((fails + 1))
  else
    echo "ok   $name: $(grep -F -- "$pattern" "$err" | head -1)"
  fi
}

# expect_usage_error NAME PATTERN ARGS...: train ARGS on 2 ranks fails as expect_exit2 says.
expect_usage_error() {
  local name="$1" pattern="$2"
  shift 2
  expect_exit2 "$name" "$pattern" "$bin/train" "$@"
}

# rank1_data FILE: prints the path of a launcher that runs train with --data data.bin on rank 0
# and --data FILE on rank 1 (as two nodes that see different files), then its own arguments.
rank1_data() {
  local launcher="$work/rank1_$(basename "$1").sh"
  cat > "$launcher" <<INNER
#!/usr/bin/env bash
if [[ \$OMPI_COMM_WORLD_RANK == 0 ]]; then d="$data"; else d="$1"; fi
exec "$bin/train" --data "\$d" "\$@"
INNER
  chmod +x "$launcher"
  echo "$launcher"
}

common=(--steps 1 --seq-len 16 --d-model 16 --n-layer 1 --n-head 2)
expect_usage_error global_batch_not_divisible \
  "--global-batch 6 is not divisible by ranks x --micro-batch = 2 x 4 = 8" \
  --data "$data" "${common[@]}" --global-batch 6 --micro-batch 4
expect_usage_error heads_do_not_divide \
  "--n-head 3 does not divide --d-model 16" \
  --data "$data" --steps 1 --seq-len 16 --d-model 16 --n-layer 1 --n-head 3 \
  --global-batch 4 --micro-batch 2
expect_usage_error missing_data \
  "--data $work/nope.h5: no such file or directory" \
  --data "$work/nope.h5" "${common[@]}" --global-batch 4 --micro-batch 2
expect_usage_error seq_len_longer_than_data \
  "fewer than one sample of --seq-len + 1 = 40001" \
  --data "$data" --steps 1 --seq-len 40000 --d-model 16 --n-layer 1 --n-head 2 \
  --global-batch 4 --micro-batch 2
expect_usage_error unknown_option "unrecognised option '--d-modle'" \
  --data "$data" --d-modle 5
expect_usage_error bad_value "--steps" \
  --data "$data" --steps many
expect_usage_error vocab_too_small "not below --vocab-size 100: raise --vocab-size" \
  --data "$data" "${common[@]}" --global-batch 4 --micro-batch 2 --vocab-size 100
expect_usage_error no_data "no training data: pass --data SHARDS" "${common[@]}"
printf 'd-model = 16\nn-head = 5\n' > "$work/bad.ini"
expect_usage_error config_file_value "--n-head 5 does not divide --d-model 16" \
  --config "$work/bad.ini" --data "$data" --global-batch 4 --micro-batch 2
# --device cuda where it cannot be had: no CUDA in the build, no GPU, or (on a one-GPU machine)
# two ranks that would share it.
if [[ ! -x $bin/gpt_cuda_test ]]; then
  cuda_msg="--device cuda, but this build has no CUDA"
elif nvidia-smi -L >/dev/null 2>&1; then
  cuda_msg="--device cuda: "
else
  cuda_msg="--device cuda: no GPU visible to any rank"
fi
expect_usage_error device_cuda_without_gpu "$cuda_msg" \
  --data "$data" "${common[@]}" --global-batch 4 --micro-batch 2 --device cuda
expect_usage_error bf16_on_cpu "--dtype bf16 needs --device cuda" \
  --data "$data" "${common[@]}" --global-batch 4 --micro-batch 2 --device cpu --dtype bf16
expect_usage_error metrics_unwritable "--metrics $work/no/such/dir/m.jsonl: cannot open" \
  --data "$data" "${common[@]}" --global-batch 4 --micro-batch 2 \
  --metrics "$work/no/such/dir/m.jsonl"

# A file readable on rank 0 only: the ranks agree on the failure instead of rank 0 waiting in
# a collective.
expect_exit2 data_missing_on_one_rank "on rank 1: --data $work/only-on-rank0.h5" \
  "$(rank1_data "$work/only-on-rank0.h5")" "${common[@]}" --global-batch 4 --micro-batch 2

# A failed start leaves an existing metrics file untouched.
echo '{"step": 1}' > "$work/keep.jsonl"
timeout 60 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --data "$work/nope.h5" \
  "${common[@]}" --global-batch 4 --micro-batch 2 --metrics "$work/keep.jsonl" >/dev/null 2>&1
if [[ "$(cat "$work/keep.jsonl")" == '{"step": 1}' ]]; then
  echo "ok   failed_start_keeps_metrics"
else
  echo "FAIL failed_start_keeps_metrics: the file was truncated"; fails=$((fails + 1))
fi

# --help exits 0 and lists the options.
if timeout 60 "$mpiexec" -n 2 --oversubscribe --bind-to none "$bin/train" --help >"$work/help.out" 2>&1 &&
  grep -q -- "--global-batch" "$work/help.out"; then
  echo "ok   help"
else
  echo "FAIL help"; fails=$((fails + 1))
fi

echo "$fails failed"
[[ $fails -eq 0 ]]
