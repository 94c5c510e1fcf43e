//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`):
//! valid inputs of each reader as this build writes them, and a few
//! near-misses, for AFL++ to mutate from.
//!
//! ```sh
//! cargo run --release --example fuzz_seeds -- fuzz/corpus
//! ```

use std::path::{Path, PathBuf};

use twinstream::store::history::{Bucket, Page};
use twinstream::twin::model::{apply, Event, Input, TwinState};
use twinstream::twin::schema::{Model, OutputMask};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("the corpus directory");
    std::fs::write(d.join(name), bytes).expect("a seed");
}

/// `[kind][bytes]`, the `stored` target's input.
fn stored(kind: u8, bytes: &[u8]) -> Vec<u8> {
    [&[kind][..], bytes].concat()
}

/// `[kind]` then each value as `[len u16 LE][bytes]`, the `stored`
/// target's framing of several values (`twinstream::fuzzing::length_prefixed`).
fn framed(kind: u8, values: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![kind];
    for v in values {
        out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));

    // scanner and decode: records as sources send them, and broken ones.
    let records = [
        r#"{"asset":"pump-1","sensor":"vibration","ts":1700000000123,"value":3.25}"#,
        r#"{"asset":"pump-\u0032","sensor":"temperature","ts":1.7e12,"value":-0.0,"extra":[1,{"x":null}]}"#,
        r#"{"meta":{"contract":"gw/v2"},"id":"pump-7","time":1700000000.5,"payload":{"temp":415,"deep":{"vib":2.5}},"level":3}"#,
        r#"{"meta":{"contract":"gw/v3"},"id":"tank-0","time":"1700000000","level":11}"#,
        r#"{"asset":"tank-0","sensor":"level","ts":"2023-11-14T22:13:20Z","value":1e400}"#,
        r#"{"asset":"pump-9","sensor":"power","ts":1,"value":1}"#,
        r#"{"asset":"pump-1","sensor":"vibration","ts":9223372036854775808,"value":1}"#,
        r#"{"asset":"pump-1","sensor":"vibration","ts":1000,"value":"high"}"#,
        r#"{not json"#,
        r#"  {"ts" : 12 , "value" : 18446744073709551616 , "asset" : "a\"b" }  "#,
    ];
    for (i, r) in records.iter().enumerate() {
        write(&dir, "scanner", &format!("record-{i:02}"), r.as_bytes());
    }
    write(&dir, "decode", "narrow", records[..2].join("\n").as_bytes());
    write(&dir, "decode", "wide", records[2..4].join("\r\n").as_bytes());
    write(&dir, "decode", "bad", records[4..].join("\n").as_bytes());
    write(&dir, "decode", "all", (records.join("\n") + "\n\n").as_bytes());
    write(
        &dir,
        "decode",
        "invalid-utf8",
        b"{\"asset\":\"pump-\xff\",\"sensor\":\"vibration\",\"ts\":1,\"value\":1}\n",
    );

    // topology: every bundled topology, and a few broken ones.
    let mut n = 0;
    for e in std::fs::read_dir(repo.join("topologies")).expect("topologies/") {
        let p = e.expect("an entry").path();
        if p.extension().is_some_and(|x| x == "yaml") {
            write(
                &dir,
                "topology",
                &p.file_name().unwrap().to_string_lossy(),
                &std::fs::read(&p).unwrap(),
            );
            n += 1;
        }
    }
    assert!(n > 0, "no bundled topologies");
    for (name, text) in [
        (
            "unknown-field",
            "asset_types:\n  pump:\n    sensors:\n      v: { unit: x, expected_evry: 1s }\n",
        ),
        ("duplicate-key", "asset_types: {}\nasset_types: {}\n"),
        ("anchors", "a: &x 1\nb: *x\n"),
        ("tabs", "asset_types:\n\tpump: {}\n"),
        ("deep", "a: [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]\n"),
    ] {
        write(&dir, "topology", name, text.as_bytes());
    }

    // expr: the rule language.
    for (i, e) in [
        "a > 1",
        "a > 1 and b <= 2 or not c == 3",
        "w.x.avg >= 7.0",
        "abs(a - b) > 0.5 && max(a, b, c) < 10",
        "!(a != b) || min(a) > -1e308",
        "(a + b) * c / 2 - -1 > 0",
        "a >",
        "abs(",
        "a > 1 and",
        "unknown.name > 1",
    ]
    .iter()
    .enumerate()
    {
        write(&dir, "expr", &format!("expr-{i:02}"), e.as_bytes());
    }

    // stored: real encodings of every stored form.
    let topo = twinstream::topology::load(&repo.join("topologies/plant-line.yaml")).expect("plant-line.yaml");
    let model = Model::build(&topo, OutputMask::all(), true);
    let mut records = Vec::new();
    for m in &model.types {
        let mut st = TwinState::new(m);
        let events: Vec<Event> = (0..40)
            .map(|i| Event {
                ts: 1_700_000_000_000 + i * 250,
                value: (i % 13) as f64,
                sensor: (i as u16) % m.sensors.len() as u16,
                source: 0,
                origin: i as u64,
                redelivered: false,
                replayed: false,
            })
            .collect();
        let mut out = Vec::new();
        apply(m, &mut st, Input::Events(&events), 1_700_000_010_000, &mut out);
        apply(m, &mut st, Input::Tick, 1_700_000_100_000, &mut out);
        let rec = twinstream::twin::record::encode(m, &st);
        write(&dir, "stored", &format!("twin-{}", m.name), &stored(0, &rec));
        write(
            &dir,
            "stored",
            &format!("schema-{}", m.name),
            &stored(4, &m.schema.encode()),
        );
        records.push(rec);
    }
    write(
        &dir,
        "stored",
        "twin-empty",
        &stored(
            0,
            &twinstream::twin::record::encode(&model.types[0], &TwinState::new(&model.types[0])),
        ),
    );
    write(
        &dir,
        "stored",
        "outbox",
        &stored(
            1,
            &twinstream::sink::example_outbox_value("alerts", Some(b"pump-1"), &[("tw-id", b"x")], b"{\"a\":1}"),
        ),
    );
    let pos = twinstream::source::SourcePosition {
        offset: 4096,
        line: 77,
        records: 70,
        dead_letters: 7,
        ..Default::default()
    };
    write(&dir, "stored", "position", &stored(2, &pos.encode()));
    let meta = twinstream::cluster::ShardMeta {
        next_offset: 10,
        changelog_end: 20,
        incarnation: 3,
    };
    write(&dir, "stored", "shard-meta", &stored(3, &meta.encode()));
    let mut page = Page {
        expires: 1_700_086_400_000,
        ..Page::default()
    };
    let mut b = Bucket::of(1_700_000_000_000, 1.5);
    b.add(1_700_000_000_500, 2.5);
    page.buckets = vec![(0, b), (3, Bucket::of(1_700_000_003_000, -4.0))];
    let mut downsampled = Vec::new();
    page.encode(&mut downsampled);
    write(&dir, "stored", "page", &stored(5, &downsampled));
    let raw = Page {
        expires: 1_700_003_600_000,
        readings: vec![
            (1_700_000_000_000, 1.0),
            (1_700_000_000_010, f64::NAN),
            (1_700_000_000_010, -0.0),
        ],
        ..Page::default()
    };
    let mut raw_bytes = Vec::new();
    raw.encode(&mut raw_bytes);
    write(&dir, "stored", "page-raw", &stored(5, &raw_bytes));
    write(&dir, "stored", "page-merge", &framed(6, &[&downsampled, &downsampled]));
    let log = twinstream::cluster::changelog::example_values(&records[0]);
    let log: Vec<&[u8]> = log.iter().map(Vec::as_slice).collect();
    write(&dir, "stored", "changelog", &framed(7, &log));
    let history = twinstream::cluster::changelog::example_values(&records[0])[3].clone();
    write(&dir, "stored", "history-topic", &stored(8, &history));
    write(
        &dir,
        "stored",
        "digest",
        &stored(9, &twinstream::report::encode_digest(&[])),
    );

    // http: requests to the demo node (`flags`, `METHOD PATH`, body).
    for (i, (flags, line, body)) in [
        (0u8, "GET /twins?limit=5", ""),
        (0, "GET /twins/pump-007", ""),
        (0, "GET /twins/pump-007/history?sensor=temperature&from=-1h&step=1m", ""),
        (0, "GET /twins/pump-007/forecast?horizon=10m&step=1m", ""),
        (
            1,
            "POST /twins/pump-007/whatif",
            r#"{"horizon":"10m","step":"1m","commands":[{"command":"set_pressure","value":0.5}]}"#,
        ),
        (
            1,
            "POST /twins/pump-007/commands",
            r#"{"command":"set_pressure","value":0.5,"key":"k-1"}"#,
        ),
        (
            0,
            "POST /twins/pump-007/commands",
            r#"{"command":"set_pressure","value":0.5,"key":"k-2"}"#,
        ),
        (1, "POST /alerts/pump-007%2Foverheating%2F1/ack", ""),
        (0, "GET /alerts?severity=critical", ""),
        (0, "GET /twins/pump-007/alerts/history?limit=3", ""),
        (0, "GET /types", ""),
        (0, "DELETE /twins/pump-007", ""),
        (1, "POST /twins/pump-007/commands", "{not json"),
        (0, "GET /twins/%ff%fe", ""),
        (0, "GET /view/app.js", ""),
    ]
    .iter()
    .enumerate()
    {
        let input = [&[*flags][..], line.as_bytes(), b"\n", body.as_bytes()].concat();
        write(&dir, "http", &format!("request-{i:02}"), &input);
    }
    println!("seeds written to {}", dir.display());
}
