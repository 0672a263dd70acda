#!/usr/bin/env bash
# scripts/plot-metrics.py on metrics files shaped like bin/train's (steps, validation lines with
# accuracy, an event line, a skipped step with nulls) writes a PNG, two runs overlaid; a file
# that is not JSON Lines is refused with a message naming it and the line.
set -euo pipefail
py=/usr/bin/python3
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py" - "$work" <<'PY'
import json, math, sys
w = sys.argv[1]
for name, acc in (("a", True), ("b", False)):
    with open(f"{w}/{name}.jsonl", "w") as f:
        for s in range(1, 41):
            r = {"step": s, "loss": 3 * math.exp(-s / 10) + 0.1, "lr": 1e-3, "grad_norm": 1.0,
                 "tokens": s * 100, "tokens_per_s": 5000.0, "step_ms": 20.0, "mfu": 0.3}
            if s == 7:
                r.update(loss=None, grad_norm=None, skipped=True)
            f.write(json.dumps(r) + "\n")
            if s % 10 == 0:
                v = {"step": s, "val_loss": 3 * math.exp(-s / 12) + 0.2}
                if acc:
                    v["val_accuracy"] = 1 - math.exp(-s / 15)
                f.write(json.dumps(v) + "\n")
        f.write(json.dumps({"event": "checkpoint", "step": 40, "path": "x"}) + "\n")
PY
"$py" "$root/scripts/plot-metrics.py" "$work/a.jsonl" "$work/b.jsonl" -o "$work/run.png"
"$py" -c "
import sys
b = open('$work/run.png', 'rb').read()
assert b[:8] == b'\x89PNG\r\n\x1a\n' and len(b) > 20000, len(b)
print('plot-metrics: wrote a', len(b), 'byte PNG')
"
echo "not json" > "$work/bad.jsonl"
if "$py" "$root/scripts/plot-metrics.py" "$work/bad.jsonl" -o "$work/bad.png" 2> "$work/err"; then
  echo "a file that is not JSON Lines was plotted"; exit 1
fi
grep -q "bad.jsonl line 1 is not JSON" "$work/err"
echo "plot-metrics: a bad file is named with its line"
