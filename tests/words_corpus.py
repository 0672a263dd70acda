#!/usr/bin/env python3
"""Writes a small random-words corpus for the script tests: FILES JSON Lines files of DOCS
documents of WORDS words each, drawn from a fixed 12-word vocabulary with a seeded generator,
as OUT/text0.jsonl, OUT/text1.jsonl, ... (the same bytes for the same arguments)."""
import argparse
import json
import random

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "away", "home"]

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("out")
ap.add_argument("--files", type=int, default=2)
ap.add_argument("--docs", type=int, default=80)
ap.add_argument("--words", type=int, default=60)
ap.add_argument("--seed", type=int, default=5)
a = ap.parse_args()
r = random.Random(a.seed)
for i in range(a.files):
    with open(f"{a.out}/text{i}.jsonl", "w") as f:
        for _ in range(a.docs):
            f.write(json.dumps({"text": " ".join(r.choice(WORDS) for _ in range(a.words))}) + "\n")
