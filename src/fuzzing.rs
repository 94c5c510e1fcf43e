//! Fuzz targets: every reader of outside input, as a function of bytes that
//! panics when the input breaks a promise (a panic anywhere is a finding).
//! `fuzz/` runs them under AFL++ (`scripts/fuzz.sh TARGET SECONDS`);
//! `tests/fuzz_corpora.rs` replays every committed input through them on
//! each `cargo test`, the crashes ever found included.
//!
//! * [`scanner`] - the record scanner against `serde_json`: same
//!   accept/reject, same values.
//! * [`decode`] - whole decode mappings (narrow and wide, a contract,
//!   nested fields, unit conversion) over arbitrary lines: every record is
//!   an event or a dead letter, every event in range.
//! * [`topology`] - the topology loader and its YAML layer: a topology or
//!   positioned diagnostics, never a panic.
//! * [`expr`] - the rule expression language: compile, then evaluate on
//!   ordinary and extreme values.
//! * [`stored`] - everything read back from disk or a changelog: twin
//!   records (restored into a model and written again; whole, or in parts
//!   and folded), outbox messages,
//!   source positions, shard metas, schemas, history pages and their merge,
//!   changelog and history-topic values, replay digests. Corrupt bytes are
//!   an error, never a panic.
//!
//! The HTTP API's target needs a running node; it lives in `fuzz/`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::pipeline::DecodedChunk;
use crate::source::decode::{self as dec, AssetIndex, Decoder, Scratch};
use crate::topology::expr::{self, Env, Resolver, Unresolved};
use crate::topology::Topology;
use crate::twin::schema::{Model, OutputMask, TypeModel};

/// The scanner reads what `serde_json` reads.
pub fn scanner(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = dec::scanner_agrees(text) {
            panic!("{e}");
        }
    }
}

/// A topology exercising every decode feature and much of the model.
const TOPOLOGY: &str = r#"
asset_types:
  pump:
    sensors:
      vibration: { unit: mm/s, range: [0, 50] }
      temperature: { unit: degC, range: [-40, 200], sources: [narrow, wide] }
      pressure: { unit: bar, expected_every: 10s, stale_after: 1m }
      power: { unit: W, expr: "temperature * 2" }
    commands: { set_limit: { reported: pressure, tolerance: 0.5, timeout: 1h, min: 0, max: 10 } }
    history: { raw: 1h, tiers: [{ every: 1s, keep: 7d }, { every: 1m, keep: 30d }] }
    model: { preset: level_rate, sensor: pressure, q: 0.01, r: 0.04 }
  tank:
    sensors:
      level: { unit: m, range: [0, 10] }
assets:
  - { id: tank-0, type: tank }
  - { id: "pump-*", type: pump }
sources:
  - name: narrow
    type: file
    decode: { asset: asset, sensor: sensor, ts: ts, value: value }
  - name: wide
    type: file
    decode:
      contract: gw/v2
      contract_field: meta.contract
      asset: id
      ts: time
      ts_format: epoch_s
      values: { temperature: payload.temp, vibration: payload.deep.vib, level: level }
      convert: { temperature: { scale: 0.1, offset: -5 } }
windows:
  - { name: w1s, size: 1s }
  - { name: w10s, type: sliding, size: 10s, slide: 2s }
rules:
  - { name: hot, when: "temperature > 100", clear_when: "temperature < 90", severity: critical, asset_types: [pump] }
  - { name: shaky, when: "w1s.vibration.avg > 7", asset_types: [pump] }
"#;

struct Fixture {
    topo: Topology,
    narrow: Decoder,
    wide: Decoder,
    model: Model,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let topo = crate::topology::parse(Path::new("fuzz.yaml"), TOPOLOGY).unwrap_or_else(|d| panic!("{d}"));
        let index = Arc::new(AssetIndex::new(&topo));
        let decoder = |i: usize| {
            let spec = topo.sources[i].decode.as_ref().expect("a decode mapping");
            Decoder::new(&topo, i as u16, spec, index.clone(), Some("fuzz.jsonl".into()))
        };
        let (narrow, wide) = (decoder(0), decoder(1));
        let model = Model::build(&topo, OutputMask::all(), true);
        Fixture {
            topo,
            narrow,
            wide,
            model,
        }
    })
}

