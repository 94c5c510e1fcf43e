//! The file source: reads a JSON-lines file in chunks cut at line ends.
//!
//! It starts at the durable [`SourcePosition`] (a byte offset), so a restart
//! resumes exactly after the last record whose effects are in the store.
//! Pacing: as fast as possible, at the recorded pace of the event timestamps,
//! or at a fixed rate (records per second).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::decode::Decoder;
use super::{DecodeJob, Fingerprint, SourceError, SourcePosition};
use crate::pipeline::flow::{AcquireError, Flow};
use crate::pipeline::{DeadLetter, DeadReason, DecodedChunk, Origin};
use crate::topology::Pace;

/// Chunk size when reading as fast as possible.
pub const FAST_CHUNK_BYTES: usize = 8 << 20;
/// A record longer than this is dead-lettered (its first bytes kept).
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// Records per chunk at a recorded pace, so pacing is smooth.
const PACED_CHUNK_LINES: usize = 64;

/// Records per chunk when paced: about 2 ms of a fixed `rate` (the time a
/// chunk waits to be decoded and applied is most of its events' apply
/// latency; a node that cannot keep up with chunks this small reads bigger
/// ones, see [`rate_lines`]), 64 at a recorded pace.
fn paced_lines(rate: Option<f64>) -> usize {
    match rate {
        Some(r) => ((r * 0.002) as usize).clamp(PACED_CHUNK_LINES, 100_000),
        None => PACED_CHUNK_LINES,
    }
}

/// Records per chunk, at most, while a `--rate` replay catches up.
const CATCH_UP_LINES: usize = 100_000;

/// Records the next chunk of a replay at `rate` should hold: about 2 ms of
/// the rate ([`paced_lines`]) while the reader keeps to it; every record
/// already due (up to [`CATCH_UP_LINES`]) once it fell behind, because the
/// engine took longer than the pace allows. Bigger chunks give each twin a
/// bigger batch, so a node that cannot keep up with small batches catches
/// up with bigger ones (adaptive batching) instead of falling further behind.
fn rate_lines(rate: f64, elapsed: Duration, records_sent: u64) -> usize {
    let due = (elapsed.as_secs_f64() * rate) as u64;
    let behind = usize::try_from(due.saturating_sub(records_sent)).unwrap_or(usize::MAX);
    let on_pace = paced_lines(Some(rate));
    behind.clamp(on_pace, CATCH_UP_LINES.max(on_pace))
}

/// Bytes to read per chunk: [`FAST_CHUNK_BYTES`] at full speed, else about
/// what [`paced_lines`] records take (a chunk cut short copies the rest).
pub fn chunk_bytes(rate: Option<f64>, pace: Pace) -> usize {
    match (rate, pace) {
        (None, Pace::Fast) => FAST_CHUNK_BYTES,
        _ => (paced_lines(rate) * 128).clamp(1 << 16, FAST_CHUNK_BYTES),
    }
}

/// Decoded chunk buffers kept for reuse (each up to `FAST_CHUNK_BYTES` plus a
/// line); more in flight than this are dropped once decoded.
const RECYCLED_BUFFERS: usize = 4;

pub struct FileReader {
    pub source: u16,
    pub name: Arc<str>,
    pub path: PathBuf,
    pub decoder: Arc<Decoder>,
    pub start: SourcePosition,
    pub pace: Pace,
    /// Records per second, when limited.
    pub rate: Option<f64>,
    pub chunk_bytes: usize,
}

/// Checks that `start` belongs to the file at `path` and returns the
/// position to start from (with the file's fingerprint filled in).
pub fn check_position(
    name: &str,
    path: &std::path::Path,
    start: SourcePosition,
) -> Result<SourcePosition, SourceError> {
    let io = |error| SourceError::Io {
        source_name: name.to_string(),
        path: path.to_path_buf(),
        error,
    };
    let fp = Fingerprint::of(path).map_err(io)?;
    let len = std::fs::metadata(path).map_err(io)?.len();
    if let Some(stored) = &start.fingerprint {
        if !stored.matches(path).map_err(io)? {
            let stored_desc = if stored.path == fp.path {
                "an earlier version of this file (it was rewritten, not appended to)".to_string()
            } else {
                stored.path.clone()
            };
            return Err(SourceError::OtherFile {
                source_name: name.to_string(),
                path: path.to_path_buf(),
                stored: stored_desc,
                head_len: stored.head_len,
            });
        }
    }
    if start.offset > len {
        return Err(SourceError::Truncated {
            source_name: name.to_string(),
            path: path.to_path_buf(),
            len,
            offset: start.offset,
        });
    }
    Ok(SourcePosition {
        fingerprint: Some(fp),
        ..start
    })
}

