//! The per-asset-type model compiled from the topology: sensor, window and
//! rule tables laid out for the hot path (indices, no names, no lookups).

use std::sync::Arc;

use crate::topology::expr::Cond;
use crate::topology::{Agg, OutputKind, Severity, Slot, Topology};

/// Everything the twin model needs to know about one asset type.
#[derive(Debug)]
pub struct TypeModel {
    pub index: usize,
    pub name: Arc<str>,
    pub sensors: Vec<Arc<str>>,
    pub out_of_orderness_ms: i64,
    /// Windows that cover this type.
    pub windows: Vec<WindowDef>,
    /// (window, sensor) pairs: one set of open windows each.
    pub slots: Vec<WinSlot>,
    /// sensor -> slots the sensor's events go into.
    pub slots_by_sensor: Vec<Vec<u16>>,
    pub rules: Vec<RuleDef>,
    /// slot -> rules evaluated when a window of the slot closes.
    pub rules_by_slot: Vec<Vec<u16>>,
    /// sensor -> rules evaluated when the sensor's latest value changes.
    pub rules_by_sensor: Vec<Vec<u16>>,
    /// slot -> index into the twin's last-closed table, for slots rules read.
    pub closed_index: Vec<Option<u16>>,
    pub n_closed: usize,
    /// Output kinds some sink consumes; the model only builds those.
    pub emit: OutputMask,
    /// Record closed windows for the replay digest.
    pub digest: bool,
    /// The names twin records of this type index, and their id.
    pub schema: super::record::Schema,
    pub schema_id: u64,
}

#[derive(Debug, Clone)]
pub struct WindowDef {
    pub name: Arc<str>,
    pub size_ms: i64,
    pub slide_ms: i64,
}