/// Every record is counted, and is an event or a dead letter; events are
/// in range and name a sensor of their type; a dead letter holds its
/// record's bytes.
pub fn decode(data: &[u8]) {
    let f = fixture();
    let records = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count() as u64;
    for d in [&f.narrow, &f.wide] {
        let mut out = DecodedChunk::empty(d.source, 0, 0, 0);
        d.decode_lines(data, 0, 1, &mut out, &mut Scratch::default());
        assert_eq!(out.records, records, "records counted");
        let events: usize = out.groups.iter().map(|g| g.events.len()).sum();
        assert_eq!(out.events as usize, events);
        assert!(
            events as u64 + out.dead_letters.len() as u64 >= records,
            "a record vanished: {records} records, {events} events, {} dead letters",
            out.dead_letters.len()
        );
        for g in &out.groups {
            let ty = &f.topo.asset_types[f.topo.assets[g.entry as usize].asset_type];
            for e in &g.events {
                let s = &ty.sensors[e.sensor as usize];
                assert!(e.value.is_finite(), "{e:?}");
                assert!(
                    s.min.is_none_or(|m| e.value >= m) && s.max.is_none_or(|m| e.value <= m),
                    "{e:?}"
                );
                assert!(s.derive.is_none(), "an event for a derived sensor");
            }
        }
        for dl in &out.dead_letters {
            assert!(
                data.windows(dl.payload.len().max(1)).any(|w| w == &dl.payload[..]) || dl.payload.is_empty(),
                "a dead letter's bytes are not a record of the input"
            );
            assert!(!dl.message.is_empty());
        }
    }
}

/// A topology, or diagnostics that each point into the text.
pub fn topology(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match crate::topology::parse(Path::new("fuzz.yaml"), &text) {
        Ok(t) => {
            let _ = t.summary();
            let _ = Model::build(&t, OutputMask::all(), false);
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "refused without a reason");
            // Lines as YAML counts them: `\r\n`, `\n`, a lone `\r` (and
            // the Unicode breaks YAML 1.1 knows) each end one.
            let text_breaks = text.replace("\r\n", "\n");
            let lines = 1 + text_breaks
                .chars()
                .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
                .count();
            let shown = diags.to_string();
            for line in shown.lines().filter(|l| l.starts_with("fuzz.yaml:")) {
                let n: usize = line.split(':').nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
                assert!(n >= 1 && n <= lines + 1, "a diagnostic points outside the text: {line}");
            }
        }
    }
}

/// Names `a`, `b`, `c` and `w.x.avg`, as rules resolve sensors and windows.
struct Names;

impl Resolver for Names {
    type Slot = usize;
    fn resolve(&self, path: &[&str]) -> Result<usize, Unresolved> {
        match path {
            ["a"] => Ok(0),
            ["b"] => Ok(1),
            ["c"] => Ok(2),
            ["w", "x", "avg"] => Ok(3),
            other => Err(format!("unknown name `{}`", other.join(".")).into()),
        }
    }
}

struct Vals([f64; 4]);

impl Env<usize> for Vals {
    fn get(&self, slot: usize) -> f64 {
        self.0.get(slot).copied().unwrap_or(f64::NAN)
    }
}

/// Compiles a condition and a number; evaluates whatever compiles on
/// ordinary and extreme values. Errors point into the text.
pub fn expr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let envs = [
        Vals([1.0, 2.0, 3.0, 4.0]),
        Vals([f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0]),
        Vals([f64::MAX, f64::MIN_POSITIVE, -1e308, 0.0]),
    ];
    match expr::compile_condition(text, &Names) {
        Ok(c) => {
            for env in &envs {
                let _ = c.eval(env);
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in errors {
                assert!(e.offset <= text.len(), "error offset {} beyond the text", e.offset);
            }
        }
    }
    if let Ok(n) = expr::compile_number(text, &Names) {
        for env in &envs {
            let _ = n.eval(env);
        }
    }
}

/// Stored forms, chosen by the first byte; the rest is the stored value.
pub fn stored(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 10 {
        0 => twin_record(bytes),
        1 => {
            let _ = crate::sink::check_outbox_value(bytes);
        }
        2 => {
            let _ = crate::source::SourcePosition::decode(bytes);
        }
        3 => {
            let _ = crate::cluster::ShardMeta::decode(bytes);
        }
        4 => {
            if let Ok(s) = crate::twin::record::Schema::decode(bytes) {
                let again = crate::twin::record::Schema::decode(&s.encode()).expect("a schema reads back");
                assert_eq!(again.id(), s.id());
            }
        }
        5 => {
            if let Ok(p) = crate::store::history::Page::decode(bytes) {
                for (_, b) in &p.buckets {
                    assert!(
                        b.count > 0 && b.first_ts <= b.last_ts,
                        "an impossible bucket read: {b:?}"
                    );
                }
                let mut buf = Vec::new();
                p.encode(&mut buf);
                crate::store::history::Page::decode(&buf).expect("a page reads back");
            }
        }
        6 => {
            // Operands, each `[len u16 LE][bytes]`: of a history page, and
            // of a twin record in parts (folded fully and partially; a
            // fold that reads is a record that reads, or a clean error).
            let ops = length_prefixed(bytes);
            if let Some((first, more)) = ops.split_first() {
                let _ = crate::store::history::page::merge(Some(first), more.iter());
            }
            for full in [true, false] {
                if let Some(value) = crate::store::parts::fold(ops.iter().copied(), full) {
                    twin_record(&value);
                }
            }
        }
        7 => {
            // Messages of one partition, each `[len u16 LE][value]`.
            let mut fold = crate::cluster::changelog::Fold::default();
            for value in length_prefixed(bytes) {
                let _ = crate::cluster::changelog::apply_value(&mut fold, Some(b"pump-1"), value);
            }
            let restored = fold.finish();
            for t in restored.twins.values() {
                twin_record(&t.record);
            }
        }
        8 => {
            let mut fold = crate::cluster::changelog::HistoryFold::new(Default::default());
            let _ = crate::cluster::changelog::apply_history_value(&mut fold, Some(b"k"), bytes);
        }
        _ => {
            let _ = crate::report::decode_digest(bytes);
        }
    }
}

