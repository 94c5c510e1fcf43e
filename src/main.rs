//! The `twinstream` command line.

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use twinstream::api::auth::Tokens;
use twinstream::api::ApiConfig;
use twinstream::engine::{self, query, Mode, Options};
use twinstream::telemetry::logging::{self, LogFormat};
use twinstream::topology::{self, LoadError, SourceKind, Topology};

/// mimalloc: the engine allocates small, short-lived buffers on many threads
/// (batches, messages, outputs); glibc malloc spent ~8% of replay time there.
/// (Per idle actix actor it costs ~100 B more than glibc: 1258 vs 1161 B;
/// jemalloc measured 1104 B but no faster here.) Build without the default
/// `mimalloc` feature to profile the heap with valgrind's massif or DHAT.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `print!` to `$dst`, ignoring a write that fails: a closed stdout
/// (`twinstream check T | head -1`) or stderr (a terminal's `tee` gone at
/// Ctrl-C) is no reason to panic on the way out.
macro_rules! say {
    ($dst:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!($dst, $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "twinstream",
    version,
    about = "Stateful stream processor for real-time digital twins"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "TWINSTREAM_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a topology: every error as file:line:col, or a summary.
    Check {
        /// Topology YAML file.
        topology: PathBuf,
    },
    /// Verify a state directory offline: every value read through its
    /// checksum and decoded. Exit code 0: nothing damaged; 1: damage found
    /// (each place listed); 2: the store cannot be opened at all.
    CheckState {
        /// The state directory (`node.state_dir`).
        dir: PathBuf,
    },
    /// Run a topology until SIGINT/SIGTERM.
    Run {
        topology: PathBuf,
        /// Runtime data directory (overrides `node.state_dir`).
        #[arg(long, env = "TWINSTREAM_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Serve the HTTP API on this address (overrides `node.http.listen`;
        /// port 0 picks a free port and logs it).
        #[arg(long, env = "TWINSTREAM_HTTP")]
        http: Option<std::net::SocketAddr>,
        /// After SIGINT/SIGTERM, exit (code 1) if draining takes longer than
        /// this; the next start resumes from the last durable checkpoint.
        #[arg(long, env = "TWINSTREAM_STOP_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
        stop_timeout: Duration,
    },
    /// Replay a recorded JSON-lines file through a topology as fast as possible
    /// and write a report. Resumes where a killed replay stopped.
    Replay {
        topology: PathBuf,
        /// JSON-lines file of events.
        file: PathBuf,
        /// Where to write the JSON report.
        #[arg(long)]
        report: PathBuf,
        /// Also write every history bucket within retention as CSV
        /// (`asset,series,width,start,count,sum,min,max,first_ts,first,last_ts,last`,
        /// values times 64), sorted, for a row-by-row diff with the reference.
        #[arg(long)]
        history_out: Option<PathBuf>,
        /// Compact the store's history before the report, so its
        /// `history_disk_bytes` is the size after compaction (benchmarks).
        #[arg(long)]
        compact: bool,
        /// State directory of the replay (default: `<node.state_dir>/replay`).
        #[arg(long, env = "TWINSTREAM_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Discard the replay state first and start from the beginning.
        #[arg(long)]
        fresh: bool,
        /// Limit the replay to this many records per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Decode with this source's mapping (default: the only file source).
        #[arg(long)]
        source: Option<String>,
        /// Serve the HTTP API while replaying (the topology's
        /// `node.http.listen` is not used by `replay`).
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// After SIGINT/SIGTERM, exit (code 1) if draining takes longer than
        /// this; the next run resumes from the last durable checkpoint.
        #[arg(long, env = "TWINSTREAM_STOP_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
        stop_timeout: Duration,
    },
}

/// The instructions this build was compiled to use (`.cargo/config.toml`)
/// that this CPU lacks, asked of CPUID itself: `is_x86_feature_detected!`
/// answers yes, without asking, for a feature the build enables. Without
/// the check such a CPU would stop the node with an illegal instruction
/// somewhere in RocksDB.
#[cfg(target_arch = "x86_64")]
fn missing_cpu_features() -> Option<String> {
    // CPUID leaf 1, ECX: bit 20 SSE 4.2, bit 1 PCLMULQDQ.
    let ecx = std::arch::x86_64::__cpuid(1).ecx;
    let wanted = [
        (cfg!(target_feature = "sse4.2"), 20, "SSE 4.2"),
        (cfg!(target_feature = "pclmulqdq"), 1, "PCLMULQDQ"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(built_for, bit, _)| *built_for && ecx & (1 << bit) == 0)
        .map(|(_, _, name)| *name)
        .collect();
    (!missing.is_empty()).then(|| missing.join(" and "))
}

#[cfg(not(target_arch = "x86_64"))]
fn missing_cpu_features() -> Option<String> {
    None
}

/// RocksDB's C++ side allocates with glibc malloc. A checkpoint of many dirty
/// twins is one WriteBatch, applied to the memtable at once; glibc's dynamic
/// mmap threshold then serves later multi-MiB arena blocks from its heap and
/// never returns them, so RSS stayed at the largest checkpoint ever written
/// (~700 B per twin that was dirty in it). A fixed threshold keeps large
/// blocks in mmap, returned to the OS when freed: steady RSS per twin went
/// from 2279 B to ~1.6 KB (scripts/bench-memory.sh, docs/decisions.md).
fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called once at start,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    if let Some(missing) = missing_cpu_features() {
        eprintln!(
            "error: this CPU lacks {missing}, which this build of twinstream uses (.cargo/config.toml \
             enables it for RocksDB's hardware CRC32C); to run here, build it without: \
             `RUSTFLAGS= cargo build --release` (an empty RUSTFLAGS overrides the config)"
        );
        return ExitCode::FAILURE;
    }
    return_large_blocks_to_the_os();
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            say_on_the_way_out(format!("error: {e:#}"), LAST_WORDS);
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Check { topology } => check(&topology),
        Command::CheckState { dir } => check_state(&dir),
        Command::Run {
            topology,
            state_dir,
            http,
            stop_timeout,
        } => {
            let topo = load(&topology)?;
            let state_dir = state_dir.unwrap_or_else(|| topo.node.state_dir.clone());
            run(&topo, state_dir, http.or(topo.node.http_listen), stop_timeout)
        }
        Command::Replay {
            topology,
            file,
            report,
            history_out,
            compact,
            state_dir,
            fresh,
            rate,
            source,
            http,
            stop_timeout,
        } => {
            let topo = load(&topology)?;
            let state_dir = state_dir.unwrap_or_else(|| topo.node.state_dir.join("replay"));
            let flags = ReplayFlags {
                fresh,
                rate,
                source,
                http,
                stop_timeout,
                history_out,
                compact,
            };
            replay(&topo, &file, &report, state_dir, &flags)
        }
    }
}

fn load(path: &Path) -> Result<Topology> {
    match topology::load(path) {
        Ok(t) => Ok(t),
        Err(LoadError::Invalid(diags)) => {
            say!(std::io::stderr(), "{diags}");
            bail!(
                "{} has {} problem(s); run `twinstream check` for details",
                path.display(),
                diags.len()
            )
        }
        Err(e) => Err(e.into()),
    }
}

fn check(path: &Path) -> Result<ExitCode> {
    match topology::load(path) {
        Ok(t) => {
            say!(std::io::stdout(), "{}", t.summary());
            Ok(ExitCode::SUCCESS)
        }
        Err(LoadError::Invalid(diags)) => {
            say!(std::io::stdout(), "{diags}");
            say!(std::io::stderr(), "{}: {} problem(s)\n", path.display(), diags.len());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn check_state(dir: &Path) -> Result<ExitCode> {
    use std::fmt::Write as _;
    let checked = match twinstream::state_check::check(dir) {
        Ok(c) => c,
        Err(e) => {
            say!(std::io::stderr(), "error: {e}\n");
            return Ok(ExitCode::from(2));
        }
    };
    let mut text = format!("state directory {}", dir.display());
    if let Some(f) = checked.format {
        let _ = write!(text, " (store format {f})");
    }
    text.push('\n');
    for (what, t) in &checked.read {
        let _ = writeln!(text, "  {what}: {} ({} bytes)", t.values, t.bytes);
    }
    for f in &checked.findings {
        let _ = writeln!(text, "DAMAGED {}: {}", f.place, f.problem);
    }
    if checked.findings.is_empty() {
        text.push_str("ok: every value reads\n");
    } else {
        let _ = writeln!(
            text,
            "{} damaged; at the next start a damaged twin record is quarantined as `node.damaged_twin` says (dead-lettered, rebuilt from the changelog or from empty); other damage stops the node",
            checked.findings.len()
        );
    }
    say!(std::io::stdout(), "{text}");
    Ok(if checked.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Writes `line` to stderr, ignoring a closed stderr and giving up after
/// `patience` when stderr blocks (a pipe nobody reads): a process that is
/// leaving must not panic or hang on its last words.
fn say_on_the_way_out(line: String, patience: Duration) {
    let (said, done) = std::sync::mpsc::channel();
    let spoke = std::thread::Builder::new().name("last-words".into()).spawn(move || {
        let _ = writeln!(std::io::stderr(), "{line}");
        let _ = said.send(());
    });
    if spoke.is_ok() {
        let _ = done.recv_timeout(patience);
    }
}

/// SIGINT/SIGTERM set `stop` (drain and exit cleanly). A second one exits at
/// once (130), and so does a drain that outlasts `stop_timeout` (exit 1):
/// whatever happens to the outputs, a signalled process ends. Nothing here
/// writes to stderr except through [`say_on_the_way_out`], so a closed or
/// full stderr cannot stop this thread from seeing the next signal.
fn on_signals(stop: Arc<AtomicBool>, stop_timeout: Duration) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if stop.swap(true, Ordering::SeqCst) {
                say_on_the_way_out("second signal: exiting without draining".into(), LAST_WORDS);
                exit_now(130);
            }
            // Logged from its own thread: the log may block on a full pipe.
            let _ = std::thread::Builder::new().name("stopping".into()).spawn(move || {
                tracing::info!(signal = sig, "stopping: draining sources and writing a final snapshot");
            });
            let _ = std::thread::Builder::new().name("stop-timeout".into()).spawn(move || {
                std::thread::sleep(stop_timeout);
                say_on_the_way_out(
                    format!(
                        "error: did not stop within {} of the signal (--stop-timeout); exiting without a final snapshot: the next start resumes from the last durable one",
                        humantime::format_duration(stop_timeout)
                    ),
                    LAST_WORDS,
                );
                exit_now(1);
            });
        }
    })?;
    Ok(())
}

/// A fault drill: with `TWINSTREAM_CLOCK_OFFSET_FILE` set, the node's
/// processing-time clock runs the file's number of milliseconds ahead of
/// the machine's (behind when negative; no file: 0), read at start and again
/// on every SIGUSR2 - a clock step on one node while the rest of the machine
/// keeps its time (the chaos soak, RELIABILITY.md).
fn clock_drill() -> Result<()> {
    let Some(file) = std::env::var_os("TWINSTREAM_CLOCK_OFFSET_FILE").map(PathBuf::from) else {
        return Ok(());
    };
    let read = move || match std::fs::read_to_string(&file) {
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(ms) => {
                twinstream::pipeline::clock::set_offset_ms(ms);
                tracing::warn!(offset_ms = ms, file = %file.display(), "fault drill: the processing-time clock is stepped");
            }
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "fault drill: the clock offset file does not hold a number of milliseconds; the clock stays as it was")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => twinstream::pipeline::clock::set_offset_ms(0),
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "fault drill: cannot read the clock offset file; the clock stays as it was")
        }
    };
    // The handler first: a step signalled while the file is read is not lost.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR2])
        .context("installing the SIGUSR2 handler")?;
    read();
    std::thread::Builder::new()
        .name("clock-drill".into())
        .spawn(move || {
            for _ in signals.forever() {
                read();
            }
        })
        .context("starting the clock drill's thread")?;
    Ok(())
}

