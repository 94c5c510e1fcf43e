//! `GET /events`: the twins' changes as Server-Sent Events.
//!
//! An event id is a cursor: `<incarnation>.<next>` per node the stream
//! reads (hex incarnation of the node's feed, the sequence number of the
//! next item it would send), comma-separated. A browser sends the last one
//! back as `Last-Event-ID` when it reconnects; each node resumes from its
//! own entry, and says `reset` when it cannot (no entry of its incarnation:
//! it restarted, or never streamed to this client; or it no longer holds
//! everything since).
//!
//! In a cluster, the node the page talks to reads its own feed and follows
//! every other owner's stream (requested with the forwarding header, so
//! those answer for themselves only) on a thread per peer, and sends one
//! merged stream. When the set of owners changes (a node joined or was
//! lost, shards moved) the stream says `reset`: the page reloads, and what
//! moved is read from its new owner.

use std::io::BufRead as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use tokio::sync::mpsc;

use crate::api::auth::Access;
use crate::api::handlers::AppState;
use crate::api::peers::{self, FORWARDED_BY};
use crate::api::ApiError;
use crate::pipeline::watch::{Feed, Item, Since, Subscription};

/// An idle stream sends a comment this often (proxies close silent ones).
const KEEPALIVE: Duration = Duration::from_secs(15);

/// How long a browser waits before it reconnects a dropped stream; also
/// how long a follower waits before it reconnects to a peer.
const RETRY: Duration = Duration::from_secs(1);

/// Where a stream starts: after the cursor the browser last saw
/// (`Last-Event-ID`, sent on a reconnect) or `after`, else from now.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event id (a `Last-Event-ID` header wins).
    pub after: Option<String>,
}

/// One node's place in a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    incarnation: u64,
    next: u64,
}

/// Parses a cursor: `<hex>.<next>` entries, comma-separated.
fn parse_cursor(text: &str) -> Result<Vec<Entry>, ApiError> {
    let bad = || ApiError::BadRequest(format!("Last-Event-ID: `{text}` is not an event id of this cluster"));
    text.split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let (inc, next) = e.trim().split_once('.').ok_or_else(bad)?;
            Ok(Entry {
                incarnation: u64::from_str_radix(inc, 16).map_err(|_| bad())?,
                next: next.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

fn render_cursor(entries: impl IntoIterator<Item = Entry>) -> String {
    entries
        .into_iter()
        .map(|e| format!("{:x}.{}", e.incarnation, e.next))
        .collect::<Vec<_>>()
        .join(",")
}

/// `GET /events`: this node's twins' changes - in a cluster, every
/// owner's - as Server-Sent Events. Event names: `hello` (first, with the
/// cursor the stream starts at), `twin` (a summary whose health, offline
/// flag or counts changed, or a new twin), `alert` (every transition:
/// raised, acknowledged, cleared, with the alert as it stands after it),
/// `command` (issued, or left `pending`), and `reset` when the stream
/// cannot resume where asked: reload, then go on.
#[utoipa::path(get, path = "/events", tag = "view", params(EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "the last event id seen; resumes after it")),
    responses((status = 200, content_type = "text/event-stream", body = String,
            description = "Server-Sent Events: `hello`, `twin` (a TwinSummary), `alert` (an AlertEvent), `command` (a CommandView), `reset`"),
        (status = 400, body = crate::api::error::ErrorBody), (status = 401, body = crate::api::error::ErrorBody)))]
pub async fn events(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Access::Read, "/events")?;
    let resume_text = match req.headers().get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID: not text".into()))?
                .to_string(),
        ),
        None => q.after.clone(),
    };
    let resume = resume_text.as_deref().map(parse_cursor).transpose()?;
    let feed = state.engine.feed.clone();
    let (subscription, now) = feed.subscribe();
    let mine = feed.incarnation();
    // Where this node resumes; a cursor without its entry is another
    // incarnation's: start over.
    let (next, reset) = match &resume {
        None => (now, false),
        Some(entries) => match entries.iter().find(|e| e.incarnation == mine) {
            Some(e) => (e.next, false),
            None => (now, true),
        },
    };
    // A node still starting has no catalog yet: it is followed as if
    // clustered, and finds its peers (if any) once the directory names
    // them (`owners_changed`).
    let catalog = state.engine.catalog.clone();
    let merged = catalog.get().is_none_or(|c| c.sharding.clustered()) && !req.headers().contains_key(FORWARDED_BY);
    let mut stream = Stream {
        feed,
        _subscription: subscription,
        next,
        reset,
        hello: true,
        peers: Vec::new(),
        owners: Vec::new(),
        rx: None,
        cluster: None,
    };
    if merged {
        stream.cluster = Some(Follow {
            catalog: catalog.clone(),
            // No overall timeout: a stream lasts; a silent peer is one that
            // missed two keepalives.
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(2))
                .timeout_read(KEEPALIVE * 2)
                .build(),
            headers: peers::kept(&req),
            resume: resume_text.unwrap_or_default(),
        });
        stream.follow();
    }
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // Tells nginx-style proxies not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::stream::unfold(stream, Stream::next)))
}

