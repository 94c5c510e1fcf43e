//! `asset_types.<t>.model`: the state-space model a twin filters its readings
//! with, written as a preset (`{preset: level, sensor: level, q: 0.01}`) or
//! as its matrices (`states`, `A`, `B`, `inputs`, `observe`, `Q`, `R`, `x0`,
//! `P0`), and its `anomaly:` alert. A preset is expanded into its matrices
//! here; the checks of the resolved matrices (symmetry, definiteness) and the
//! model's version are in `model_math.rs`, the rule names that read a model
//! (`est.<state>`, `residual.<sensor>`, `nis`) in `rules.rs`.

use std::collections::HashMap;
use std::time::Duration;

use marked_yaml::Node;

use super::model_math::{positive_definite, semidefinite, symmetric, version};
use super::names::{is_identifier, Naming};
use super::rules::severity;
use super::{hint, Cx};
use crate::topology::diag::{one_of, Pos};
use crate::topology::spec::*;
use crate::topology::yaml::{kind_of, pos, scalar_str, spanned_scalar, Fields, Spanned};

/// State names appear in rule expressions (`est.<state>`): identifiers, each
/// listed once.
const STATE: Naming = Naming {
    valid: is_identifier,
    bad: |what, name| format!("{what}: state name `{name}` must be an identifier (letters, digits, `_`)"),
    duplicate: |what, name, _| format!("{what}: state `{name}` listed twice"),
    ..Naming::ANY
};

/// The fields of a preset model.
const PRESET_FIELDS: &[&str] = &["preset", "sensor", "q", "r", "tau", "gain", "command"];
/// The fields of the matrix form.
const MATRIX_FIELDS: &[&str] = &[
    "states",
    "transition",
    "A",
    "B",
    "inputs",
    "observe",
    "Q",
    "R",
    "x0",
    "P0",
];
/// Every field of `model:` (`anomaly` belongs to both forms).
const FIELDS: &[&str] = &[
    "preset",
    "sensor",
    "q",
    "r",
    "tau",
    "gain",
    "command",
    "states",
    "transition",
    "A",
    "B",
    "inputs",
    "observe",
    "Q",
    "R",
    "x0",
    "P0",
    "anomaly",
];

/// The fields only preset `lag` takes.
const LAG_FIELDS: &[&str] = &["tau", "gain", "command"];

/// How much larger than the measurement noise the default initial variance
/// is: diffuse, so the first readings set the state, whatever its scale.
const DIFFUSE: f64 = 1e6;

/// What a model is read against: the asset type's sensors and commands.
pub(super) struct Owner<'a> {
    /// ``asset type `tank` ``.
    pub(super) what: &'a str,
    pub(super) sensors: &'a [SensorSpec],
    pub(super) commands: &'a [CommandDef],
}

/// A model's matrices and names, before the anomaly and the version.
struct Resolved {
    preset: Option<Preset>,
    states: Vec<String>,
    transition: ModelTransition,
    a: Vec<Vec<f64>>,
    b: Vec<Vec<f64>>,
    inputs: Vec<usize>,
    observe: Vec<Observation>,
    q: Vec<Vec<f64>>,
    x0: Option<Vec<f64>>,
    p0: Vec<Vec<f64>>,
}

impl<'t> Cx<'t> {
    /// `model:` of an asset type; `None` when it has problems (all reported).
    pub(super) fn model(&mut self, node: &Node, owner: &Owner<'_>) -> Option<ModelSpec> {
        let what = format!("{}.model", owner.what);
        let f = Fields::new(node, &what, FIELDS, &mut self.diags)?;
        let keys: Vec<Spanned<String>> = node
            .as_mapping()
            .map(|m| m.keys().map(spanned_scalar).collect())
            .unwrap_or_default();
        let resolved = if f.get("preset").is_some() {
            self.preset_model(&f, &keys, owner)
        } else {
            self.matrix_model(&f, &keys, owner)
        };
        let anomaly = match f.get("anomaly") {
            Some(a) => Some(self.anomaly(a, &what)?),
            None => None,
        };
        let r = resolved?;
        let mut spec = ModelSpec {
            pos: f.pos(),
            preset: r.preset,
            states: r.states,
            transition: r.transition,
            a: r.a,
            b: r.b,
            inputs: r.inputs,
            observe: r.observe,
            q: r.q,
            x0: r.x0,
            p0: r.p0,
            anomaly,
            version: 0,
        };
        spec.version = version(&spec, owner.sensors, owner.commands);
        Some(spec)
    }