impl WindowDef {
    /// Calls `f(start)` for every window containing `ts`, newest first.
    #[inline]
    pub fn for_each_start(&self, ts: i64, mut f: impl FnMut(i64)) {
        let mut start = ts - ts.rem_euclid(self.slide_ms);
        while start > ts - self.size_ms {
            f(start);
            start -= self.slide_ms;
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct WinSlot {
    pub window: u16,
    pub sensor: u16,
}

/// What a rule expression reads, in this type's layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LocalSlot {
    Latest(u16),
    Closed { closed: u16, agg: Agg },
}

#[derive(Debug)]
pub struct RuleDef {
    pub name: Arc<str>,
    pub severity: Severity,
    pub message: Option<Arc<str>>,
    pub cond: Cond<LocalSlot>,
    /// Clears an active alert (hysteresis); `None`: `cond` no longer holding.
    pub clear: Option<Cond<LocalSlot>>,
    /// `cond` must hold this long (event time) before the alert is raised.
    pub hold_ms: i64,
    /// Display names and slots of the rule's inputs, reported with alerts.
    pub inputs: Vec<(Arc<str>, LocalSlot)>,
}

/// A set of [`OutputKind`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputMask(pub u8);

impl OutputMask {
    pub fn all() -> OutputMask {
        OutputMask(0xff)
    }
    pub fn with(self, k: OutputKind) -> OutputMask {
        OutputMask(self.0 | k.bit())
    }
    pub fn has(self, k: OutputKind) -> bool {
        self.0 & k.bit() != 0
    }
    pub fn intersects(self, other: OutputMask) -> bool {
        self.0 & other.0 != 0
    }
}

/// The compiled model of every asset type of a topology.
#[derive(Debug)]
pub struct Model {
    pub types: Vec<Arc<TypeModel>>,
}

impl Model {
    /// Compiles the topology; `emit` says which output kinds to build, and
    /// `digest` whether twins record closed windows for a replay report.
    pub fn build(topo: &Topology, emit: OutputMask, digest: bool) -> Model {
        let types = (0..topo.asset_types.len())
            .map(|t| Arc::new(TypeModel::build(topo, t, emit, digest)))
            .collect();
        Model { types }
    }
}

impl TypeModel {
    fn build(topo: &Topology, t: usize, emit: OutputMask, digest: bool) -> TypeModel {
        let ty = &topo.asset_types[t];
        let n_sensors = ty.sensors.len();
        let mut windows = Vec::new();
        let mut window_local = vec![None; topo.windows.len()];
        let mut slots = Vec::new();
        let mut slots_by_sensor = vec![Vec::new(); n_sensors];
        for (wi, w) in topo.windows.iter().enumerate() {
            let Some(sensors) = w.sensors_for(t) else { continue };
            window_local[wi] = Some(windows.len() as u16);
            for &s in sensors {
                slots_by_sensor[s].push(slots.len() as u16);
                slots.push(WinSlot {
                    window: windows.len() as u16,
                    sensor: s as u16,
                });
            }
            windows.push(WindowDef {
                name: w.name.as_str().into(),
                size_ms: w.size.as_millis() as i64,
                slide_ms: w.slide.as_millis() as i64,
            });
        }
        let slot_of = |window: u16, sensor: u16| -> usize {
            let local = window_local[window as usize].expect("validated: window covers type");
            slots
                .iter()
                .position(|s| s.window == local && s.sensor == sensor)
                .expect("validated: window covers sensor")
        };
        let mut closed_index = vec![None; slots.len()];
        let mut n_closed = 0usize;
        let mut rules = Vec::new();
        let mut rules_by_slot = vec![Vec::new(); slots.len()];
        let mut rules_by_sensor = vec![Vec::new(); n_sensors];
        for r in &topo.rules {
            let Some((_, cond)) = r.compiled.iter().find(|(ct, _)| *ct == t) else {
                continue;
            };
            let clear_cond = r.clear_compiled.iter().find(|(ct, _)| *ct == t).map(|(_, c)| c);
            let ri = rules.len() as u16;
            let mut inputs: Vec<(Arc<str>, LocalSlot)> = Vec::new();
            let mut map_slot = |s: Slot| -> LocalSlot {
                match s {
                    Slot::Latest { sensor } => LocalSlot::Latest(sensor),
                    Slot::Window { window, sensor, agg } => {
                        let slot = slot_of(window, sensor);
                        let closed = *closed_index[slot].get_or_insert_with(|| {
                            n_closed += 1;
                            (n_closed - 1) as u16
                        });
                        LocalSlot::Closed { closed, agg }
                    }
                }
            };
            let local = map_cond(cond, &mut map_slot);
            let clear = clear_cond.map(|c| map_cond(c, &mut map_slot));
            // What either condition reads triggers the rule and is reported
            // with its alerts.
            for c in std::iter::once(cond).chain(clear_cond) {
                c.visit_slots(&mut |s| {
                    let name = match s {
                        Slot::Latest { sensor } => {
                            push_unique(&mut rules_by_sensor[sensor as usize], ri);
                            ty.sensors[sensor as usize].name.clone()
                        }
                        Slot::Window { window, sensor, agg } => {
                            let slot = slot_of(window, sensor);
                            push_unique(&mut rules_by_slot[slot], ri);
                            let agg_name = Agg::ALL.iter().find(|(_, a)| *a == agg).map_or("?", |(n, _)| n);
                            format!(
                                "{}.{}.{agg_name}",
                                topo.windows[window as usize].name, ty.sensors[sensor as usize].name
                            )
                        }
                    };
                    if !inputs.iter().any(|(n, _)| **n == *name) {
                        inputs.push((name.into(), map_slot(s)));
                    }
                });
            }
            rules.push(RuleDef {
                name: r.name.as_str().into(),
                severity: r.severity,
                message: r.message.as_deref().map(Into::into),
                cond: local,
                clear,
                hold_ms: r.hold.as_millis() as i64,
                inputs,
            });
        }
        let mut m = TypeModel {
            index: t,
            name: ty.name.as_str().into(),
            sensors: ty.sensors.iter().map(|s| s.name.as_str().into()).collect(),
            out_of_orderness_ms: ty.out_of_orderness.as_millis() as i64,
            windows,
            slots,
            slots_by_sensor,
            rules,
            rules_by_slot,
            rules_by_sensor,
            closed_index,
            n_closed,
            emit,
            digest,
            schema: super::record::Schema {
                asset_type: String::new(),
                sensors: Vec::new(),
                slots: Vec::new(),
                rules: Vec::new(),
            },
            schema_id: 0,
        };
        m.schema = super::record::Schema::of(&m);
        m.schema_id = m.schema.id();
        m
    }

    pub fn sensor_index(&self, name: &str) -> Option<u16> {
        self.sensors.iter().position(|s| &**s == name).map(|i| i as u16)
    }

    pub fn window_index(&self, name: &str) -> Option<u16> {
        self.windows.iter().position(|w| &*w.name == name).map(|i| i as u16)
    }

    pub fn rule_index(&self, name: &str) -> Option<u16> {
        self.rules.iter().position(|r| &*r.name == name).map(|i| i as u16)
    }

    pub fn slot_index(&self, window: u16, sensor: u16) -> Option<u16> {
        self.slots
            .iter()
            .position(|s| s.window == window && s.sensor == sensor)
            .map(|i| i as u16)
    }
}

fn push_unique(v: &mut Vec<u16>, x: u16) {
    if !v.contains(&x) {
        v.push(x);
    }
}

fn map_cond(c: &Cond<Slot>, f: &mut impl FnMut(Slot) -> LocalSlot) -> Cond<LocalSlot> {
    use crate::topology::expr::Num;
    fn num(n: &Num<Slot>, f: &mut impl FnMut(Slot) -> LocalSlot) -> Num<LocalSlot> {
        match n {
            Num::Const(v) => Num::Const(*v),
            Num::Var(s) => Num::Var(f(*s)),
            Num::Neg(a) => Num::Neg(Box::new(num(a, f))),
            Num::Arith(op, a, b) => Num::Arith(*op, Box::new(num(a, f)), Box::new(num(b, f))),
            Num::Call(func, args) => Num::Call(*func, args.iter().map(|a| num(a, f)).collect()),
        }
    }
    match c {
        Cond::Const(b) => Cond::Const(*b),
        Cond::Cmp(op, a, b) => Cond::Cmp(*op, num(a, f), num(b, f)),
        Cond::And(a, b) => Cond::And(Box::new(map_cond(a, f)), Box::new(map_cond(b, f))),
        Cond::Or(a, b) => Cond::Or(Box::new(map_cond(a, f)), Box::new(map_cond(b, f))),
        Cond::Not(a) => Cond::Not(Box::new(map_cond(a, f))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(size: i64, slide: i64, ts: i64) -> Vec<i64> {
        let w = WindowDef {
            name: "w".into(),
            size_ms: size,
            slide_ms: slide,
        };
        let mut v = Vec::new();
        w.for_each_start(ts, |s| v.push(s));
        v
    }

    #[test]
    fn window_assignment() {
        assert_eq!(starts(1000, 1000, 1_700_000_000_123), vec![1_700_000_000_000]);
        assert_eq!(starts(1000, 1000, 999), vec![0]);
        assert_eq!(starts(1000, 1000, 1000), vec![1000]);
        assert_eq!(starts(1000, 1000, -1), vec![-1000]);
        assert_eq!(starts(10_000, 5_000, 12_000), vec![10_000, 5_000]);
        assert_eq!(starts(10_000, 5_000, 10_000), vec![10_000, 5_000]);
        assert_eq!(starts(3000, 1000, 2500), vec![2000, 1000, 0]);
    }
}
