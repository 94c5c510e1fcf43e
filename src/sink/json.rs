//! JSON-lines rendering of outputs and dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;

use crate::pipeline::{DeadLetter, DeadReason, Origin, OutputBatch};
use crate::topology::Severity;
use crate::twin::commands::Origin as CommandOrigin;
use crate::twin::model::{Acc, Event, Health, Output, Quality, Transition};
use crate::twin::schema::TypeModel;

#[derive(Serialize)]
struct WindowLine<'a> {
    kind: &'static str,
    asset: &'a str,
    window: &'a str,
    sensor: &'a str,
    /// First millisecond of the window.
    start: i64,
    /// First millisecond after the window.
    end: i64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    avg: f64,
    last: f64,
    stddev: f64,
}

#[derive(Serialize)]
struct AlertLine<'a> {
    kind: &'static str,
    /// Stable id: `asset/rule/seq`, the same for every transition of one alert.
    id: String,
    /// Stable id of this transition: `asset/rule/seq/transition` (a consumer
    /// deduplicates redelivered outputs by it).
    event_id: String,
    asset: &'a str,
    asset_type: &'a str,
    rule: &'a str,
    severity: Severity,
    transition: Transition,
    /// Event time of the evaluation that caused the transition.
    ts: i64,
    /// Processing time the transition was emitted.
    at: i64,
    inputs: BTreeMap<&'a str, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    /// The version of the model the rule reads (hex), when it reads one.
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
}

#[derive(Serialize)]
struct LateLine<'a> {
    kind: &'static str,
    asset: &'a str,
    sensor: &'a str,
    ts: i64,
    value: f64,
    /// The asset's watermark when the event arrived.
    watermark: i64,
    /// Position of the record in its source.
    origin: u64,
}

#[derive(Serialize)]
struct JoinLine<'a> {
    kind: &'static str,
    asset: &'a str,
    join: &'a str,
    /// The later event time of the two readings.
    ts: i64,
    left: f64,
    right: f64,
}

#[derive(Serialize)]
struct CommandLine<'a> {
    kind: &'static str,
    /// Stable id, `asset/rule/seq/transition`: a device or consumer
    /// deduplicates redelivered commands by it.
    id: String,
    asset: &'a str,
    asset_type: &'a str,
    /// What to set, and to what.
    command: &'a str,
    value: f64,
    /// The rule that sent it.
    rule: &'a str,
    /// Event time of the evaluation that sent it.
    ts: i64,
    /// Processing time it was emitted.
    at: i64,
    /// The version of the model the rule reads (hex), when it reads one.
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
}

/// A tracked command ([`crate::twin::commands`]).
#[derive(Serialize)]
struct ActuateLine<'a> {
    kind: &'static str,
    /// `asset/command/seq`: a device deduplicates redelivered commands by it.
    id: String,
    asset: &'a str,
    asset_type: &'a str,
    command: &'a str,
    value: f64,
    /// What the device echoes on the command's `ack_sensor` to acknowledge
    /// it (`-seq` rejects it).
    seq: u32,
    /// `api`, `rule` or `rollback`.
    origin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    /// The seq of the failed command this one rolls back.
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback_of: Option<u32>,
    /// Processing time it was emitted.
    at: i64,
    /// The version of the model the sending rule reads (hex), when it reads
    /// one.
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
}

#[derive(Serialize)]
struct SensorValue {
    ts: i64,
    value: f64,
    quality: Quality,
    /// What the twin believes (differs from `value` within a deadband).
    estimate: f64,
}

#[derive(Serialize)]
struct UpdateLine<'a> {
    kind: &'static str,
    asset: &'a str,
    version: u64,
    health: Health,
    sensors: BTreeMap<&'a str, SensorValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<ModelValue<'a>>,
}

/// The model's estimate in a twin update.
#[derive(Serialize)]
struct ModelValue<'a> {
    /// The model's version (hash of its declaration), hex.
    version: String,
    ts: i64,
    states: BTreeMap<&'a str, StateValue>,
    sensors: BTreeMap<&'a str, ObservedValue>,
    /// Normalised innovation squared, summed over the anomaly window.
    nis: f64,
}

#[derive(Serialize)]
struct StateValue {
    est: f64,
    std: f64,
}

#[derive(Serialize)]
struct ObservedValue {
    est: f64,
    std: f64,
    residual: f64,
    residual_std: f64,
}

#[derive(Serialize)]
struct DeadLine<'a> {
    kind: &'static str,
    reason: DeadReason,
    message: &'a str,
    origin: &'a Origin,
    at: i64,
    /// The original record, when it is valid UTF-8 ...
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    /// ... and base64 of the original bytes when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    /// The record's key (Kafka), likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
}