    /// `{preset: level | level_rate | lag, sensor, q, r, tau, gain, command}`.
    fn preset_model(&mut self, f: &Fields<'_>, keys: &[Spanned<String>], owner: &Owner<'_>) -> Option<Resolved> {
        let what = f.what().to_string();
        for k in keys.iter().filter(|k| MATRIX_FIELDS.contains(&k.value.as_str())) {
            self.err(
                k.pos,
                format!(
                    "{what}: a `preset` model takes no `{}` (that is the matrix form); a preset's fields: {}",
                    k.value,
                    listed(PRESET_FIELDS)
                ),
            );
        }
        let names = Preset::ALL.map(|(n, _)| n);
        let preset = f
            .choice("preset", &names, true, &mut self.diags)
            .and_then(|p| Preset::ALL.iter().find(|(n, _)| *n == p.value).map(|(_, p)| *p));
        if let Some(p) = preset.filter(|p| *p != Preset::Lag) {
            for k in keys.iter().filter(|k| LAG_FIELDS.contains(&k.value.as_str())) {
                self.err(
                    k.pos,
                    format!(
                        "{what}: preset `{}` takes no `{}` (only preset `lag` does)",
                        p.name(),
                        k.value
                    ),
                );
            }
        }
        let sensor = f
            .str("sensor", true, &mut self.diags)
            .and_then(|s| self.sensor_of(&s, &format!("{what}.sensor"), owner).map(|i| (i, s.pos)));
        let q = self.number_field(f, "q", true).and_then(|q| {
            if q.value < 0.0 {
                self.err(
                    q.pos,
                    format!("{what}.q: must be zero or above (a variance per second)"),
                );
                return None;
            }
            Some(q.value)
        });
        let r = self
            .number_field(f, "r", false)
            .and_then(|r| self.positive(r, &format!("{what}.r")));
        let bad_r = f.get("r").is_some() && r.is_none();
        let lag = match preset {
            Some(Preset::Lag) => self.lag_fields(f, owner),
            _ => None,
        };
        let (preset, (sensor, spos)) = (preset?, sensor?);
        let r = match (r, owner.sensors[sensor].noise) {
            (Some(r), _) => r,
            (None, _) if bad_r => return None,
            (None, Some(noise)) => noise * noise,
            (None, None) => {
                let name = &owner.sensors[sensor].name;
                self.err(
                    spos,
                    format!(
                        "{}: model observes `{name}`: give the sensor `noise:` (its standard deviation) or the model `r:` (its variance)",
                        owner.what
                    ),
                );
                return None;
            }
        };
        let q = q?;
        let p = DIFFUSE * r;
        let (states, a, b, inputs, q, h, p0): (&[&str], _, _, _, _, _, _) = match preset {
            Preset::Level => (
                &["level"],
                vec![vec![0.0]],
                vec![vec![]],
                vec![],
                vec![vec![q]],
                vec![1.0],
                vec![vec![p]],
            ),
            Preset::LevelRate => (
                &["level", "rate"],
                vec![vec![0.0, 1.0], vec![0.0, 0.0]],
                vec![vec![], vec![]],
                vec![],
                vec![vec![0.0, 0.0], vec![0.0, q]],
                vec![1.0, 0.0],
                vec![vec![p, 0.0], vec![0.0, p]],
            ),
            Preset::Lag => {
                let (tau, gain, command) = lag?;
                (
                    &["value"],
                    vec![vec![-1.0 / tau]],
                    vec![vec![gain / tau]],
                    vec![command],
                    vec![vec![q]],
                    vec![1.0],
                    vec![vec![p]],
                )
            }
        };
        Some(Resolved {
            preset: Some(preset),
            states: states.iter().map(|s| s.to_string()).collect(),
            transition: ModelTransition::Continuous,
            a,
            b,
            inputs,
            observe: vec![Observation { sensor, h, r }],
            q,
            x0: None,
            p0,
        })
    }

    /// Preset `lag`'s `tau` (seconds), `gain` and `command` (its index).
    fn lag_fields(&mut self, f: &Fields<'_>, owner: &Owner<'_>) -> Option<(f64, f64, usize)> {
        let what = f.what().to_string();
        let tau = f.duration("tau", true, &mut self.diags).and_then(|t| {
            if t.value.is_zero() {
                self.err(t.pos, format!("{what}.tau: must be greater than zero"));
                return None;
            }
            Some(t.value.as_secs_f64())
        });
        let gain = match f.get("gain") {
            Some(_) => self.number_field(f, "gain", false).map(|g| g.value),
            None => Some(1.0),
        };
        let command = f
            .str("command", true, &mut self.diags)
            .and_then(|c| self.command_of(&c, &format!("{what}.command"), owner));
        Some((tau?, gain?, command?))
    }

