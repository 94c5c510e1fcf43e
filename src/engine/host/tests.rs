//! Supervision through the real sinks, store writer and RocksDB: a twin
//! that panics restarts from its last good state; a poison event is
//! dead-lettered.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::*;
use crate::engine::checkpoint::{writer_loop, Durable, Epoch};
use crate::pipeline::flow::Flow;
use crate::twin::schema::{Model, OutputMask};

/// Makes the model panic on events with `value`, `remaining` times.
pub struct PanicHook {
    pub value: f64,
    pub remaining: AtomicU32,
}

impl PanicHook {
    pub(super) fn maybe_panic(&self, events: &[Event]) {
        if events.iter().any(|e| e.value == self.value)
            && self
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
                .is_ok()
        {
            panic!("test hook: poison value {}", self.value);
        }
    }
}

fn ev(ts: i64, value: f64, origin: u64) -> Event {
    Event {
        ts,
        value,
        sensor: 0,
        source: 0,
        origin,
        redelivered: false,
        replayed: false,
    }
}

/// Runs one twin of `sensors` sensors (events go to the first) through
/// `events` with a hook that panics up to `panics` times, after the batch
/// changed the twin, snapshots it and returns the stored record, the dead
/// letters written and how many panics happened.
fn run_twin(sensors: usize, events: Vec<Event>, panics: u32) -> (record::TwinRecord, Vec<serde_json::Value>, u32) {
    let dir = tempfile::tempdir().unwrap();
    let sensors: Vec<String> = (0..sensors).map(|s| format!("s{s}: {{ unit: mm/s }}")).collect();
    let topo = crate::topology::parse(
        Path::new("t.yaml"),
        &format!(
            "asset_types: {{ pump: {{ sensors: {{ {} }} }} }}\n\
             assets: [{{ id: p1, type: pump }}]\n\
             sources: [{{ name: f, type: file, decode: {{ asset: a, sensor: s, ts: t, value: v }} }}]\n\
             windows: [{{ name: w1s, size: 1s }}]\n",
            sensors.join(", ")
        ),
    )
    .unwrap();
    // With the replay digest, as a replay keeps it.
    let model = Model::build(&topo, OutputMask::all(), true).types[0].clone();
    let store = Arc::new(Store::open(&dir.path().join("db"), 1).unwrap());
    let system = actix::System::new();
    let (dead_path, record, hook_left, tallied) = system.block_on(async {
        let sink_arbiter = actix::Arbiter::new();
        let (fatal, _fatal_rx) = crossbeam_channel::unbounded();
        let sinks = SinkHub::start(
            &[],
            &crate::sink::SinkContext {
                state_dir: dir.path(),
                arbiter: &sink_arbiter.handle(),
                store: store.clone(),
                fatal: fatal.clone(),
                node: "test",
                sources: Arc::from(vec![Arc::<str>::from("f")]),
                relays: None,
            },
        )
        .unwrap();
        let hook = PanicHook {
            value: 666.0,
            remaining: AtomicU32::new(panics),
        };
        let cx = Arc::new(TwinContext {
            store: store.clone(),
            changelog: false,
            sinks: sinks.clone(),
            fatal: fatal.clone(),
            source_names: vec!["f".into()],
            forward_events: false,
            remote_relays: false,
            feedback: crossbeam_channel::unbounded().0,
            feed: crate::pipeline::watch::Feed::new(),
            damaged: crate::topology::DamagedTwin::Stop,
            rebuild: None,
            panic_hook: Some(hook),
        });
        let mut twin = TwinActor::start("p1".into(), Arc::new(TypeContext { model, cx: cx.clone() }), 0);
        let flow = Flow::new(4);
        let apply = Apply {
            events,
            related: Vec::new(),
            tick: false,
            received_at: Instant::now(),
            routed_at: Instant::now(),
        };
        let mut tally = Tally::default();
        twin.apply(apply, &flow.acquire().unwrap(), &mut tally);
        let tallied = tally.events;
        // Checkpoint through the real writer: sinks flushed, then committed.
        let (epoch_tx, epoch_rx) = crossbeam_channel::unbounded();
        let (durable_tx, durable_rx) = crossbeam_channel::unbounded::<Durable>();
        let (s2, k2) = (store.clone(), sinks.clone());
        let writer = std::thread::spawn(move || writer_loop(epoch_rx, None, s2, k2, true, durable_tx, fatal));
        let ep = Epoch::new(1, 1, &[], "digest/t".into(), store.clone(), epoch_tx, None);
        crate::engine::worker::take_part(&mut twin, &ep);
        ep.arrive();
        drop(ep);
        let d = durable_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("checkpoint durable");
        assert_eq!(d.twins, 1);
        let left = cx.panic_hook.as_ref().unwrap().remaining.load(Ordering::SeqCst);
        // Join every thread holding the store before it is closed.
        drop(twin);
        sink_arbiter.stop();
        sink_arbiter.join().unwrap();
        writer.join().unwrap();
        let bytes = store.get_twin(0, "p1").unwrap().expect("twin stored");
        (
            dir.path().join("dead_letters.jsonl"),
            record::decode(&bytes).unwrap(),
            left,
            tallied,
        )
    });
    assert_eq!(tallied, record.stats.events, "the tally counts the events applied");
    let dead = std::fs::read_to_string(dead_path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (record, dead, panics - hook_left)
}

#[test]
fn a_transient_panic_restarts_the_twin_and_loses_nothing() {
    // One sensor: the backup copies the twin; twelve: the batch logs the
    // sensors it changes (SensorsBackup::Logged).
    for sensors in [1, 12] {
        let (rec, dead, panicked) = run_twin(sensors, vec![ev(100, 1.0, 1), ev(200, 666.0, 2), ev(300, 2.0, 3)], 1);
        assert_eq!(panicked, 1);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(rec.stats.events, 3, "every event applied exactly once");
        assert_eq!(rec.sensors[0].value, 2.0, "in arrival order");
        assert_eq!(rec.open[0].acc.count, 3);
        assert_eq!(rec.open[0].acc.sum, 669.0);
    }
}

#[test]
fn an_event_that_panics_three_times_is_dead_lettered_and_the_rest_applied() {
    let (rec, dead, panicked) = run_twin(1, vec![ev(100, 1.0, 1), ev(200, 666.0, 2), ev(300, 2.0, 3)], u32::MAX);
    assert_eq!(
        panicked, MAX_ATTEMPTS,
        "the batch, then the event alone until the limit"
    );
    assert_eq!(rec.stats.events, 2, "the poison event is not applied");
    assert_eq!(rec.open[0].acc.sum, 3.0);
    assert_eq!(rec.sensors[0].value, 2.0);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["reason"], "poison");
    assert_eq!(dead[0]["origin"]["line"], 2);
    assert!(dead[0]["message"].as_str().unwrap().contains("3 times"), "{}", dead[0]);
    let payload: serde_json::Value = serde_json::from_str(dead[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["value"], 666.0);
    assert_eq!(payload["asset"], "p1");
}

#[test]
fn a_poison_reading_leaves_no_trace_whether_the_sensors_are_copied_or_logged() {
    // The poison reading is the newest: had its sensor not been put back
    // after each panic, the twin would hold it.
    for sensors in [1, 12] {
        let (rec, dead, panicked) = run_twin(sensors, vec![ev(100, 1.0, 1), ev(300, 666.0, 2)], u32::MAX);
        assert_eq!(panicked, MAX_ATTEMPTS);
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(rec.stats.events, 1);
        assert_eq!(rec.sensors[0].value, 1.0, "{sensors} sensors");
        assert_eq!(rec.open[0].acc.sum, 1.0);
    }
}
