//! A TCP proxy on 127.0.0.1 that a test controls: it forwards between its
//! clients (a node) and an upstream (a broker, another node's API) and
//! injects network faults on command - a partition, added latency, or a
//! connection that hangs without closing - so a test can put them between
//! real processes without touching the host's network.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards everything.
    Pass,
    /// Cuts every connection and closes new ones at once.
    Partition,
    /// Holds each chunk this long before forwarding it.
    Latency(Duration),
    /// Keeps connections open and forwards nothing (a peer that stopped
    /// answering without closing), until the fault changes.
    Hang,
}

struct Shared {
    /// Where connections go; `None` until [`Proxy::retarget`] (new
    /// connections are closed at once meanwhile).
    upstream: Mutex<Option<SocketAddr>>,
    fault: Mutex<Fault>,
    changed: Condvar,
    /// Both ends of every open connection, by connection, to cut them, and
    /// how many of its two directions ended.
    conns: Mutex<HashMap<u64, ([TcpStream; 2], u8)>>,
    next_conn: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    fn cut_all(&self) {
        for (_, (ends, _)) in self.conns.lock().unwrap().drain() {
            for end in ends {
                let _ = end.shutdown(Shutdown::Both);
            }
        }
    }

    /// One direction of connection `id` ended; both did: it is forgotten (a
    /// long soak opens thousands).
    fn ended(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap();
        if let Some((_, done)) = conns.get_mut(&id) {
            *done += 1;
            if *done == 2 {
                conns.remove(&id);
            }
        }
    }
}

pub struct Proxy {
    /// Where clients connect instead of the upstream.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to `upstream`, forwarding.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let proxy = Proxy::listen();
        proxy.retarget(upstream);
        proxy
    }

    /// A proxy listening, with its upstream to come ([`Proxy::retarget`]):
    /// for a server that must be told the proxy's address when it starts
    /// (a Kafka broker advertises where clients reach it).
    pub fn listen() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(None),
            fault: Mutex::new(Fault::Pass),
            changed: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                if *s.fault.lock().unwrap() == Fault::Partition {
                    continue; // dropped: closed at once
                }
                let Some(upstream) = *s.upstream.lock().unwrap() else {
                    continue;
                };
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let id = s.next_conn.fetch_add(1, Ordering::Relaxed);
                if let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) {
                    s.conns.lock().unwrap().insert(id, ([c3, s3], 0));
                }
                let (a, b) = (s.clone(), s.clone());
                std::thread::spawn(move || {
                    pump(client, s2, &a);
                    a.ended(id);
                });
                std::thread::spawn(move || {
                    pump(server, c2, &b);
                    b.ended(id);
                });
            }
        });
        Proxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// Sets the fault (a partition cuts the open connections at once).
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
        if fault == Fault::Partition {
            self.shared.cut_all();
        }
        self.shared.changed.notify_all();
    }

    /// Sends new connections to `upstream` (open ones stay where they are).
    pub fn retarget(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = Some(upstream);
    }

    pub fn fault(&self) -> Fault {
        *self.shared.fault.lock().unwrap()
    }

    /// `host:port` of the proxy, for a topology.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.set(Fault::Partition);
        // Wakes the accept loop, which sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Copies `from` to `to` chunk by chunk, applying the fault in force.
fn pump(mut from: TcpStream, mut to: TcpStream, s: &Shared) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let fault = {
            let mut f = s.fault.lock().unwrap();
            while *f == Fault::Hang && !s.stop.load(Ordering::Relaxed) {
                f = s.changed.wait(f).unwrap();
            }
            *f
        };
        match fault {
            Fault::Partition => break,
            // The fault itself, not synchronisation: the chunk is late.
            Fault::Latency(d) => std::thread::sleep(d),
            Fault::Pass | Fault::Hang => {}
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
