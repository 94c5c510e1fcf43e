//! JSON-lines rendering of outputs and dead letters.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use super::{DeadLetter, DeadReason, Origin, OutputBatch};
use crate::topology::Severity;
use crate::twin::model::{Acc, Output, Transition};

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
}

#[derive(Serialize)]
struct AlertLine<'a> {
    kind: &'static str,
    /// Stable id: `asset/rule/seq`, the same for every transition of one alert.
    id: String,
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
}

#[derive(Serialize)]
struct SensorValue {
    ts: i64,
    value: f64,
}

#[derive(Serialize)]
struct UpdateLine<'a> {
    kind: &'static str,
    asset: &'a str,
    version: u64,
    sensors: BTreeMap<&'a str, SensorValue>,
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
}

fn finish(buf: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(&mut *buf, value).expect("serializing to a Vec cannot fail");
    buf.push(b'\n');
}

pub(super) fn render_output(buf: &mut Vec<u8>, batch: &OutputBatch, o: &Output) {
    let (Some(asset), Some(m)) = (batch.asset.as_deref(), batch.model.as_deref()) else {
        return;
    };
    match o {
        Output::Window { slot, start, acc } => {
            let s = m.slots[*slot as usize];
            let w = &m.windows[s.window as usize];
            let Acc { count, sum, min, max } = *acc;
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
                    asset,
                    asset_type: &m.name,
                    rule: &r.name,
                    severity: r.severity,
                    transition: *transition,
                    ts: *ts,
                    at: batch.at_ms,
                    inputs: r.inputs.iter().zip(inputs).map(|((n, _), v)| (&**n, *v)).collect(),
                    message: r.message.as_deref(),
                },
            );
        }
        Output::TwinUpdate { version, changed } => finish(
            buf,
            &UpdateLine {
                kind: "twin_update",
                asset,
                version: *version,
                sensors: changed
                    .iter()
                    .map(|(s, l)| {
                        (
                            &*m.sensors[*s as usize],
                            SensorValue {
                                ts: l.ts,
                                value: l.value,
                            },
                        )
                    })
                    .collect(),
            },
        ),
    }
}

pub(super) fn render_dead_letter(buf: &mut Vec<u8>, d: &DeadLetter, at_ms: i64) {
    let text = std::str::from_utf8(&d.payload).ok();
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
        },
    );
}