/// Ends the process at once, as `kill -9` would but with `code`: no atexit
/// handlers or C++ static destructors (RocksDB's) run under threads still
/// using them, and nothing waits on a stuck output. What is durable stays
/// so: the store's log was written before; the next start recovers from it.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit only ends the process; it touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// How long a leaving process waits for stderr to take its last line.
const LAST_WORDS: Duration = Duration::from_millis(500);

/// Reads an API token from where the topology says.
fn token(secret: Option<&topology::Secret>, what: &str) -> Result<Option<String>> {
    let Some(s) = secret else { return Ok(None) };
    let t = s
        .read()
        .map_err(|e| anyhow::anyhow!("cannot read the {what} from {}: {e}", s.describe()))?;
    if t.trim().is_empty() {
        bail!("the {what} from {} is empty", s.describe());
    }
    Ok(Some(t))
}

/// Starts the HTTP API on `listen`, if given, with the topology's tokens and
/// the Prometheus recorder; returns the server and the engine's end of the link.
fn serve(
    topo: &Topology,
    listen: Option<std::net::SocketAddr>,
) -> Result<(Option<twinstream::api::Server>, Option<query::ApiLink>)> {
    let Some(listen) = listen else { return Ok((None, None)) };
    let tokens = Tokens {
        write: token(topo.node.http_write_token.as_ref(), "HTTP write token")?,
        read: token(topo.node.http_read_token.as_ref(), "HTTP read token")?,
    };
    let metrics = twinstream::telemetry::install_prometheus()?;
    let (engine_end, api_end) = query::link();
    let config = ApiConfig {
        listen,
        tokens,
        metrics: Some(metrics),
        priority: topo.node.http_priority,
    };
    let server = twinstream::api::start(config, engine_end)?;
    let api_end = query::ApiLink {
        addr: Some(server.addr),
        ..api_end
    };
    Ok((Some(server), Some(api_end)))
}