    /// The matrix form: `states`, `transition`, `A`, `B`, `inputs`,
    /// `observe`, `Q`, `R`, `x0`, `P0`.
    fn matrix_model(&mut self, f: &Fields<'_>, keys: &[Spanned<String>], owner: &Owner<'_>) -> Option<Resolved> {
        let what = f.what().to_string();
        if f.get("states").is_none() && keys.iter().all(|k| k.value == "anomaly") {
            let presets = Preset::ALL.map(|(n, _)| n);
            self.err(
                f.pos(),
                format!(
                    "{what}: give a `preset` ({}) or the matrices (`states`, `A`, `observe`, `Q`, ...)",
                    one_of(&presets)
                ),
            );
            return None;
        }
        for k in keys.iter().filter(|k| PRESET_FIELDS.contains(&k.value.as_str())) {
            let instead = match k.value.as_str() {
                "q" => " (the matrix form's process noise is `Q`)",
                "r" => " (the matrix form's measurement noise is `R: {<sensor>: <variance>}`)",
                _ => "",
            };
            self.err(
                k.pos,
                format!("{what}: `{}` is a field of a `preset` model{instead}", k.value),
            );
        }
        // Bad state names still give the dimensions the matrices are checked
        // against, so every problem is reported at once.
        let (states, states_ok) = self.states(f)?;
        let n = states.len();
        let transition = f
            .choice("transition", &["continuous", "discrete"], false, &mut self.diags)
            .map(|t| match t.value.as_str() {
                "discrete" => ModelTransition::Discrete,
                _ => ModelTransition::Continuous,
            });
        let bad_transition = f.get("transition").is_some() && transition.is_none();
        let inputs = self.inputs(f, owner);
        let m = inputs.as_ref().map_or(0, Vec::len);
        let a = f
            .require("A", &mut self.diags)
            .and_then(|node| self.matrix(node, &format!("{what}.A"), n, n, "one per state"));
        let b = match (f.get("B"), m) {
            (None, 0) => Some(vec![vec![]; n]),
            (Some(node), 0) => {
                if inputs.is_some() {
                    self.err(
                        pos(node),
                        format!("{what}.B: there are no `inputs` to drive the states; add `inputs: [<command>]` or remove `B`"),
                    );
                }
                None
            }
            (None, m) => {
                self.err(
                    f.pos(),
                    format!(
                        "{what}: missing required field `B` ({} of {}, one per input): how the `inputs` drive the states",
                        plural(n, "row"),
                        plural(m, "number")
                    ),
                );
                None
            }
            (Some(node), m) => self.matrix(node, &format!("{what}.B"), n, m, "one per input"),
        };
        let observe = self.observe(f, n, owner);
        let q = f
            .require("Q", &mut self.diags)
            .and_then(|node| self.covariance(node, &format!("{what}.Q"), n, false));
        let rs = self.variances(f);
        let x0 = f
            .get("x0")
            .map(|node| self.vector(node, &format!("{what}.x0"), n, "one per state"));
        let p0 = f
            .get("P0")
            .map(|node| self.covariance(node, &format!("{what}.P0"), n, true));
        let ((observe, observe_ok), (rs, rs_ok)) = (observe?, rs);
        let n_observed = observe.len();
        let mut obs = Vec::new();
        for (sensor, h, at) in observe {
            let name = &owner.sensors[sensor].name;
            let r = match (rs.get(name.as_str()), owner.sensors[sensor].noise) {
                (Some(r), _) => *r,
                (None, Some(noise)) => noise * noise,
                (None, None) => {
                    self.err(
                        at,
                        format!(
                            "{}: model observes `{name}`: give the sensor `noise:` (its standard deviation) or the model `R: {{{name}: ...}}`",
                            owner.what
                        ),
                    );
                    continue;
                }
            };
            obs.push(Observation { sensor, h, r });
        }
        if obs.len() != n_observed || !observe_ok || !rs_ok || bad_transition || !states_ok {
            return None;
        }
        let p0 = match p0 {
            Some(p) => p?,
            None => {
                let r = obs.iter().map(|o| o.r).fold(0.0, f64::max);
                (0..n)
                    .map(|i| (0..n).map(|j| if i == j { DIFFUSE * r } else { 0.0 }).collect())
                    .collect()
            }
        };
        let x0 = match x0 {
            Some(x) => Some(x?),
            None => None,
        };
        Some(Resolved {
            preset: None,
            states,
            transition: transition.unwrap_or(ModelTransition::Continuous),
            a: a?,
            b: b?,
            inputs: inputs?,
            observe: obs,
            q: q?,
            x0,
            p0,
        })
    }

