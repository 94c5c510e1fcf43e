//! Decoding a 50k-line chunk of workload-v1 JSON lines.
//!
//!     cargo bench --bench decode
//!     cargo bench --bench decode -- --warm-up-time 1 --measurement-time 2   (quick)
//!
//! * `decode/decoder`: `source::decode::Decoder::decode_lines` with the
//!   mapping of `topologies/workload-v1.yaml` (fields found by name, asset
//!   resolved and grouped, sensor looked up, events built).
//! * `decode/decoder-serde`: the same with the record scanner off: every
//!   record through serde_json (the path before the scanner, and the one
//!   records with escapes still take).
//! * `decode/serde-borrowed`, `decode/sonic-borrowed`,
//!   `decode/simd-json-borrowed`: `serde_json`, `sonic-rs` and `simd-json`
//!   deserializing each line into a borrowed
//!   `{asset: &str, sensor: &str, ts: i64, value: f64}`: parsing only, no
//!   asset lookup, no events - the ceiling of a decoder built on each.
//!   simd-json parses in place, so it works on a copy of the chunk, made
//!   outside the timing.
//!
//! `DECODE_CEILING_FILE=FILE cargo bench --bench decode` instead times the
//! serde-borrowed loop once over a whole file (see [`ceiling`]).
//!
//! The lines are generated here in `gen_workload.py`'s format and order
//! (10,000 assets x 4 sensors, each key at a fixed phase within a 100 ms
//! period, ts jittered by +-50 ms, values on a 1/64 grid).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, Criterion, Throughput};
use serde::Deserialize;
use twinstream::pipeline::DecodedChunk;
use twinstream::source::decode::{AssetIndex, Decoder, Scratch};
use twinstream::topology;

const LINES: usize = 50_000;
const ASSETS: usize = 10_000;
const BASE_TS: i64 = 1_700_000_000_000;

const TOPOLOGY: &str = r#"version: 1
asset_types:
  pump:
    sensors:
      vibration:   { unit: mm/s }
      temperature: { unit: degC }
      pressure:    { unit: bar }
      current:     { unit: A }
    watermark:
      out_of_orderness: 200ms
assets:
  - id: pump-*
    type: pump
sources:
  - name: events
    type: file
    decode:
      asset: asset
      sensor: sensor
      ts: ts
      value: value
windows:
  - name: w1s
    type: tumbling
    size: 1s
rules:
  - name: vibration-high
    when: "w1s.vibration.avg > 7.0"
    severity: warning
"#;

#[derive(Deserialize)]
struct Rec<'a> {
    #[serde(borrow)]
    asset: &'a str,
    #[serde(borrow)]
    sensor: &'a str,
    ts: i64,
    value: f64,
}

fn lines() -> Vec<u8> {
    const SENSORS: [(&str, f64, f64); 4] = [
        ("vibration", 1.5, 4.5),
        ("temperature", 40.0, 80.0),
        ("pressure", 2.0, 8.0),
        ("current", 10.0, 60.0),
    ];
    let mut s: u64 = 42;
    let mut next = move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut keys = Vec::with_capacity(ASSETS * SENSORS.len());
    for a in 0..ASSETS {
        for (name, lo, hi) in SENSORS {
            let base = lo + (hi - lo) * ((next() >> 11) as f64 / (1u64 << 53) as f64);
            let phase = (next() % 100) as i64;
            keys.push((phase, a, name, base));
        }
    }
    keys.sort_by_key(|k| (k.0, k.1));
    let mut out = Vec::with_capacity(LINES * 80);
    let mut n = 0;
    'ticks: for tick in 0.. {
        for &(phase, a, sensor, base) in &keys {
            if n == LINES {
                break 'ticks;
            }
            let ts = BASE_TS + tick * 100 + phase + (next() % 101) as i64 - 50;
            let noise = ((next() % 1000) as f64 / 1000.0 - 0.5) * 2.0;
            let value = ((base + noise).max(0.0) * 64.0).round() / 64.0;
            out.extend_from_slice(
                format!("{{\"asset\":\"pump-{a:05}\",\"sensor\":\"{sensor}\",\"ts\":{ts},\"value\":{value:?}}}\n")
                    .as_bytes(),
            );
            n += 1;
        }
    }
    out
}

