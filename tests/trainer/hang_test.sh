#!/usr/bin/env bash
# [Hang diagnosis] through bin/train on 3 ranks with --collective-timeout 4:
#   - missing:   rank 2 stopped with SIGSTOP mid-training: ranks 0 and 1 each report rank 2,
#                with its host and pid, as missing; the job ends with exit code 3 within the
#                timeout plus 30 s of the stop;
#   - rank 0 missing: the others say that rank 0's heartbeat service does not answer and name
#                rank 0, with its host and pid, as the likely missing rank;
#   - disagree:  --fault-skip-collective 7 (rank 2 skips step 7's vote all-reduce): ranks 0 and
#                1 report that rank 2 disagrees on the same collective number (another
#                signature), rank 2 that ranks 0-1 do; exit code 3 within the bound;
#   - no false alarm: the same run without the fault finishes with exit code 0.
# Rank 0's report also ends its metrics file, as an {"event": "hang"} line.
source "$(dirname "$0")/../script_test_lib.sh"

words_shards 3
timeout_s=4
bound=$((timeout_s + 30))
# Each rank records its pid (exec keeps it), so that the test can stop one.
cat > "$work/rank.sh" << EOF
#!/usr/bin/env bash
echo \$\$ > "$work/pid.\$OMPI_COMM_WORLD_RANK"
exec "$bin/train" "\$@"
EOF
chmod +x "$work/rank.sh"
args=(--data "$work/data/train" --seq-len 16 --d-model 16 --n-layer 1 --n-head 2
      --global-batch 6 --micro-batch 2 --threads 1 --log-every 20 --collective-timeout "$timeout_s")
launch() {  # launch NAME [ARGS...]: 3 ranks in the background; $job is the launcher's pid
  local name="$1"
  shift
  rm -f "$work"/pid.*
  timeout 120 "$mpiexec" -n 3 --oversubscribe --bind-to none "$work/rank.sh" "${args[@]}" "$@" \
    > "$work/$name.out" 2> "$work/$name.err" &
  job=$!
}
# ends NAME START: waits for the job; fails unless it ended with exit code 3 within the bound.
ends() {
  local rc=0
  wait "$job" || rc=$?
  local took=$(($(date +%s) - $2))
  echo "$1: exit $rc after ${took} s"
  if [[ $rc != 3 || $took -gt $bound ]]; then
    echo "FAIL $1: want exit 3 within $bound s"
    cat "$work/$1.err"
    exit 1
  fi
}
# has NAME REGEX [COUNT]: the report holds COUNT (default 1) lines matching REGEX.
has() {
  local n
  n=$(grep -cE -- "$2" "$work/$1.err" || true)
  [[ $n == "${3:-1}" ]] || { echo "FAIL $1: $n line(s) match /$2/, want ${3:-1}"; cat "$work/$1.err"; exit 1; }
}
# stop_rank NAME R: once the run is training, SIGSTOP rank R; prints its pid.
stop_rank() {
  for _ in $(seq 600); do
    [[ -s $work/pid.$2 ]] && grep -q "^step" "$work/$1.out" && sleep 1 && break
    sleep 0.05
  done
  local pid
  pid=$(cat "$work/pid.$2")
  kill -STOP "$pid"
  echo "$pid"
}
# stopped NAME R: a long run whose rank R is stopped once it trains must end as `ends` says;
# sets pid to the stopped rank's (killed afterwards: the launcher may leave it stopped).
stopped() {
  launch "$1" --steps 1000000 --metrics "$work/$1.jsonl"
  pid=$(stop_rank "$1" "$2")
  ends "$1" "$(date +%s)"
  kill -9 "$pid" 2> /dev/null || true
}
host=$(hostname)

# ---- a stopped rank ---------------------------------------------------------------------------
stopped missing 2
for r in 0 1; do
  has missing "^train: error: rank $r \($host, pid [0-9]+\): collective #[0-9]+ .* has not completed in [0-9.]+ s \(--collective-timeout $timeout_s\)"
  has missing "^train: rank $r:   rank 2 \($host, pid $pid\): missing: not heard from for [0-9.]+ s"
  has missing "^train: rank $r: diagnosis: rank 2 is missing: .*exit code 3"
done
echo "ok   missing: $(grep -m1 'rank 0:   rank 2' "$work/missing.err")"
# hang_event NAME KEY=JSON...: the metrics file's last line is a hang event with these fields.
hang_event() {
  local name="$1"
  shift
  "$py" - "$work/$name.jsonl" "$@" << 'EOF'
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
for want in sys.argv[2:]:
    key, value = want.split("=", 1)
    if last.get("event") != "hang" or last.get(key) != json.loads(value):
        sys.exit(f"FAIL {sys.argv[1]}: last line {last}: want event hang, {key} = {value}")
print(f"ok   metrics: {json.dumps(last)[:200]}")
EOF
}
hang_event missing rank=0 missing=[2] disagrees=[] behind=[] service_answered=true

# ---- rank 0 stopped: its heartbeat service with it ---------------------------------------------
stopped missing0 0
for r in 1 2; do
  has missing0 "^train: rank $r: diagnosis: the heartbeat service on rank 0 \($host, pid $pid\) did not answer: .*likely missing rank"
done
echo "ok   rank 0 missing: $(grep -m1 'rank 1: diagnosis' "$work/missing0.err")"

# ---- ranks that disagree ----------------------------------------------------------------------
launch disagree --steps 100 --fault-skip-collective 7 --metrics "$work/disagree.jsonl"
t0=$(date +%s)
ends disagree "$t0"
for r in 0 1; do
  has disagree "^train: rank $r:   rank 2 \($host, pid [0-9]+\): disagrees: its collective #([0-9]+) is all_reduce\(f32 avg, .*\), here all_reduce\(f64 max, 56 B\); at step 8"
  has disagree "^train: rank $r: diagnosis: the ranks disagree on collective #[0-9]+: rank 2 called"
done
has disagree "^train: rank 2: diagnosis: the ranks disagree on collective #[0-9]+: ranks 0-1 called"
echo "ok   disagree: $(grep -m1 'rank 0:   rank 2' "$work/disagree.err")"
hang_event disagree rank=0 missing=[] disagrees=[2] signature='"all_reduce(f64 max, 56 B)"'

# ---- no false alarm ---------------------------------------------------------------------------
launch clean --steps 100
rc=0
wait "$job" || rc=$?
[[ $rc == 0 ]] || { echo "FAIL clean: exit $rc"; cat "$work/clean.err"; exit 1; }
! grep -q "collective-timeout\|heartbeat" "$work/clean.err" || { cat "$work/clean.err"; exit 1; }
echo "ok   no false alarm: a 100-step run with --collective-timeout $timeout_s ends with exit 0"