fn run(
    topo: &Topology,
    state_dir: PathBuf,
    http: Option<std::net::SocketAddr>,
    stop_timeout: Duration,
) -> Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    on_signals(stop.clone(), stop_timeout)?;
    clock_drill()?;
    tracing::info!(topology = %topo.file.display(), state_dir = %state_dir.display(), "twinstream {} running", env!("CARGO_PKG_VERSION"));
    // The API listens before the engine restores, so `/healthz` answers and
    // `/readyz` says 503 while it starts.
    let (server, api) = serve(topo, http)?;
    let opts = Options {
        mode: Mode::Run,
        state_dir,
        api,
    };
    let outcome = engine::run(topo, &opts, stop, Arc::new(AtomicU64::new(0)));
    if let Some(s) = server {
        s.stop();
    }
    let summary = outcome?;
    tracing::info!(
        events = summary.events,
        twins = summary.twins,
        checkpoints = summary.checkpoints,
        "stopped cleanly"
    );
    Ok(ExitCode::SUCCESS)
}

fn pick_source(topo: &Topology, wanted: Option<&str>) -> Result<usize> {
    if let Some(name) = wanted {
        let Some(i) = topo.sources.iter().position(|s| s.name == name) else {
            bail!("--source {name}: the topology has no such source");
        };
        if topo.sources[i].decode.is_none() {
            bail!(
                "--source {name}: a `{}` source has no decode mapping to replay with",
                topo.sources[i].kind.type_name()
            );
        }
        return Ok(i);
    }
    let files: Vec<usize> = (0..topo.sources.len())
        .filter(|i| matches!(topo.sources[*i].kind, SourceKind::File(_)))
        .collect();
    match files.as_slice() {
        [one] => Ok(*one),
        [] => {
            bail!("the topology has no file source whose decode mapping `replay` could use; add one or pass --source")
        }
        _ => bail!("the topology has several file sources; pass --source NAME to pick the decode mapping"),
    }
}

