//! AFL++ target `http`: one request per input to the HTTP API of a node
//! running in this process (the demo topology: simulated pumps and tanks,
//! their model, windows, rules, commands and history), over loopback. See
//! `twinstream::fuzzing::http` for the input format and what must hold.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use twinstream::api::auth::Tokens;
use twinstream::api::server::ApiConfig;
use twinstream::engine::query;
use twinstream::engine::{Mode, Options};

const TOKEN: &str = "fuzz-token";

/// Starts the node once per process and returns its API's base URL.
fn node() -> &'static str {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let topo = twinstream::topology::load(&repo.join("topologies/demo.yaml")).expect("the demo topology");
        let state = std::env::temp_dir().join(format!("twinstream-fuzz-http-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let (engine_end, api_end) = query::link();
        let config = ApiConfig {
            listen: "127.0.0.1:0".parse().expect("an address"),
            tokens: Tokens {
                write: Some(TOKEN.into()),
                read: None,
            },
            metrics: None,
        };
        let server = twinstream::api::start(config, engine_end).expect("the API listens");
        let base = format!("http://{}", server.addr);
        std::mem::forget(server);
        let opts = Options {
            mode: Mode::Run,
            state_dir: state,
            api: Some(query::ApiLink { addr: None, ..api_end }),
        };
        std::thread::spawn(move || {
            let stop = Arc::new(AtomicBool::new(false));
            if let Err(e) = twinstream::engine::run(&topo, &opts, stop, Arc::new(AtomicU64::new(0))) {
                eprintln!("the node stopped: {e}");
                std::process::abort();
            }
        });
        // Ready once the twins answer (a harness, not a test: polling is fine).
        let started = Instant::now();
        while ureq::get(&format!("{base}/readyz")).call().is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "the node never got ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        base
    })
}

fn main() {
    afl::fuzz!(|data: &[u8]| {
        twinstream::fuzzing::http(node(), TOKEN, data);
    });
}
