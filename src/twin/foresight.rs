//! Looking ahead with the twin's model: the forecast from the current
//! estimate, and what-if runs of hypothetical commands.
//!
//! Both start at the estimate's event time and step the filter's
//! prediction forward (no readings are taken in, so the uncertainty
//! grows). A forecast drives the model with the desired command values the
//! twin holds; a what-if also applies hypothetical commands at their times
//! and runs the whole twin on a copy ([`TwinState`] is cloned; the live
//! twin is never touched), feeding it the predicted sensor values as
//! readings, so every rule sees the trajectory as it would see real
//! readings: `for:`, hysteresis, windows and all. The copy's filter is in
//! open loop ([`FilterState::open_loop`]): the readings it is fed are its
//! own predictions, so they move it in time only, and the NIS window (the
//! model anomaly test) keeps what the real readings put there.

use super::model::{apply, Dynamics, Event, FilterModel, FilterState, Input, Output, Transition, TwinState, NO_TS};
use super::schema::TypeModel;

/// At most this many steps per request (a 10-minute horizon at 10 s steps
/// is 60).
pub const MAX_STEPS: i64 = 10_000;

/// How far ahead, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    pub horizon_ms: i64,
    pub step_ms: i64,
}

impl Horizon {
    pub fn new(horizon_ms: i64, step_ms: i64) -> Result<Horizon, ForesightError> {
        if step_ms < 1 || horizon_ms < step_ms {
            return Err(ForesightError::BadHorizon(format!(
                "the step ({step_ms} ms) must be at least 1 ms and at most the horizon ({horizon_ms} ms)"
            )));
        }
        if horizon_ms / step_ms > MAX_STEPS {
            return Err(ForesightError::BadHorizon(format!(
                "{} steps: at most {MAX_STEPS} (a longer step or a shorter horizon)",
                horizon_ms / step_ms
            )));
        }
        Ok(Horizon { horizon_ms, step_ms })
    }

    fn steps(self) -> i64 {
        self.horizon_ms / self.step_ms
    }
}

/// A command the what-if applies: command `def` of the type set to `value`,
/// `at_ms` after the estimate's time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hypothetical {
    pub def: u16,
    pub value: f64,
    pub at_ms: i64,
}

/// The model at one step: per state and per observed sensor (in the
/// model's order), the mean and its standard deviation.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub ts: i64,
    pub states: Vec<(f64, f64)>,
    pub sensors: Vec<(f64, f64)>,
}

/// Points from the estimate's time (the first) to the horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub model: u64,
    pub points: Vec<Point>,
}

/// An alert transition the trajectory causes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fired {
    pub rule: u16,
    pub transition: Transition,
    pub ts: i64,
}

