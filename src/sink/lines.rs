//! The JSON-lines sinks: stdout and files, an actix actor each on the sinks'
//! arbiter. A write error fails the sink for good: it refuses every later
//! flush, so no checkpoint commits past an output that was not written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{json, Deliver, FlushSink, SinkError};
use crate::telemetry;
use crate::topology::OutputKind;
use crate::twin::schema::OutputMask;

/// How long written lines wait at most for a flush while deliveries keep
/// the sink busy.
const FLUSH_LAG: Duration = Duration::from_millis(1);

/// Where a lines sink writes.
pub(super) enum Target {
    Stdout(BufWriter<std::io::Stdout>),
    File { out: BufWriter<File>, path: PathBuf },
}

impl Target {
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Target::Stdout(w) => w,
            Target::File { out, .. } => out,
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Stdout(_) => "stdout".into(),
            Target::File { path, .. } => path.display().to_string(),
        }
    }
}

/// Writes the outputs it subscribes to as JSON lines.
pub struct SinkActor {
    name: String,
    mask: OutputMask,
    /// Source index -> name (events name their source).
    sources: Arc<[Arc<str>]>,
    target: Target,
    /// The first write error; the sink refuses to confirm flushes after it,
    /// so no checkpoint commits past an output that was not written.
    failed: Option<SinkError>,
    line: Vec<u8>,
    /// A flush is scheduled, since the first write it will flush.
    flush_pending: Option<Instant>,
    hops: telemetry::OutputHops,
    /// Written since the last flush: when each batch's lines were produced
    /// and how many, and the event times of its alerts.
    unflushed: Vec<(Instant, u64)>,
    alerts_unflushed: Vec<i64>,
}

impl SinkActor {
    pub(super) fn new(name: String, mask: OutputMask, sources: Arc<[Arc<str>]>, target: Target) -> SinkActor {
        SinkActor {
            name,
            mask,
            sources,
            target,
            failed: None,
            line: Vec::with_capacity(512),
            flush_pending: None,
            hops: telemetry::OutputHops::default(),
            unflushed: Vec::new(),
            alerts_unflushed: Vec::new(),
        }
    }

    /// Flushes what was written to the file or terminal: those outputs are
    /// out (the `output` and `end_to_end` hops).
    fn flush(&mut self) -> std::io::Result<()> {
        self.target.writer().flush()?;
        for (produced, n) in self.unflushed.drain(..) {
            self.hops.out(produced, n);
        }
        if !self.alerts_unflushed.is_empty() {
            let now = crate::pipeline::now_ms();
            for ts in self.alerts_unflushed.drain(..) {
                self.hops.alert_out(ts, now);
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: std::io::Error) {
        if self.failed.is_none() {
            let err = SinkError {
                sink: self.name.clone(),
                target: self.target.describe(),
                message: e.to_string(),
            };
            tracing::error!(sink = %self.name, error = %err, "sink write failed");
            self.failed = Some(err);
        }
    }
}

impl Actor for SinkActor {
    type Context = Context<Self>;
}

impl SinkActor {
    /// Lines reach the file or terminal as soon as no more deliveries wait
    /// (a spawned item runs once the mailbox is drained), or [`FLUSH_LAG`]
    /// after the first of them while deliveries keep coming: someone
    /// watching sees outputs at once, and a busy sink writes in large
    /// blocks. (A timer of a millisecond fired 1-2 ms late: the `output`
    /// hop's median was that wait.)
    fn flush_soon(&mut self, ctx: &mut Context<Self>) {
        match self.flush_pending {
            Some(since) => {
                if since.elapsed() >= FLUSH_LAG {
                    self.flush_now();
                    self.flush_pending = Some(Instant::now());
                }
            }
            None => {
                self.flush_pending = Some(Instant::now());
                ctx.spawn(actix::fut::ready(()).map(|(), act: &mut SinkActor, _| {
                    act.flush_pending = None;
                    act.flush_now();
                }));
            }
        }
    }

    /// Flushes, unless the sink failed; a failure fails it.
    fn flush_now(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.flush() {
                self.fail(e);
            }
        }
    }
}

impl Handler<Deliver> for SinkActor {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if self.failed.is_some() {
            return;
        }
        let batch = &msg.0;
        let mut lines = 0u64;
        for o in &batch.outputs {
            if !o.kind().is_some_and(|k| self.mask.has(k)) {
                continue;
            }
            self.line.clear();
            json::render_output(&mut self.line, batch, o);
            if let Err(e) = self.target.writer().write_all(&self.line) {
                return self.fail(e);
            }
            self.alerts_unflushed.extend(o.alert_ts());
            lines += 1;
        }
        if self.mask.has(OutputKind::DeadLetters) {
            for d in &batch.dead_letters {
                self.line.clear();
                json::render_dead_letter(&mut self.line, d, batch.at_ms);
                if let Err(e) = self.target.writer().write_all(&self.line) {
                    return self.fail(e);
                }
                lines += 1;
            }
        }
        if self.mask.has(OutputKind::Events) {
            for e in &batch.events {
                self.line.clear();
                json::render_event(&mut self.line, batch, e, &self.sources);
                if let Err(e) = self.target.writer().write_all(&self.line) {
                    return self.fail(e);
                }
                lines += 1;
            }
        }
        telemetry::sink_written(&self.name, lines);
        if lines > 0 {
            self.unflushed.push((batch.produced, lines));
            self.flush_soon(ctx);
        }
    }
}

impl Handler<FlushSink> for SinkActor {
    type Result = ();

    fn handle(&mut self, msg: FlushSink, _: &mut Context<Self>) {
        if self.failed.is_none() {
            let result = self.flush().and_then(|()| match &mut self.target {
                Target::File { out, .. } if msg.sync => out.get_ref().sync_data(),
                _ => Ok(()),
            });
            if let Err(e) = result {
                self.fail(e);
            }
        }
        let _ = msg.reply.send(match &self.failed {
            None => Ok(Vec::new()),
            Some(e) => Err(e.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::dead_letter::DeadLetter;
    use crate::pipeline::output::OutputBatch;

    fn dead_letter(line: u64) -> Arc<OutputBatch> {
        Arc::new(OutputBatch {
            asset: None,
            model: None,
            outputs: Vec::new(),
            dead_letters: vec![DeadLetter::malformed_line("f", line)],
            events: Vec::new(),
            at_ms: 0,
            produced: Instant::now(),
            permit: None,
        })
    }

    #[test]
    fn lines_are_flushed_once_no_more_deliveries_wait_not_on_a_timer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let target = Target::File {
            out: BufWriter::new(File::create(&path).unwrap()),
            path: path.clone(),
        };
        let mask = OutputMask::default().with(OutputKind::DeadLetters);
        actix::System::new().block_on(async {
            let sink = SinkActor::new("file".into(), mask, Arc::from(vec![Arc::<str>::from("f")]), target).start();
            // Three deliveries queued at once, then one more alone: the
            // actor's task (on this thread) drains its mailbox, flushes,
            // and only then lets the reply's receiver run. A timer would
            // leave the file empty here.
            for line in 1..=3 {
                sink.do_send(Deliver(dead_letter(line)));
            }
            sink.send(Deliver(dead_letter(4))).await.unwrap();
            let written = std::fs::read_to_string(&path).unwrap();
            assert_eq!(written.lines().count(), 4, "{written}");
            sink.send(Deliver(dead_letter(5))).await.unwrap();
            assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 5);
        });
    }
}