    /// `states: [level, rate]`: identifiers, each once, at least one; with
    /// whether they are all valid.
    fn states(&mut self, f: &Fields<'_>) -> Option<(Vec<String>, bool)> {
        let what = format!("{}.states", f.what());
        let node = f.require("states", &mut self.diags)?;
        let list = f.str_list("states", &mut self.diags)?;
        if list.is_empty() || list.iter().all(|s| s.value.is_empty()) {
            self.err(pos(node), format!("{what}: name at least one state, like `[level]`"));
            return None;
        }
        let mut seen: HashMap<String, Pos> = HashMap::new();
        let mut ok = true;
        for s in &list {
            let before = self.diags.len();
            self.check_name(s, &what, &STATE, Some(&seen));
            ok &= self.diags.len() == before;
            seen.entry(s.value.clone()).or_insert(s.pos);
        }
        Some((list.into_iter().map(|s| s.value).collect(), ok))
    }

    /// `inputs: [valve]`: commands of the asset type, each once.
    fn inputs(&mut self, f: &Fields<'_>, owner: &Owner<'_>) -> Option<Vec<usize>> {
        let what = format!("{}.inputs", f.what());
        let Some(names) = f.str_list("inputs", &mut self.diags) else {
            return f.get("inputs").is_none().then(Vec::new);
        };
        let mut out = Vec::new();
        let mut ok = true;
        for name in names {
            match self.command_of(&name, &what, owner) {
                Some(c) if out.contains(&c) => {
                    self.err(name.pos, format!("{what}: command `{}` listed twice", name.value));
                    ok = false;
                }
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `observe: {level: [1, 0]}`: each valid observed sensor with its row
    /// of `H` and where it is named; with whether all of them are valid.
    #[allow(clippy::type_complexity)]
    fn observe(&mut self, f: &Fields<'_>, n: usize, owner: &Owner<'_>) -> Option<(Vec<(usize, Vec<f64>, Pos)>, bool)> {
        let what = format!("{}.observe", f.what());
        let node = f.require("observe", &mut self.diags)?;
        let Some(map) = node.as_mapping() else {
            self.err(
                pos(node),
                format!(
                    "{what}: expected a mapping of sensor name to its row of `H`, like `{{level: [1, 0]}}`, found {}",
                    kind_of(node)
                ),
            );
            return None;
        };
        if map.is_empty() {
            self.err(pos(node), format!("{what}: observe at least one sensor"));
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in map.iter() {
            let name = spanned_scalar(k);
            let sensor = self.sensor_of(&name, &what, owner);
            let row = self.vector(v, &format!("{what}.{}", name.value), n, "one per state");
            if let Some(row) = &row {
                if row.iter().all(|x| *x == 0.0) {
                    self.err(
                        pos(v),
                        format!("{what}.{}: a row of zeros observes no state", name.value),
                    );
                    ok = false;
                }
            }
            match (sensor, row) {
                (Some(s), Some(h)) => out.push((s, h, name.pos)),
                _ => ok = false,
            }
        }
        Some((out, ok))
    }

    /// `R: {level: 0.0025}`: measurement noise variances of observed
    /// sensors (the valid ones), with whether all of them are valid.
    fn variances<'n>(&mut self, f: &Fields<'n>) -> (HashMap<&'n str, f64>, bool) {
        let what = format!("{}.R", f.what());
        let Some(node) = f.get("R") else {
            return (HashMap::new(), true);
        };
        let Some(map) = node.as_mapping() else {
            self.err(
                pos(node),
                format!("{what}: expected a mapping of observed sensor to its measurement noise variance, like `{{level: 0.0025}}`, found {}", kind_of(node)),
            );
            return (HashMap::new(), false);
        };
        let mut out = HashMap::new();
        let mut ok = true;
        for (k, v) in map.iter() {
            let name = k.as_str();
            let r = self
                .number(v, &format!("{what}.{name}"))
                .and_then(|r| self.positive(Spanned::new(r, pos(v)), &format!("{what}.{name}")));
            // An invalid entry is kept as NaN: the sensor has an `R` entry
            // (reported), so its missing `noise:` is not reported as well.
            out.insert(name, r.unwrap_or(f64::NAN));
            ok &= r.is_some();
        }
        // An `R` entry for a sensor the model does not observe is a mistake
        // (a typo, or a forgotten `observe` row): report it at its key.
        let observe_keys: Vec<&str> = f
            .get("observe")
            .and_then(Node::as_mapping)
            .map(|m| m.keys().map(|k| k.as_str()).collect())
            .unwrap_or_default();
        for k in map.keys() {
            if !observe_keys.contains(&k.as_str()) {
                let h = hint(k.as_str(), observe_keys.iter().copied());
                self.err(
                    Pos::of(k.span()),
                    format!(
                        "{what}: the model does not observe `{}`{h}; `R` gives the variance of each sensor under `observe`",
                        k.as_str()
                    ),
                );
                ok = false;
            }
        }
        (out, ok)
    }

    /// `anomaly: {false_alarm, window, for, severity}`.
    fn anomaly(&mut self, node: &Node, model: &str) -> Option<AnomalySpec> {
        let what = format!("{model}.anomaly");
        const FIELDS: &[&str] = &["false_alarm", "window", "for", "severity"];
        let f = Fields::new(node, &what, FIELDS, &mut self.diags)?;
        let before = self.diags.len();
        let false_alarm = match self.number_field(&f, "false_alarm", false) {
            Some(p) if !(p.value > 0.0 && p.value < 0.5) => {
                self.err(
                    p.pos,
                    format!("{what}.false_alarm: must be above 0 and below 0.5 (the probability that a fault-free window is flagged)"),
                );
                p.value
            }
            Some(p) => p.value,
            None => 0.001,
        };
        let window = match f.u64("window", false, &mut self.diags) {
            Some(w) if w.value == 0 || w.value > u64::from(u32::MAX) => {
                self.err(w.pos, format!("{what}.window: must be at least 1 reading"));
                1
            }
            Some(w) => w.value as u32,
            None => 10,
        };
        let hold = f
            .duration("for", false, &mut self.diags)
            .map_or(Duration::ZERO, |d| d.value);
        let severity = severity(&f, &mut self.diags);
        (self.diags.len() == before).then_some(AnomalySpec {
            pos: f.pos(),
            false_alarm,
            window,
            hold,
            severity,
        })
    }

    /// The index of the sensor `name` of the model's asset type.
    fn sensor_of(&mut self, name: &Spanned<String>, what: &str, owner: &Owner<'_>) -> Option<usize> {
        let found = owner.sensors.iter().position(|s| s.name == name.value);
        if found.is_none() {
            let h = hint(&name.value, owner.sensors.iter().map(|s| s.name.as_str()));
            self.err(
                name.pos,
                format!("{what}: no sensor `{}` in {}{h}", name.value, owner.what),
            );
        }
        found
    }

    /// The index of the command `name` of the model's asset type.
    fn command_of(&mut self, name: &Spanned<String>, what: &str, owner: &Owner<'_>) -> Option<usize> {
        let found = owner.commands.iter().position(|c| c.name == name.value);
        if found.is_none() {
            let declared: Vec<&str> = owner.commands.iter().map(|c| c.name.as_str()).collect();
            let known = if declared.is_empty() {
                "it declares no `commands:`".to_string()
            } else {
                format!("its commands: {}", one_of(&declared))
            };
            let h = hint(&name.value, declared.iter().copied());
            self.err(
                name.pos,
                format!(
                    "{what}: `{}` is not a command of {}{h}; {known}",
                    name.value, owner.what
                ),
            );
        }
        found
    }

    /// An `rows x cols` matrix written as a list of rows; `per` says what
    /// the numbers of a row stand for.
    fn matrix(&mut self, node: &Node, what: &str, rows: usize, cols: usize, per: &str) -> Option<Vec<Vec<f64>>> {
        let expected = format!("expected {} of {} ({per})", plural(rows, "row"), plural(cols, "number"));
        let Some(seq) = node.as_sequence() else {
            self.err(pos(node), format!("{what}: {expected}, found {}", kind_of(node)));
            return None;
        };
        if seq.len() != rows {
            self.err(
                pos(node),
                format!("{what}: {expected}, found {}", plural(seq.len(), "row")),
            );
            return None;
        }
        let mut out = Vec::new();
        for (i, row) in seq.iter().enumerate() {
            match row.as_sequence() {
                Some(r) if r.len() == cols => out.push(r.iter().map(|x| self.number(x, what)).collect()),
                Some(r) => self.err(pos(row), format!("{what}: {expected}, row {} has {}", i + 1, r.len())),
                None => self.err(
                    pos(row),
                    format!("{what}: {expected}, row {} is {}", i + 1, kind_of(row)),
                ),
            }
        }
        let out: Option<Vec<Vec<f64>>> = out
            .into_iter()
            .map(|r: Vec<Option<f64>>| r.into_iter().collect())
            .collect();
        out.filter(|m| m.len() == rows)
    }

    /// A list of `len` numbers.
    fn vector(&mut self, node: &Node, what: &str, len: usize, per: &str) -> Option<Vec<f64>> {
        let expected = format!("expected {} ({per})", plural(len, "number"));
        let Some(seq) = node.as_sequence() else {
            self.err(pos(node), format!("{what}: {expected}, found {}", kind_of(node)));
            return None;
        };
        if seq.len() != len {
            self.err(pos(node), format!("{what}: {expected}, found {}", seq.len()));
            return None;
        }
        let out: Vec<Option<f64>> = seq.iter().map(|x| self.number(x, what)).collect();
        out.into_iter().collect()
    }

    /// A finite number; YAML's `.inf` and `.nan`, and numbers too large for
    /// an `f64`, are reported as not finite.
    pub(super) fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        let s = scalar_str(node, what, &mut self.diags)?;
        let text = s.value.replace('_', "");
        let bare = text
            .trim_start_matches(['+', '-'])
            .trim_start_matches('.')
            .to_ascii_lowercase();
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => return Some(v),
            Ok(_) => {}
            Err(_) if matches!(bare.as_str(), "inf" | "infinity" | "nan") => {}
            Err(_) => {
                self.err(s.pos, format!("{what}: expected a number, found `{}`", s.value));
                return None;
            }
        }
        self.err(s.pos, format!("{what}: must be a finite number, found `{}`", s.value));
        None
    }

    /// A field read by [`Self::number`].
    fn number_field(&mut self, f: &Fields<'_>, field: &str, required: bool) -> Option<Spanned<f64>> {
        let node = if required {
            f.require(field, &mut self.diags)?
        } else {
            f.get(field)?
        };
        let v = self.number(node, &format!("{}.{field}", f.what()))?;
        Some(Spanned::new(v, pos(node)))
    }

    /// A variance: above zero.
    fn positive(&mut self, v: Spanned<f64>, what: &str) -> Option<f64> {
        if v.value > 0.0 {
            return Some(v.value);
        }
        self.err(v.pos, format!("{what}: must be above zero (a variance)"));
        None
    }

    /// Reports the first pair of entries that break symmetry.
    /// An `n x n` covariance: symmetric, and positive definite (`definite`,
    /// an initial covariance) or semi-definite (process noise).
    fn covariance(&mut self, node: &Node, what: &str, n: usize, definite: bool) -> Option<Vec<Vec<f64>>> {
        let m = self.matrix(node, what, n, n, "one per state")?;
        self.check_symmetric(&m, what, pos(node))?;
        let (ok, why) = if definite {
            (
                positive_definite(&m),
                "must be positive definite (a covariance in which every state, and every combination of them, has a variance above zero)",
            )
        } else {
            (
                semidefinite(&m),
                "must be positive semi-definite (a covariance: no combination of the states may have a negative variance)",
            )
        };
        if !ok {
            self.err(pos(node), format!("{what}: {why}"));
            return None;
        }
        Some(m)
    }

    fn check_symmetric(&mut self, m: &[Vec<f64>], what: &str, at: Pos) -> Option<()> {
        match symmetric(m) {
            Ok(()) => Some(()),
            Err((i, j)) => {
                self.err(
                    at,
                    format!(
                        "{what}: must be symmetric; row {}, column {} is {} but row {}, column {} is {}",
                        i + 1,
                        j + 1,
                        m[i][j],
                        j + 1,
                        i + 1,
                        m[j][i]
                    ),
                );
                None
            }
        }
    }
}

/// "`a`, `b`, `c`".
fn listed(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// `3 rows`, `1 number`.
fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