/// `[len u16 LE][bytes]`... (a cut last one as it is).
pub fn length_prefixed(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while rest.len() >= 2 {
        let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        out.push(&rest[2..2 + n]);
        rest = &rest[2 + n..];
    }
    out
}

/// A twin record: read, restored into each type's model, written again and
/// read back.
fn twin_record(bytes: &[u8]) {
    let Ok(rec) = crate::twin::record::decode(bytes) else {
        return;
    };
    let f = fixture();
    for m in &f.model.types {
        let m: &TypeModel = m;
        let (state, _) = rec.clone().into_state(m, &m.schema);
        let again = crate::twin::record::encode(m, &state);
        let whole = crate::twin::record::decode(&again).expect("a restored twin's record reads back");
        let mut enc = crate::twin::record::Encoder::default();
        enc.encode_parts(m, &state, None);
        let in_parts = crate::twin::record::decode(enc.bytes()).expect("a restored twin's record in parts reads back");
        // Compared as printed: a NaN read from fuzz input is not equal to itself.
        assert_eq!(
            format!("{in_parts:?}"),
            format!("{whole:?}"),
            "a record in parts reads as the whole record"
        );
    }
}

/// The longest request target (path and query) the node's HTTP layer
/// parses: `http::Uri`'s limit, `u16::MAX - 1`.
const MAX_REQUEST_TARGET: usize = 65_534;

/// One request to a running node's HTTP API at `base` (`http://ADDR`),
/// from fuzz input: a flags byte (bit 0: send `token` as the bearer),
/// then `METHOD PATH` up to the first newline, then the body. Whatever the
/// request, the node answers: never a 500, an error always in the stable
/// JSON shape, a JSON answer always JSON. `GET /events` (a stream) is left
/// out. Returns the status, or `None` for an input that is not a request.
pub fn http(base: &str, token: &str, data: &[u8]) -> Option<u16> {
    let (&flags, rest) = data.split_first()?;
    let (line, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let line = std::str::from_utf8(line).ok()?;
    let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
    let method = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        .into_iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .unwrap_or("GET");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    if path.starts_with("/events") || path.chars().any(|c| c.is_control() || c == ' ' || c == '#') {
        return None;
    }
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    let agent = AGENT.get_or_init(|| {
        ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(30))
            .build()
    });
    let mut req = agent.request(method, &format!("{base}{path}"));
    // A request target longer than the `http` crate's URI limit (65,534
    // bytes, once ureq has percent-encoded it) is refused by actix-http's
    // parser with a bare 400 before any route or error handler of ours
    // sees it: not a request the API answers.
    let url = req.request_url().ok()?;
    let url = url.as_url();
    if url.path().len() + url.query().map_or(0, |q| q.len() + 1) > MAX_REQUEST_TARGET {
        return None;
    }
    if flags & 1 == 1 {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    if !body.is_empty() {
        req = req.set(
            "Content-Type",
            if flags & 2 == 2 {
                "text/plain"
            } else {
                "application/json"
            },
        );
    }
    let res = match req.send_bytes(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        // A URL ureq itself refuses never reached the node.
        Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::InvalidUrl => return None,
        Err(e) => panic!("{method} {path}: the node did not answer: {e}"),
    };
    let status = res.status();
    let json = res.content_type() == "application/json";
    let text = res.into_string().unwrap_or_default();
    assert_ne!(status, 500, "{method} {path}: 500 {text}");
    if status >= 400 && method != "HEAD" {
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {status} not JSON ({e}): {text}"));
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{method} {path}: {status} not in the error shape: {text}"
        );
    } else if json && method != "HEAD" {
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {status} JSON that does not parse ({e})"));
    }
    Some(status)
}