impl Follow {
    /// The other owners' API addresses (none before the engine started).
    fn owners(&self) -> Vec<String> {
        self.catalog
            .get()
            .map(|c| c.sharding.directory.peers().into_iter().map(|(http, _)| http).collect())
            .unwrap_or_default()
    }
}

/// What a follower of a peer hands the stream.
#[derive(Debug)]
struct PeerEvent {
    peer: usize,
    /// The peer's entry after this event.
    entry: Option<Entry>,
    kind: String,
    data: String,
}

/// How a merged stream follows the other owners.
struct Follow {
    catalog: Arc<std::sync::OnceLock<crate::engine::query::Catalog>>,
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
    /// The cursor the client resumed from: each peer picks its own entry.
    resume: String,
}

struct Peer {
    entry: Option<Entry>,
    stop: Arc<AtomicBool>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Stream {
    feed: Arc<Feed>,
    _subscription: Subscription,
    /// The next item of this node's feed to send.
    next: u64,
    /// A `reset` to send before anything else.
    reset: bool,
    /// The `hello` is not sent yet.
    hello: bool,
    peers: Vec<Peer>,
    /// The peers' addresses as last read from the directory.
    owners: Vec<String>,
    rx: Option<mpsc::UnboundedReceiver<PeerEvent>>,
    cluster: Option<Follow>,
}

impl Stream {
    /// The cursor after everything sent so far.
    fn cursor(&self) -> String {
        let mine = Entry {
            incarnation: self.feed.incarnation(),
            next: self.next,
        };
        render_cursor(std::iter::once(mine).chain(self.peers.iter().filter_map(|p| p.entry)))
    }

    /// (Re)starts a follower per peer the directory names.
    fn follow(&mut self) {
        let Some(f) = &self.cluster else { return };
        let owners = f.owners();
        self.rx = None;
        self.peers.clear();
        self.owners = owners.clone();
        if owners.is_empty() {
            return;
        }
        let by = f
            .catalog
            .get()
            .map_or_else(|| "a twinstream node".into(), peers::sender);
        let (tx, rx) = mpsc::unbounded_channel();
        self.peers = owners
            .iter()
            .enumerate()
            .map(|(i, http)| {
                let stop = Arc::new(AtomicBool::new(false));
                let follower = Follower {
                    peer: i,
                    // The directory's addresses are URLs (`http://host:port`).
                    url: format!("{http}/events"),
                    agent: f.agent.clone(),
                    headers: f.headers.clone(),
                    by: by.clone(),
                    resume: f.resume.clone(),
                    tx: tx.clone(),
                    stop: stop.clone(),
                };
                let _ = std::thread::Builder::new()
                    .name("events-follower".into())
                    .spawn(move || follower.run());
                Peer { entry: None, stop }
            })
            .collect();
        self.rx = Some(rx);
    }

    /// Whether the directory names other peers than the followed ones.
    fn owners_changed(&self) -> bool {
        self.cluster.as_ref().is_some_and(|f| f.owners() != self.owners)
    }

