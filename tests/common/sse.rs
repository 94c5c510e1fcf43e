//! A `GET /events` stream read over plain HTTP, event by event.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

/// The event stream over plain HTTP: `(id, event, data)` of each event.
pub struct Events {
    reader: BufReader<TcpStream>,
    /// `next` gives up after this (keepalives keep a read from timing out).
    deadline: std::time::Instant,
}

impl Events {
    pub fn open(base: &str, last_id: Option<&str>) -> Events {
        let addr = base.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let resume = last_id.map_or_else(String::new, |i| format!("Last-Event-ID: {i}\r\n"));
        write!(
            s,
            "GET /events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        Events {
            reader,
            deadline: std::time::Instant::now() + Duration::from_secs(120),
        }
    }

    /// The next event (chunked transfer framing skipped).
    pub fn next(&mut self) -> (Option<String>, String, Value) {
        let (mut id, mut event, mut data) = (None, String::new(), Value::Null);
        loop {
            let mut line = String::new();
            assert!(self.reader.read_line(&mut line).unwrap() > 0, "the stream ended");
            assert!(std::time::Instant::now() < self.deadline, "no event within 2 minutes");
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = serde_json::from_str(v).unwrap();
            } else if line.is_empty() && !event.is_empty() {
                return (id, event, data);
            }
        }
    }

    /// Events until `n` of kind `kind` were seen (within two minutes);
    /// returns those.
    pub fn until(&mut self, kind: &str, n: usize) -> Vec<(Option<String>, String, Value)> {
        self.deadline = std::time::Instant::now() + Duration::from_secs(120);
        let mut got: Vec<(Option<String>, String, Value)> = Vec::new();
        while got.iter().filter(|(_, e, _)| e == kind).count() < n {
            let got_so_far = format!("{got:?}");
            let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.next()))
                .unwrap_or_else(|_| panic!("{n} `{kind}` events not seen; got {got_so_far}"));
            got.push(next);
        }
        got
    }
}

/// `(incarnation, next)` of a single node's event id.
pub fn entry(id: &str) -> (String, u64) {
    let (inc, next) = id.split_once('.').unwrap_or_else(|| panic!("event id {id}"));
    (inc.to_string(), next.parse().unwrap())
}