/// An event a twin applied, as a reading another node can decode with
/// `{ sensor: sensor, ts: ts, value: value }` (the asset id is also the
/// record key).
#[derive(Serialize)]
struct EventLine<'a> {
    kind: &'static str,
    asset: &'a str,
    sensor: &'a str,
    ts: i64,
    value: f64,
    /// The source that read it.
    source: &'a str,
    /// Its source said it may have delivered it before (MQTT DUP).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    redelivered: bool,
}

fn finish(buf: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *buf, value).expect("serializing to a Vec cannot fail");
    buf.push(b'\n');
}

pub(super) fn render_event(buf: &mut Vec<u8>, batch: &OutputBatch, e: &Event, sources: &[Arc<str>]) {
    let (Some(asset), Some(m)) = (batch.asset.as_deref(), batch.model.as_deref()) else {
        return;
    };
    finish(
        buf,
        &EventLine {
            kind: "event",
            asset,
            sensor: &m.sensors[e.sensor as usize],
            ts: e.ts,
            value: e.value,
            source: sources.get(e.source as usize).map_or("?", |s| &**s),
            redelivered: e.redelivered,
        },
    );
}

pub(super) fn render_output(buf: &mut Vec<u8>, batch: &OutputBatch, o: &Output) {
    let (Some(asset), Some(m)) = (batch.asset.as_deref(), batch.model.as_deref()) else {
        return;
    };
    match o {
        Output::Window { slot, start, acc } => {
            let s = m.slots[*slot as usize];
            let w = &m.windows[s.window as usize];
            let Acc {
                count,
                sum,
                min,
                max,
                last,
                ..
            } = *acc;
            finish(
                buf,
                &WindowLine {
                    kind: "window",
                    asset,
                    window: &w.name,
                    sensor: &m.sensors[s.sensor as usize],
                    start: *start,
                    end: start + w.size_ms,
                    count,
                    sum,
                    min,
                    max,
                    avg: acc.avg(),
                    last,
                    stddev: acc.stddev(),
                },
            );
        }
        Output::Alert {
            rule,
            transition,
            seq,
            ts,
            inputs,
        } => {
            let r = &m.rules[*rule as usize];
            finish(
                buf,
                &AlertLine {
                    kind: "alert",
                    id: format!("{asset}/{}/{seq}", r.name),
                    event_id: transition.event_id(asset, &r.name, *seq),
                    asset,
                    asset_type: &m.name,
                    rule: &r.name,
                    severity: r.severity,
                    transition: *transition,
                    ts: *ts,
                    at: batch.at_ms,
                    inputs: r.inputs.iter().zip(inputs).map(|((n, _), v)| (&**n, *v)).collect(),
                    message: r.message.as_deref(),
                    model: model_of(m, *rule),
                },
            );
        }
        Output::TwinUpdate {
            version,
            changed,
            health,
            model,
        } => finish(
            buf,
            &UpdateLine {
                kind: "twin_update",
                asset,
                version: *version,
                health: *health,
                sensors: changed
                    .iter()
                    .map(|(s, u)| {
                        (
                            &*m.sensors[*s as usize],
                            SensorValue {
                                ts: u.latest.ts,
                                value: u.latest.value,
                                quality: u.quality,
                                estimate: u.estimate,
                            },
                        )
                    })
                    .collect(),
                model: model.as_deref().zip(m.filter.as_ref()).map(|(u, fm)| ModelValue {
                    version: format!("{:016x}", fm.version),
                    ts: u.ts,
                    states: fm
                        .states
                        .iter()
                        .zip(&u.states)
                        .map(|(n, &(est, std))| (&**n, StateValue { est, std }))
                        .collect(),
                    sensors: u
                        .sensors
                        .iter()
                        .map(|o| {
                            (
                                &*m.sensors[o.sensor as usize],
                                ObservedValue {
                                    est: o.estimate,
                                    std: o.std,
                                    residual: o.residual,
                                    residual_std: o.residual_std,
                                },
                            )
                        })
                        .collect(),
                    nis: u.nis,
                }),
            },
        ),
        Output::Late { event, watermark } => finish(
            buf,
            &LateLine {
                kind: "late_event",
                asset,
                sensor: &m.sensors[event.sensor as usize],
                ts: event.ts,
                value: event.value,
                watermark: *watermark,
                origin: event.origin,
            },
        ),
        Output::Joined { join, pair } => finish(
            buf,
            &JoinLine {
                kind: "join",
                asset,
                join: &m.joins[*join as usize].name,
                ts: pair.ts,
                left: pair.left,
                right: pair.right,
            },
        ),
        Output::Command {
            rule,
            seq,
            transition,
            ts,
            value,
        } => {
            let r = &m.rules[*rule as usize];
            let Some(c) = &r.command else { return };
            finish(
                buf,
                &CommandLine {
                    kind: "command",
                    id: transition.event_id(asset, &r.name, *seq),
                    asset,
                    asset_type: &m.name,
                    command: &c.name,
                    value: *value,
                    rule: &r.name,
                    ts: *ts,
                    at: batch.at_ms,
                    model: model_of(m, *rule),
                },
            );
        }
        Output::Actuate {
            def,
            seq,
            value,
            origin,
        } => {
            let c = &m.commands[*def as usize];
            let (origin_name, rule, rollback_of, model) = match origin {
                CommandOrigin::Api => ("api", None, None, None),
                CommandOrigin::Rule { rule, .. } => {
                    ("rule", Some(&*m.rules[*rule as usize].name), None, model_of(m, *rule))
                }
                CommandOrigin::Rollback { of } => ("rollback", None, Some(*of), None),
            };
            finish(
                buf,
                &ActuateLine {
                    kind: "command",
                    id: format!("{asset}/{}/{seq}", c.name),
                    asset,
                    asset_type: &m.name,
                    command: &c.name,
                    value: *value,
                    seq: *seq,
                    origin: origin_name,
                    rule,
                    rollback_of,
                    at: batch.at_ms,
                    model,
                },
            );
        }
        Output::Relay { .. } => {}
    }
}

