//! Supervision by copy-on-write: the state a twin rolls back to after a
//! panic is kept as the parts a batch changes, each saved on its first
//! change, not as a copy of the whole twin before every batch.
//!
//! A twin's state is a few scalars and six parts behind pointers (sensors,
//! open and closed windows, alerts, the extension, history's log): each part
//! is a [`Part`], whose mutable borrow (`DerefMut`) saves it into this
//! thread's scratch the first time a guarded batch changes it. So a batch
//! that reads a part and never writes it (the closed windows a rule reads,
//! an extension a reading does not reach) costs neither the copy nor, for
//! a twin out of cache, the cache misses of reading that part.
//!
//! [`Guard::arm`] starts a batch: it keeps the scalars on the stack and marks
//! every part unsaved. [`Guard::roll_back`] puts the saved parts and the
//! scalars back; dropping the guard keeps the batch. The append-only logs
//! (the replay digest, history's raw readings and events) are saved as their
//! lengths and cut back to them, as before.
//!
//! Only the guarded twin's parts are saved: a part saves itself only when it
//! lies inside the twin the guard was armed for, so changing another state on
//! the same thread in a batch (none does) would not be mistaken for it.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use super::history::HistoryLog;
use super::state::{TwinExt, TwinState, TwinStats};
use super::{Acc, AlertState, OpenWindow, SensorState};
use crate::twin::commands::Commands;

/// One part of a [`TwinState`]: reads are plain; the first mutable borrow in
/// a guarded batch saves it for [`Guard::roll_back`] (module documentation).
#[derive(Clone, PartialEq, Default)]
#[repr(transparent)]
pub struct Part<T>(T);