/// Removes a replay state directory, refusing anything that is not one.
fn discard_state(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir)?.next().is_none();
    if !empty && !dir.join("CURRENT").exists() {
        bail!(
            "--fresh: {} is not a twinstream state directory (no RocksDB CURRENT file); not deleting it",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// `replay`'s optional flags.
struct ReplayFlags {
    fresh: bool,
    rate: Option<f64>,
    source: Option<String>,
    http: Option<std::net::SocketAddr>,
    stop_timeout: Duration,
    history_out: Option<PathBuf>,
    compact: bool,
}

fn replay(
    topo: &Topology,
    file: &Path,
    report_path: &Path,
    state_dir: PathBuf,
    flags: &ReplayFlags,
) -> Result<ExitCode> {
    let ReplayFlags {
        fresh,
        rate,
        ref source,
        http,
        stop_timeout,
        ref history_out,
        compact,
    } = *flags;
    let source = pick_source(topo, source.as_deref())?;
    if rate.is_some_and(|r| r <= 0.0 || !r.is_finite()) {
        bail!("--rate must be a positive number of records per second");
    }
    if fresh {
        discard_state(&state_dir)?;
    }
    let len = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let (server, api) = serve(topo, http)?;
    let stop = Arc::new(AtomicBool::new(false));
    on_signals(stop.clone(), stop_timeout)?;
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let (p, d, b) = (progress.clone(), done.clone(), bar.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                b.set_position(p.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        bar
    });
    let opts = Options {
        mode: Mode::Replay {
            file: file.to_path_buf(),
            source,
            rate,
        },
        state_dir: state_dir.clone(),
        api,
    };
    let summary = engine::run(topo, &opts, stop, progress);
    if let Some(s) = server {
        s.stop();
    }
    done.store(true, Ordering::Relaxed);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let summary = summary?;
    let store = twinstream::store::Store::open(&state_dir, 1)?;
    let name = &topo.sources[source].name;
    if compact {
        store.compact_history(0);
    }
    let mut report = twinstream::report::build(&store, 0, name)?;
    report.run_events = summary.events;
    report.run_seconds = summary.elapsed.as_secs_f64();
    report.events_per_second = if report.run_seconds > 0.0 {
        (summary.events as f64 / report.run_seconds).round()
    } else {
        0.0
    };
    report.resumed_from_line = summary.started_at.first().map_or(0, |(_, p)| p.line);
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(report_path, json + "\n").with_context(|| format!("writing {}", report_path.display()))?;
    if let Some(path) = history_out {
        let mut rows = Vec::new();
        twinstream::report::history(&store, 0, Some(&mut rows))?;
        rows.sort();
        let mut csv = String::new();
        for r in rows {
            use std::fmt::Write;
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11
            );
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    if !summary.finished {
        say!(
            std::io::stderr(),
            "replay interrupted at line {}; run the same command to resume (partial report in {})\n",
            summary.positions.first().map_or(0, |(_, p)| p.line),
            report_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        std::io::stderr(),
        "replayed {} events ({} this run, {:.0} events/s){}: {} windows, {} alerts, {} late, {} dead letters -> {}\n",
        report.events,
        report.run_events,
        report.events_per_second,
        if report.resumed_from_line > 0 {
            format!(", resumed from line {}", report.resumed_from_line)
        } else {
            String::new()
        },
        report.windows,
        report.alerts,
        report.late,
        report.dead_letters,
        report_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
