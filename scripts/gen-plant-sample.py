#!/usr/bin/env python3
"""Writes topologies/samples/plant-line.jsonl: one minute of line 1 in the
gateway's wide-record format (see topologies/plant-line.yaml). Deterministic."""
import json
import math
import random
import sys

rng = random.Random(3)
T0 = 1795334400000  # 2026-11-23T08:00:00Z
out = []
for sec in range(60):
    for p in range(1, 5):
        ts = T0 + sec * 1000 + rng.randint(0, 300)
        temp = 55 + 3 * math.sin(sec / 9 + p) + rng.uniform(-0.5, 0.5)
        if p == 3 and sec >= 20:          # pump 03 overheats
            temp += (sec - 20) * 1.2
        current = 30 + 4 * p + rng.uniform(-1, 1)
        outlet = 5 + 0.1 * p + rng.uniform(-0.1, 0.1)
        if p == 4 and 30 <= sec < 45:     # pump 04 runs dry for 15 s
            current, outlet = 4 + rng.uniform(0, 1), 0.3
        rec = {"device": {"id": "line1-pump-%02d" % p},
               "time": "2026-11-23T08:%02d:%02d.%03dZ" % ((ts - T0) // 60000, (ts - T0) // 1000 % 60, ts % 1000),
               "readings": {"temp_dC": round(temp * 10), "current_A": round(current, 2),
                            "outlet_bar": round(outlet, 2)}}
        out.append((ts, rec))
    if sec % 5 == 0:
        for t, level in (("a", 60 + sec * 0.2), ("b", 80 + sec * 0.3)):
            ts = T0 + sec * 1000 + 500
            out.append((ts, {"device": {"id": "line1-tank-" + t},
                             "time": "2026-11-23T08:00:%02d.500Z" % sec,
                             "readings": {"level_pct": round(level, 1), "temp_dC": 412}}))
out.sort(key=lambda r: r[0])
with open(sys.argv[1] if len(sys.argv) > 1 else "topologies/samples/plant-line.jsonl", "w") as f:
    for _, rec in out:
        f.write(json.dumps(rec, separators=(",", ":")) + "\n")