/// The version of the model rule `rule` reads, as outputs name it.
fn model_of(m: &TypeModel, rule: u16) -> Option<String> {
    m.model_version_of(rule).map(|v| format!("{v:016x}"))
}

/// What an output's topic calls `{name}`: the command, rule, window, join
/// or sensor it is about ("" for twin updates).
pub(super) fn output_name<'a>(batch: &'a OutputBatch, o: &Output) -> &'a str {
    let Some(m) = batch.model.as_deref() else { return "" };
    match o {
        Output::Window { slot, .. } => &m.windows[m.slots[*slot as usize].window as usize].name,
        Output::Alert { rule, .. } => &m.rules[*rule as usize].name,
        Output::Command { rule, .. } => m.rules[*rule as usize].command.as_ref().map_or("", |c| c.name.as_str()),
        Output::Actuate { def, .. } => &m.commands[*def as usize].name,
        Output::Joined { join, .. } => &m.joins[*join as usize].name,
        Output::Late { event, .. } => &m.sensors[event.sensor as usize],
        Output::TwinUpdate { .. } | Output::Relay { .. } => "",
    }
}

pub(super) fn render_dead_letter(buf: &mut Vec<u8>, d: &DeadLetter, at_ms: i64) {
    let text = std::str::from_utf8(&d.payload).ok();
    let key = d.key.as_deref();
    finish(
        buf,
        &DeadLine {
            kind: "dead_letter",
            reason: d.reason,
            message: &d.message,
            origin: &d.origin,
            at: at_ms,
            payload: text,
            payload_base64: text
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(&d.payload)),
            key: key.and_then(|k| std::str::from_utf8(k).ok()),
            key_base64: key
                .filter(|k| std::str::from_utf8(k).is_err())
                .map(|k| base64::engine::general_purpose::STANDARD.encode(k)),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Origin;

    #[test]
    fn a_dead_letter_line_keeps_the_records_key_as_text_or_base64() {
        let mut d = DeadLetter {
            origin: Origin {
                source: "fleet".into(),
                file: None,
                line: 1,
                offset: Some(7),
                topic: Some("telemetry".into()),
                partition: Some(2),
            },
            reason: DeadReason::Malformed,
            message: "not JSON".into(),
            payload: b"{".to_vec(),
            key: Some(b"pump-1".to_vec()),
        };
        let line = |d: &DeadLetter| {
            let mut buf = Vec::new();
            render_dead_letter(&mut buf, d, 5);
            serde_json::from_slice::<serde_json::Value>(&buf).unwrap()
        };
        let l = line(&d);
        assert_eq!((l["key"].as_str(), l.get("key_base64")), (Some("pump-1"), None));
        assert_eq!(l["origin"]["partition"], 2);
        d.key = Some(vec![0xff, 0x00]);
        let l = line(&d);
        assert_eq!((l.get("key"), l["key_base64"].as_str()), (None, Some("/wA=")));
        d.key = None;
        let l = line(&d);
        assert!(l.get("key").is_none() && l.get("key_base64").is_none());
    }
}
