//! The fault proxy the chaos soak puts between processes
//! (`tests/common/proxy.rs`), against an echo server on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::proxy::{Fault, Proxy};

/// An echo server on loopback: every byte comes back.
fn echo() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn round_trip(c: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    c.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn the_proxy_forwards_delays_hangs_and_partitions_on_command() {
    let proxy = Proxy::start(echo());
    let mut c = TcpStream::connect(proxy.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(round_trip(&mut c, b"hello").unwrap(), b"hello");

    proxy.set(Fault::Latency(Duration::from_millis(200)));
    let t = Instant::now();
    assert_eq!(round_trip(&mut c, b"slow").unwrap(), b"slow");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "both ways delayed: {:?}",
        t.elapsed()
    );

    proxy.set(Fault::Hang);
    c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let err = round_trip(&mut c, b"held").unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    // Released, the held bytes arrive: the connection never closed.
    proxy.set(Fault::Pass);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 4];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"held");

    proxy.set(Fault::Partition);
    let mut buf = [0u8; 1];
    assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)), "the open connection is cut");
    let mut again = TcpStream::connect(proxy.addr).unwrap();
    again.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        round_trip(&mut again, b"x").is_err(),
        "a new connection is closed at once"
    );

    proxy.set(Fault::Pass);
    let mut healed = TcpStream::connect(proxy.addr).unwrap();
    healed.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(round_trip(&mut healed, b"back").unwrap(), b"back");
}
