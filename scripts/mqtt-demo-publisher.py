#!/usr/bin/env python3
"""Prints the readings of simulated pumps as JSON lines, in real time, for
`mosquitto_pub -l` (scripts/demo-mqtt.sh).

Each pump's temperature swings between about 60 and 100 degC over a minute
(a phase of its own, so some pump is always heating up) with noise;
vibration wanders around 6 mm/s with rare bursts. Usage:
    mqtt-demo-publisher.py [PUMPS] [PERIOD_SECONDS]
"""
import json
import math
import random
import sys
import time

pumps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
period = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
rng = random.Random(7)
phase = [rng.uniform(0, 2 * math.pi) for _ in range(pumps)]
start = time.time()
tick = 0
while True:
    now = time.time()
    ts = int(now * 1000)
    for p in range(pumps):
        asset = f"pump-{p:02d}"
        t = now - start
        temperature = 80 + 20 * math.sin(2 * math.pi * t / 60 + phase[p]) + rng.gauss(0, 0.8)
        vibration = max(0.0, 6 + rng.gauss(0, 1) + (15 if rng.random() < 0.002 else 0))
        for sensor, value in (("temperature", temperature), ("vibration", vibration)):
            print(json.dumps({"asset": asset, "sensor": sensor, "ts": ts, "value": round(value, 2)}))
    sys.stdout.flush()
    tick += 1
    time.sleep(max(0.0, start + tick * period - time.time()))