    async fn next(mut self) -> Option<(Result<Bytes, ApiError>, Stream)> {
        if self.hello {
            self.hello = false;
            let cursor = self.cursor();
            let mut text = format!("retry: {}\n", RETRY.as_millis());
            event(&mut text, &cursor, "hello", &format!("{{\"cursor\":\"{cursor}\"}}"));
            return Some((Ok(Bytes::from(text)), self));
        }
        loop {
            if self.feed.closed() {
                return None;
            }
            if std::mem::take(&mut self.reset) {
                return Some((Ok(self.reset_event()), self));
            }
            match self.feed.since(self.next) {
                Since::Gap => {
                    self.next = self.feed.next();
                    return Some((Ok(self.reset_event()), self));
                }
                Since::Items(items) if !items.is_empty() => {
                    let text = self.render(&items);
                    return Some((Ok(Bytes::from(text)), self));
                }
                Since::Items(_) => {}
            }
            let mut out = String::new();
            while let Some(ev) = self.rx.as_mut().and_then(|rx| rx.try_recv().ok()) {
                self.take(ev, &mut out);
            }
            if !out.is_empty() {
                return Some((Ok(Bytes::from(out)), self));
            }
            if self.owners_changed() {
                self.follow();
                return Some((Ok(self.reset_event()), self));
            }
            let from = self.next;
            use futures_util::future::Either;
            let woken = {
                let local = std::pin::pin!(self.feed.wait(from, KEEPALIVE));
                match self.rx.as_mut() {
                    Some(rx) => {
                        let remote = std::pin::pin!(actix_rt::time::timeout(KEEPALIVE, rx.recv()));
                        match futures_util::future::select(local, remote).await {
                            Either::Left(_) | Either::Right((Err(_), _)) => Woken::Quiet,
                            Either::Right((Ok(Some(ev)), _)) => Woken::Peer(ev),
                            Either::Right((Ok(None), _)) => Woken::FollowersGone,
                        }
                    }
                    None => {
                        local.await;
                        Woken::Quiet
                    }
                }
            };
            let ev = match woken {
                Woken::Peer(ev) => Some(ev),
                Woken::Quiet => None,
                // Every follower stopped: nothing more comes from them.
                Woken::FollowersGone => {
                    self.rx = None;
                    continue;
                }
            };
            if let Some(ev) = ev {
                let mut out = String::new();
                self.take(ev, &mut out);
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), self));
                }
                continue;
            }
            if self.feed.next() == from && !self.feed.closed() {
                return Some((Ok(Bytes::from_static(b": keepalive\n\n")), self));
            }
        }
    }

    fn reset_event(&self) -> Bytes {
        let mut text = String::new();
        event(&mut text, &self.cursor(), "reset", "{}");
        Bytes::from(text)
    }

    /// This node's items, each with the cursor after it.
    fn render(&mut self, items: &[Item]) -> String {
        let mut out = String::with_capacity(items.iter().map(|i| i.json.len() + 64).sum());
        for i in items {
            self.next = i.seq + 1;
            event(&mut out, &self.cursor(), i.kind, &i.json);
        }
        out
    }

    /// A peer's event: its entry moves on; `hello` only says where it is.
    fn take(&mut self, ev: PeerEvent, out: &mut String) {
        if let (Some(p), Some(e)) = (self.peers.get_mut(ev.peer), ev.entry) {
            p.entry = Some(e);
        }
        match ev.kind.as_str() {
            "hello" => {}
            // A peer's `reset` goes on as it came (data `{}`).
            kind => event(out, &self.cursor(), kind, &ev.data),
        }
    }
}

/// What ended a wait.
enum Woken {
    /// An item of this node, a timeout or the end: look again.
    Quiet,
    Peer(PeerEvent),
    FollowersGone,
}

/// One event (the JSON has no newline: one `data` line).
fn event(out: &mut String, id: &str, kind: &str, json: &str) {
    out.push_str("id: ");
    out.push_str(id);
    out.push_str("\nevent: ");
    out.push_str(kind);
    out.push_str("\ndata: ");
    out.push_str(json);
    out.push_str("\n\n");
}

/// Follows one peer's stream on a thread of its own, reconnecting from its
/// last entry until told to stop.
struct Follower {
    peer: usize,
    url: String,
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
    by: String,
    resume: String,
    tx: mpsc::UnboundedSender<PeerEvent>,
    stop: Arc<AtomicBool>,
}

impl Follower {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(e) = self.once() {
                tracing::debug!(url = %self.url, error = %e, "following a peer's events; reconnecting");
            }
            if self.tx.is_closed() {
                return;
            }
            std::thread::sleep(RETRY);
        }
    }

    /// One connection: reads events until it drops or the stream ends.
    fn once(&mut self) -> Result<(), String> {
        let mut req = self.agent.get(&self.url).set(FORWARDED_BY, &self.by);
        for (k, v) in &self.headers {
            req = req.set(k, v);
        }
        if !self.resume.is_empty() {
            req = req.set("Last-Event-ID", &self.resume);
        }
        let res = req.call().map_err(|e| e.to_string())?;
        let lines = std::io::BufReader::new(res.into_reader()).lines();
        let (mut id, mut kind, mut data) = (None, String::new(), String::new());
        for line in lines {
            if self.stop.load(Ordering::Relaxed) || self.tx.is_closed() {
                return Ok(());
            }
            let line = line.map_err(|e| e.to_string())?;
            if let Some(v) = line.strip_prefix("id: ") {
                id = parse_cursor(v).ok().and_then(|e| e.into_iter().next());
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = v.to_string();
            } else if line.is_empty() && !kind.is_empty() {
                if let Some(e) = id {
                    // Reconnect from here, whatever the client resumed from.
                    self.resume = render_cursor([e]);
                }
                let ev = PeerEvent {
                    peer: self.peer,
                    entry: id,
                    kind: std::mem::take(&mut kind),
                    data: std::mem::take(&mut data),
                };
                if self.tx.send(ev).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let text = "ff.3,1a2b.0";
        let entries = parse_cursor(text).unwrap();
        assert_eq!(
            entries,
            [
                Entry {
                    incarnation: 255,
                    next: 3
                },
                Entry {
                    incarnation: 0x1a2b,
                    next: 0
                }
            ]
        );
        assert_eq!(render_cursor(entries), text);
        for bad in ["3", "zz.1", "ff.x", "ff.1,2"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