fn bench_decode(c: &mut Criterion) {
    let data = lines();
    let topo = topology::parse(Path::new("workload-v1.yaml"), TOPOLOGY).unwrap_or_else(|d| panic!("{d}"));
    let spec = topo.sources[0].decode.as_ref().expect("decode mapping");
    let index = Arc::new(AssetIndex::new(&topo));
    let decoder = Decoder::new(&topo, 0, spec, index.clone(), Some("bench.jsonl".into()));
    let serde_decoder = Decoder::new(&topo, 0, spec, index, Some("bench.jsonl".into())).without_scanner();

    let decode = |decoder: &Decoder, scratch: &mut Scratch| {
        let mut chunk = DecodedChunk::empty(0, 0, 0, 0);
        decoder.decode_lines(&data, 0, 1, &mut chunk, scratch);
        chunk
    };
    for d in [&decoder, &serde_decoder] {
        let chunk = decode(d, &mut Scratch::default());
        assert_eq!((chunk.records, chunk.events), (LINES as u64, LINES as u64));
        assert!(chunk.dead_letters.is_empty(), "{:?}", chunk.dead_letters.first());
        assert_eq!(chunk.groups.len(), ASSETS);
    }
    let sum = |r: Rec<'_>| {
        r.ts.wrapping_add(r.value as i64)
            .wrapping_add((r.asset.len() + r.sensor.len()) as i64)
    };

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::ElementsAndBytes {
        elements: LINES as u64,
        bytes: data.len() as u64,
    });
    g.bench_function("decoder", |b| {
        let mut scratch = Scratch::default();
        b.iter(|| black_box(decode(&decoder, &mut scratch)).events);
    });
    g.bench_function("decoder-serde", |b| {
        let mut scratch = Scratch::default();
        b.iter(|| black_box(decode(&serde_decoder, &mut scratch)).events);
    });
    g.bench_function("serde-borrowed", |b| {
        b.iter(|| {
            let mut total = 0i64;
            for line in data.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                total = total.wrapping_add(sum(serde_json::from_slice(line).expect("valid line")));
            }
            black_box(total)
        });
    });
    g.bench_function("sonic-borrowed", |b| {
        b.iter(|| {
            let mut total = 0i64;
            for line in data.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                total = total.wrapping_add(sum(sonic_rs::from_slice(line).expect("valid line")));
            }
            black_box(total)
        });
    });
    g.bench_function("simd-json-borrowed", |b| {
        b.iter_batched_ref(
            || data.clone(),
            |copy| {
                let mut total = 0i64;
                for line in copy.split_mut(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                    total = total.wrapping_add(sum(simd_json::serde::from_slice(line).expect("valid line")));
                }
                black_box(total)
            },
            criterion::BatchSize::LargeInput,
        );
    });
    g.finish();
}

/// The decode-only ceiling of a replay: one thread, `serde_json` into the
/// borrowed record, over a whole file - what `scripts/bench-replay.sh` sets
/// the replay's throughput against, measured in the same run. Prints
/// `ceiling_events_per_s=N lines=N seconds=S`.
fn ceiling(path: &Path) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = std::time::Instant::now();
    let (mut lines, mut total) = (0u64, 0i64);
    for line in data.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
        let r: Rec<'_> = serde_json::from_slice(line).expect("valid line");
        total = total
            .wrapping_add(r.ts)
            .wrapping_add((r.asset.len() + r.sensor.len()) as i64);
        lines += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    black_box(total);
    println!(
        "ceiling_events_per_s={:.0} lines={lines} seconds={secs:.3}",
        lines as f64 / secs
    );
}

criterion_group!(benches, bench_decode);

fn main() {
    // DECODE_CEILING_FILE=events.jsonl cargo bench --bench decode
    if let Some(path) = std::env::var_os("DECODE_CEILING_FILE") {
        return ceiling(Path::new(&path));
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