impl<T> Part<T> {
    pub const fn new(value: T) -> Part<T> {
        Part(value)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Part<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> Deref for Part<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

const SENSORS: u8 = 1;
const OPEN: u8 = 1 << 1;
const CLOSED: u8 = 1 << 2;
const ALERTS: u8 = 1 << 3;
const EXT: u8 = 1 << 4;
const HISTORY: u8 = 1 << 5;
const ALL: u8 = SENSORS | OPEN | CLOSED | ALERTS | EXT | HISTORY;

thread_local! {
    /// The parts of the guarded twin not saved yet: 0 outside a guarded
    /// batch, so a mutable borrow there costs one test.
    static UNSAVED: Cell<u8> = const { Cell::new(0) };
    /// The address of the guarded twin.
    static TWIN: Cell<usize> = const { Cell::new(0) };
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// What the guarded batch changed, as it was before: each part's copy is
/// reused from batch to batch (and twin to twin), so saving does not
/// allocate in steady state.
#[derive(Default)]
struct Scratch {
    sensors: Box<[SensorState]>,
    open: Vec<OpenWindow>,
    closed: Box<[Option<Acc>]>,
    alerts: Box<[AlertState]>,
    /// Without its replay digest, which is saved as `digest`, its length.
    ext: Option<Box<TwinExt>>,
    digest: usize,
    /// Its partial buckets (when `had_history`); its raw readings and
    /// events are saved as their lengths.
    history: HistoryLog,
    had_history: bool,
    raw: usize,
    events: usize,
}

/// A part type: how it is saved and put back.
trait Undo: Sized {
    const BIT: u8;
    fn save(&self, into: &mut Scratch);
    fn put_back(&mut self, from: &mut Scratch);
}

macro_rules! plain_part {
    ($ty:ty, $bit:ident, $field:ident) => {
        impl Undo for $ty {
            const BIT: u8 = $bit;
            fn save(&self, into: &mut Scratch) {
                into.$field.clone_from(self);
            }
            fn put_back(&mut self, from: &mut Scratch) {
                std::mem::swap(self, &mut from.$field);
            }
        }
    };
}

plain_part!(Box<[SensorState]>, SENSORS, sensors);
plain_part!(Vec<OpenWindow>, OPEN, open);
plain_part!(Box<[Option<Acc>]>, CLOSED, closed);
plain_part!(Box<[AlertState]>, ALERTS, alerts);

impl Undo for Option<Box<TwinExt>> {
    const BIT: u8 = EXT;

    fn save(&self, into: &mut Scratch) {
        match (&mut into.ext, self) {
            (Some(a), Some(b)) => a.copy_but_digest(b),
            (a, b) => *a = b.as_deref().map(|b| Box::new(b.clone_but_digest())),
        }
        into.digest = self.as_deref().map_or(0, |x| x.digest.len());
    }

    fn put_back(&mut self, from: &mut Scratch) {
        let digest = self.as_deref_mut().map(|x| std::mem::take(&mut x.digest));
        std::mem::swap(self, &mut from.ext);
        if let (Some(x), Some(mut d)) = (self.as_deref_mut(), digest) {
            d.truncate(from.digest);
            x.digest = d;
        }
    }
}

impl Undo for Option<Box<HistoryLog>> {
    const BIT: u8 = HISTORY;

    fn save(&self, into: &mut Scratch) {
        into.had_history = self.is_some();
        if let Some(h) = self.as_deref() {
            into.history.partials.clone_from(&h.partials);
            (into.raw, into.events) = (h.raw.len(), h.events.len());
        }
    }

    fn put_back(&mut self, from: &mut Scratch) {
        match (self.as_deref_mut(), from.had_history) {
            (Some(h), true) => {
                std::mem::swap(&mut h.partials, &mut from.history.partials);
                h.raw.truncate(from.raw);
                h.events.truncate(from.events);
            }
            // The batch started the log.
            (Some(_), false) => *self = None,
            (None, false) => {}
            // Applying only adds to the log (a snapshot takes it, outside
            // any batch): it cannot have gone.
            (None, true) => unreachable!("a batch dropped the twin's history log"),
        }
    }
}

macro_rules! undo_on_write {
    ($($ty:ty),* $(,)?) => {$(
        impl DerefMut for Part<$ty> {
            #[inline(always)]
            fn deref_mut(&mut self) -> &mut $ty {
                if UNSAVED.with(Cell::get) & <$ty as Undo>::BIT != 0 {
                    save(self);
                }
                &mut self.0
            }
        }
    )*};
}

undo_on_write!(
    Box<[SensorState]>,
    Vec<OpenWindow>,
    Box<[Option<Acc>]>,
    Box<[AlertState]>,
    Option<Box<TwinExt>>,
    Option<Box<HistoryLog>>,
);

#[cold]
#[inline(never)]
fn save<T: Undo>(part: &Part<T>) {
    let at = part as *const Part<T> as usize;
    let twin = TWIN.with(Cell::get);
    if !(twin..twin + std::mem::size_of::<TwinState>()).contains(&at) {
        return; // a part of some other state
    }
    SCRATCH.with(|s| part.0.save(&mut s.borrow_mut()));
    UNSAVED.with(|u| u.set(u.get() & !T::BIT));
}

/// A guarded batch of one twin, on this thread (module documentation).
#[must_use = "dropping the guard keeps the batch; roll_back undoes it"]
pub struct Guard {
    twin: usize,
    version: u64,
    max_ts: i64,
    stats: TwinStats,
    sync_lag_ms: i32,
    offline: bool,
    /// Bound to the thread whose scratch holds the saved parts.
    _thread: PhantomData<*const ()>,
}

impl Guard {
    /// Starts a batch of `st` that [`Guard::roll_back`] can undo.
    pub fn arm(st: &TwinState) -> Guard {
        assert_eq!(UNSAVED.with(Cell::get), 0, "one guarded batch at a time on a thread");
        TWIN.with(|t| t.set(st as *const TwinState as usize));
        UNSAVED.with(|u| u.set(ALL));
        Guard {
            twin: st as *const TwinState as usize,
            version: st.version,
            max_ts: st.max_ts,
            stats: st.stats,
            sync_lag_ms: st.sync_lag_ms,
            offline: st.offline,
            _thread: PhantomData,
        }
    }

    /// Puts `st` (the twin the guard was armed for) back as it was when
    /// armed, in place of a possibly half-applied batch.
    pub fn roll_back(self, st: &mut TwinState) {
        assert_eq!(
            st as *const TwinState as usize, self.twin,
            "rolled back onto another twin"
        );
        let saved = ALL & !UNSAVED.with(Cell::get);
        // Disarmed first: putting parts back must not save them again.
        UNSAVED.with(|u| u.set(0));
        SCRATCH.with(|s| {
            let s = &mut s.borrow_mut();
            if saved & SENSORS != 0 {
                st.sensors.0.put_back(s);
            }
            if saved & OPEN != 0 {
                st.open.0.put_back(s);
            }
            if saved & CLOSED != 0 {
                st.closed.0.put_back(s);
            }
            if saved & ALERTS != 0 {
                st.alerts.0.put_back(s);
            }
            if saved & EXT != 0 {
                st.ext.0.put_back(s);
            }
            if saved & HISTORY != 0 {
                st.history.0.put_back(s);
            }
        });
        st.version = self.version;
        st.max_ts = self.max_ts;
        st.stats = self.stats;
        st.sync_lag_ms = self.sync_lag_ms;
        st.offline = self.offline;
    }

    /// Calls `f` with what `st` (the guarded twin, after its batch) looked
    /// like before the batch, in the parts it tells: the saved copy of each
    /// part the batch changed, the part itself otherwise.
    pub fn before<R>(&self, st: &TwinState, f: impl FnOnce(Parts<'_>) -> R) -> R {
        assert_eq!(st as *const TwinState as usize, self.twin, "asked about another twin");
        let saved = ALL & !UNSAVED.with(Cell::get);
        if saved & (SENSORS | ALERTS | EXT) == 0 {
            return f(Parts::of(st));
        }
        SCRATCH.with(|s| {
            let s = s.borrow();
            let now = Parts::of(st);
            f(Parts {
                sensors: if saved & SENSORS != 0 { &s.sensors } else { now.sensors },
                alerts: if saved & ALERTS != 0 { &s.alerts } else { now.alerts },
                commands: if saved & EXT != 0 {
                    s.ext.as_deref().and_then(|x| x.commands.as_deref())
                } else {
                    now.commands
                },
            })
        })
    }
}

impl Drop for Guard {
    /// Keeps the batch: nothing more is saved on this thread.
    fn drop(&mut self) {
        UNSAVED.with(|u| u.set(0));
        TWIN.with(|t| t.set(0));
    }
}

/// The parts of a twin that the node-wide metrics compare before and after
/// a batch (`engine::host::account`).
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    pub sensors: &'a [SensorState],
    pub alerts: &'a [AlertState],
    pub commands: Option<&'a Commands>,
}

impl<'a> Parts<'a> {
    pub fn of(st: &'a TwinState) -> Parts<'a> {
        Parts {
            sensors: &st.sensors,
            alerts: &st.alerts,
            commands: st.commands(),
        }
    }
}