impl FileReader {
    /// Reads until the end of the file, `stop`, or a closed flow. Every chunk
    /// goes to `jobs`; the last one is marked `last` (and `end_of_input` at the
    /// end of the file).
    pub fn run(
        self,
        flow: &Flow,
        jobs: &Sender<DecodeJob>,
        stop: &AtomicBool,
        progress: &AtomicU64,
    ) -> Result<(), SourceError> {
        let io = |error| SourceError::Io {
            source_name: self.name.to_string(),
            path: self.path.clone(),
            error,
        };
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(self.start.offset)).map_err(io)?;
        let paced = self.rate.is_some() || matches!(self.pace, Pace::Recorded { .. });
        let mut offset = self.start.offset;
        let mut line = self.start.line;
        let mut seq = 0u64;
        let mut carry: Vec<u8> = Vec::new();
        let mut eof = false;
        let mut grow = false;
        let started = Instant::now();
        let mut records_sent = 0u64;
        let mut recorded_origin: Option<(i64, Instant)> = None;
        // Decoded chunks' buffers come back here to be filled again.
        let (recycle_tx, recycle_rx) = crossbeam_channel::bounded::<Vec<u8>>(RECYCLED_BUFFERS);
        let send_marker = |seq: u64, offset: u64, line: u64, end_of_input: bool| {
            let mut c = DecodedChunk::empty(self.source, seq, offset, line);
            c.last = true;
            c.end_of_input = end_of_input;
            let _ = jobs.send(DecodeJob {
                data: Vec::new(),
                offset,
                first_line: line + 1,
                decoder: self.decoder.clone(),
                chunk: c,
                recycle: None,
            });
        };
        loop {
            if stop.load(Ordering::Relaxed) {
                send_marker(seq, offset, line, false);
                return Ok(());
            }
            if eof && carry.is_empty() {
                send_marker(seq, offset, line, true);
                return Ok(());
            }
            let permit = match flow.acquire_timeout(Duration::from_millis(100)) {
                Ok(p) => p,
                Err(AcquireError::Timeout) => continue,
                Err(AcquireError::Closed) => {
                    send_marker(seq, offset, line, false);
                    return Ok(());
                }
            };
            // Fill a buffer: the carried partial line, then fresh bytes.
            let mut buf = match recycle_rx.try_recv() {
                Ok(mut b) => {
                    b.extend_from_slice(&carry);
                    carry.clear();
                    b
                }
                Err(_) => std::mem::take(&mut carry),
            };
            // Records this chunk should hold when paced, and bytes to read
            // for them (at the mean record size so far).
            let want_lines = match self.rate {
                Some(rate) => Some(rate_lines(rate, started.elapsed(), records_sent)),
                None => paced.then(|| paced_lines(None)),
            };
            let chunk_bytes = match want_lines {
                Some(n) if records_sent > 0 => {
                    let mean = (offset - self.start.offset).div_ceil(records_sent) as usize;
                    (n.saturating_mul(mean.max(1))).clamp(self.chunk_bytes, FAST_CHUNK_BYTES)
                }
                _ => self.chunk_bytes,
            };
            // After a partial line, read further than the line so far.
            let target = if grow { buf.len() + chunk_bytes } else { chunk_bytes };
            grow = false;
            while !eof && buf.len() < target {
                let want = (target - buf.len()) as u64;
                let n = (&mut file).take(want).read_to_end(&mut buf).map_err(io)?;
                if n == 0 {
                    eof = true;
                }
            }
            let cut = want_lines
                .and_then(|n| nth_line_end(&buf, n))
                .or_else(|| memchr::memrchr(b'\n', &buf).map(|i| i + 1))
                .or_else(|| eof.then_some(buf.len()));
            let cut = match cut {
                Some(c) => c,
                None if buf.len() >= MAX_RECORD_BYTES => {
                    // One record larger than any sane event: dead-letter its
                    // head and skip to the next line end.
                    let dl = DeadLetter {
                        origin: Origin {
                            source: self.name.clone(),
                            file: self.decoder.file.clone(),
                            line: line + 1,
                            offset: Some(offset),
                            topic: None,
                            partition: None,
                        },
                        reason: DeadReason::Malformed,
                        message: format!("record longer than {MAX_RECORD_BYTES} bytes; first 4096 bytes kept"),
                        payload: buf[..4096].to_vec(),
                        key: None,
                    };
                    let (skipped, rest, hit_eof) = skip_to_line_end(&mut file, buf.len() as u64).map_err(io)?;
                    carry = rest;
                    eof |= hit_eof;
                    let mut chunk = DecodedChunk::empty(self.source, seq, offset + skipped, line + 1);
                    chunk.records = 1;
                    chunk.dead_letters.push(dl);
                    chunk.permit = Some(permit);
                    let job = DecodeJob {
                        data: Vec::new(),
                        offset,
                        first_line: line + 1,
                        decoder: self.decoder.clone(),
                        chunk,
                        recycle: None,
                    };
                    if jobs.send(job).is_err() {
                        return Ok(());
                    }
                    seq += 1;
                    offset += skipped;
                    line += 1;
                    continue;
                }
                None => {
                    // A partial line and more to read: keep it and read on.
                    carry = buf;
                    grow = true;
                    continue;
                }
            };
            carry = buf.split_off(cut);
            let lines = memchr::memchr_iter(b'\n', &buf).count() as u64
                + u64::from(!buf.is_empty() && buf.last() != Some(&b'\n'));
            self.pace_chunk(&buf, lines, started, &mut records_sent, &mut recorded_origin, stop);
            let last = eof && carry.is_empty();
            let mut chunk = DecodedChunk::empty(self.source, seq, offset + cut as u64, line + lines);
            chunk.last = last;
            chunk.end_of_input = last;
            chunk.permit = Some(permit);
            let job = DecodeJob {
                data: buf,
                offset,
                first_line: line + 1,
                decoder: self.decoder.clone(),
                chunk,
                recycle: Some(recycle_tx.clone()),
            };
            if jobs.send(job).is_err() {
                return Ok(());
            }
            seq += 1;
            offset += cut as u64;
            line += lines;
            progress.store(offset, Ordering::Relaxed);
            if last {
                return Ok(());
            }
        }
    }

    /// Sleeps as the pace requires before a chunk of `lines` records.
    fn pace_chunk(
        &self,
        buf: &[u8],
        lines: u64,
        started: Instant,
        records_sent: &mut u64,
        recorded_origin: &mut Option<(i64, Instant)>,
        stop: &AtomicBool,
    ) {
        let due = if let Some(rate) = self.rate {
            let due = started + Duration::from_secs_f64(*records_sent as f64 / rate);
            *records_sent += lines;
            Some(due)
        } else if let Pace::Recorded { speed } = self.pace {
            let first = buf.split(|b| *b == b'\n').next().unwrap_or_default();
            self.decoder.peek_ts(first).map(|ts| {
                let (ts0, t0) = *recorded_origin.get_or_insert((ts, Instant::now()));
                t0 + Duration::from_secs_f64(((ts - ts0).max(0) as f64 / 1000.0) / speed)
            })
        } else {
            None
        };
        if let Some(due) = due {
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                std::thread::sleep((due - now).min(Duration::from_millis(100)));
            }
        }
    }
}