/// A command a rule would send (its alert raised, or cleared with
/// `on_clear`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleCommand {
    pub rule: u16,
    pub value: f64,
    pub ts: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WhatIf {
    pub trajectory: Trajectory,
    /// In time order.
    pub alerts: Vec<Fired>,
    pub commands: Vec<RuleCommand>,
    /// Rules whose alert is active at the horizon.
    pub active_at_end: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForesightError {
    #[error("asset type `{0}` declares no model: there is nothing to predict with")]
    NoModel(String),
    #[error("the model has no estimate yet: no reading of a sensor it observes has arrived")]
    NoEstimate,
    #[error("{0}")]
    BadHorizon(String),
    #[error("{0}")]
    BadCommand(String),
}

/// The model's forecast from the twin's current estimate, driven by the
/// desired command values the twin holds.
pub fn forecast(m: &TypeModel, st: &TwinState, h: Horizon) -> Result<Trajectory, ForesightError> {
    let (fm, f) = started(m, st)?;
    let mut f = f.clone();
    let u = inputs(fm, st);
    let t0 = f.t;
    let mut points = Vec::with_capacity(h.steps() as usize + 1);
    points.push(point(fm, &f));
    for k in 1..=h.steps() {
        f.advance(fm, t0 + k * h.step_ms, &u);
        points.push(point(fm, &f));
    }
    Ok(Trajectory {
        model: fm.version,
        points,
    })
}

/// Runs a copy of the twin over the horizon with the hypothetical commands
/// applied at their times; says which alerts the trajectory raises and
/// clears and which commands rules would send. `now_ms` is the processing
/// time the run starts at (commands are issued at processing time; the
/// copy's clock moves with the trajectory).
pub fn what_if(
    m: &TypeModel,
    st: &TwinState,
    h: Horizon,
    plan: &[Hypothetical],
    now_ms: i64,
) -> Result<WhatIf, ForesightError> {
    let (fm, _) = started(m, st)?;
    for c in plan {
        check(m, h, c)?;
    }
    let mut plan = plan.to_vec();
    plan.sort_by_key(|c| c.at_ms);
    let mut sim = st.clone();
    let f = sim.filter_mut().expect("checked: the twin has a filter");
    f.open_loop = true;
    let t0 = f.t;
    let mut run = Run {
        fired: Vec::new(),
        commands: Vec::new(),
        out: Vec::new(),
    };
    let mut events = Vec::with_capacity(fm.observations.len());
    let mut points = Vec::with_capacity(h.steps() as usize + 1);
    points.push(point(fm, sim.filter().expect("a filter")));
    let mut next = 0;
    for k in 1..=h.steps() {
        let t = t0 + k * h.step_ms;
        while next < plan.len() && t0 + plan[next].at_ms <= t {
            let c = plan[next];
            let at = t0 + c.at_ms;
            // The old inputs drive the model up to the command's time (a
            // discrete model steps once per step: its input changes there).
            if !matches!(fm.dynamics, Dynamics::Discrete { .. }) {
                let u = inputs(fm, &sim);
                sim.filter_mut().expect("a filter").advance(fm, at, &u);
            }
            let input = Input::Command {
                def: c.def,
                value: c.value,
                key: "what-if",
            };
            run.apply(m, &mut sim, input, at, now_ms + (at - t0));
            next += 1;
        }
        let u = inputs(fm, &sim);
        sim.filter_mut().expect("a filter").advance(fm, t, &u);
        let f = sim.filter().expect("a filter");
        events.clear();
        for (k, o) in fm.observations.iter().enumerate() {
            let sensor = o.sensor as usize;
            events.push(Event {
                ts: t,
                value: f.observed(fm, k).0,
                sensor: o.sensor,
                source: m.sensor_defs[sensor]
                    .sources
                    .as_ref()
                    .map_or(sim.sensors[sensor].source, |set| set.sources[0].source),
                origin: 0,
                redelivered: false,
                replayed: false,
            });
        }
        run.apply(m, &mut sim, Input::Events(&events), t, now_ms + (t - t0));
        points.push(point(fm, sim.filter().expect("a filter")));
    }
    let active_at_end = (0..m.rules.len() as u16)
        .filter(|&r| sim.alerts[r as usize].active)
        .collect();
    Ok(WhatIf {
        trajectory: Trajectory {
            model: fm.version,
            points,
        },
        alerts: run.fired,
        commands: run.commands,
        active_at_end,
    })
}

/// A what-if in progress: what it has seen fire.
struct Run {
    fired: Vec<Fired>,
    commands: Vec<RuleCommand>,
    /// Outputs of the copy: dropped (it sends nothing).
    out: Vec<Output>,
}

impl Run {
    /// Applies `input` to the copy, noting alert transitions from the
    /// alerts' states (outputs the engine does not build are not built
    /// here either, so they cannot be relied on).
    fn apply(&mut self, m: &TypeModel, sim: &mut TwinState, input: Input<'_>, ts: i64, now_ms: i64) {
        let before: Vec<(bool, u32)> = sim.alerts.iter().map(|a| (a.active, a.seq)).collect();
        self.out.clear();
        apply(m, sim, input, now_ms, &mut self.out);
        for (r, (&(was, seq), now)) in before.iter().zip(sim.alerts.iter()).enumerate() {
            let r = r as u16;
            // Raised (again) since: a new sequence number.
            if now.seq != seq {
                if was {
                    self.note(m, r, Transition::Cleared, ts);
                }
                self.note(m, r, Transition::Raised, ts);
                if !now.active {
                    self.note(m, r, Transition::Cleared, ts);
                }
            } else if was && !now.active {
                self.note(m, r, Transition::Cleared, ts);
            }
        }
    }

    fn note(&mut self, m: &TypeModel, rule: u16, transition: Transition, ts: i64) {
        self.fired.push(Fired { rule, transition, ts });
        if let Some(c) = &m.rules[rule as usize].command {
            let value = match transition {
                Transition::Raised => Some(c.value),
                _ => c.on_clear,
            };
            if let Some(value) = value {
                self.commands.push(RuleCommand { rule, value, ts });
            }
        }
    }
}

/// The model and the twin's filter, once it has an estimate.
fn started<'a>(m: &'a TypeModel, st: &'a TwinState) -> Result<(&'a FilterModel, &'a FilterState), ForesightError> {
    let Some(fm) = &m.filter else {
        return Err(ForesightError::NoModel(m.name.to_string()));
    };
    match st.filter() {
        Some(f) if f.t != NO_TS => Ok((fm, f)),
        _ => Err(ForesightError::NoEstimate),
    }
}

fn check(m: &TypeModel, h: Horizon, c: &Hypothetical) -> Result<(), ForesightError> {
    let def = &m.commands[c.def as usize];
    if !c.value.is_finite() || !def.admits(c.value) {
        return Err(ForesightError::BadCommand(format!(
            "command `{}`: {} is outside [{}, {}]",
            def.name,
            c.value,
            def.min.unwrap_or(f64::NEG_INFINITY),
            def.max.unwrap_or(f64::INFINITY)
        )));
    }
    if !(0..=h.horizon_ms).contains(&c.at_ms) {
        return Err(ForesightError::BadCommand(format!(
            "command `{}`: at {} ms is outside the horizon (0 to {} ms)",
            def.name, c.at_ms, h.horizon_ms
        )));
    }
    Ok(())
}

/// The model's inputs: the desired values of its commands (`NaN`: none).
fn inputs(fm: &FilterModel, st: &TwinState) -> Vec<f64> {
    let mut u = vec![f64::NAN; fm.inputs.len()];
    st.model_inputs(fm, &mut u);
    u
}

fn point(fm: &FilterModel, f: &FilterState) -> Point {
    Point {
        ts: f.t,
        states: (0..fm.n()).map(|i| f.state(i)).collect(),
        sensors: (0..fm.observations.len()).map(|k| f.observed(fm, k)).collect(),
    }
}

#[cfg(test)]
#[path = "foresight_tests.rs"]
mod tests;