/// The end (exclusive) of the `n`-th line in `buf`, if it has that many.
fn nth_line_end(buf: &[u8], n: usize) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf).nth(n - 1).map(|i| i + 1)
}

/// Reads past the end of the current (overlong) line, of which `seen` bytes
/// were read already. Returns the bytes of the line in total, the bytes read
/// after its end, and whether the file ended.
fn skip_to_line_end(file: &mut File, seen: u64) -> std::io::Result<(u64, Vec<u8>, bool)> {
    let mut skipped = seen;
    let mut block = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok((skipped, Vec::new(), true));
        }
        if let Some(i) = memchr::memchr(b'\n', &block[..n]) {
            skipped += (i + 1) as u64;
            return Ok((skipped, block[i + 1..n].to_vec(), false));
        }
        skipped += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_line_end_counts_lines() {
        assert_eq!(nth_line_end(b"a\nb\nc\n", 2), Some(4));
        assert_eq!(nth_line_end(b"a\nb", 2), None);
    }

    #[test]
    fn a_rate_replay_reads_2_ms_chunks_on_pace_and_everything_due_when_behind() {
        let rate = 1_000_000.0;
        let at = Duration::from_millis;
        // On pace: 2 ms of the rate, however little is due.
        assert_eq!(rate_lines(rate, at(0), 0), 2_000);
        assert_eq!(rate_lines(rate, at(1000), 999_000), 2_000);
        // Behind: every record due, up to the cap.
        assert_eq!(rate_lines(rate, at(1000), 950_000), 50_000);
        assert_eq!(rate_lines(rate, at(5000), 0), CATCH_UP_LINES);
        // Ahead of the rate (the reader sleeps before sending).
        assert_eq!(rate_lines(rate, at(10), 1_000_000), 2_000);
        // A rate whose 2 ms exceed the cap keeps its 2 ms.
        assert_eq!(rate_lines(50_000_000.0, at(0), 0), 100_000);
    }
}
