//! A cluster's HTTP API answers for every asset on every node: a request
//! about an asset of a shard another node owns is forwarded to that node
//! (the shard owners' directory, [`crate::cluster::directory`], says where
//! its API is), and lists gather the pages of every owner.
//!
//! * A forwarded request carries [`FORWARDED_BY`] and is never forwarded
//!   again: a node that does not own the shard (it moved meanwhile) answers
//!   421 and the client retries. No loops, at most one extra hop.
//! * The answer comes back as the owner gave it (status, body, the
//!   `X-Twinstream-Read` header), plus [`OWNER`] naming the node.
//! * A list asks every other owner for the same page (keyset paging by id
//!   merges exactly: each node returns its first `limit` after the cursor);
//!   shards whose owner is unknown or does not answer are named in
//!   `missing_shards` instead of silently left out.
//!
//! Forwarding, not a replica: the owner answers from its last durable
//! checkpoint as it does for its own requests (ARCHITECTURE "Decisions").

use std::io::Read as _;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::handlers::READ_HEADER;
use super::ApiError;
use crate::cluster::directory::Owner;
use crate::engine::query::Catalog;

/// Set on a request one node forwards to another (its value: the sender).
pub const FORWARDED_BY: &str = "X-Twinstream-Forwarded-By";
/// Set on an answer another node gave: its `node.name`.
pub const OWNER: &str = "X-Twinstream-Owner";
/// The request headers a forwarded request keeps.
const KEPT: [&str; 3] = ["authorization", "content-type", "idempotency-key"];
/// Answers larger than this are refused (a page of 1,000 twins is ~1 MB).
const MAX_ANSWER: u64 = 64 << 20;

/// The client nodes forward with: keep-alive connections to the peers; a
/// write waits for the owner's durable checkpoint (up to a minute).
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(75))
        .build()
}

/// Where a request about an asset is answered.
enum Place {
    /// This node owns its shard.
    Here,
    /// Another node does.
    Owner { shard: u32, owner: Owner, http: String },
}

/// The owner's answer to `req` (forwarded there with `body`) when another
/// node owns `asset`'s shard; `None` when this node answers it: its own
/// shard, or an asset no entry matches (the 404 is this node's to give).
pub async fn to_owner(
    agent: &ureq::Agent,
    c: &Catalog,
    req: &HttpRequest,
    asset: &str,
    body: Option<web::Bytes>,
) -> Result<Option<HttpResponse>, ApiError> {
    if c.index.resolve(asset).is_none() {
        return Ok(None);
    }
    match place(c, req, asset)? {
        Place::Here => Ok(None),
        Place::Owner { shard, owner, http } => forward(agent, c, req, body, shard, owner, http).await.map(Some),
    }
}

/// Where the request `req` about `asset` is answered: here, at the owner of
/// its shard, or nowhere just now (a rebalance: 503, retry).
fn place(c: &Catalog, req: &HttpRequest, asset: &str) -> Result<Place, ApiError> {
    let shard = c.sharding.shard_of(asset);
    if c.sharding.owns(shard) {
        return Ok(Place::Here);
    }
    if let Some(by) = req.headers().get(FORWARDED_BY) {
        return Err(ApiError::Misdirected(format!(
            "twin `{asset}` belongs to shard {shard}, which {} forwarded here, but this node does not own it (it is moving): retry",
            by.to_str().unwrap_or("another node")
        )));
    }
    let d = &c.sharding.directory;
    match d.owner(shard) {
        Some(owner) => match owner.http.clone() {
            Some(http) if Some(&http) != d.me().as_ref() => Ok(Place::Owner { shard, owner, http }),
            Some(_) => Err(ApiError::Unavailable(format!(
                "shard {shard} (twin `{asset}`) is moving to another node; retry shortly"
            ))),
            None => Err(ApiError::Misdirected(format!(
                "twin `{asset}` belongs to shard {shard}, owned by node `{}`, which serves no HTTP API",
                owner.node
            ))),
        },
        None => Err(ApiError::Unavailable(format!(
            "shard {shard} (twin `{asset}`) has no owner at the moment (the cluster is rebalancing); retry shortly"
        ))),
    }
}

/// An answer of another node.
struct Answer {
    status: u16,
    content_type: Option<String>,
    read: Option<String>,
    body: Vec<u8>,
}

/// Sends `req` (with `body`) to the node at `http`, on a blocking thread.
fn call(
    agent: &ureq::Agent,
    http: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    by: &str,
) -> Result<Answer, String> {
    let mut r = agent.request(method, &format!("{http}{path}")).set(FORWARDED_BY, by);
    for (k, v) in headers {
        r = r.set(k, v);
    }
    let res = match body {
        Some(b) => r.send_bytes(b),
        None => r.call(),
    };
    let res = match res {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(t.to_string()),
    };
    let answer = Answer {
        status: res.status(),
        content_type: res.header("content-type").map(str::to_string),
        read: res.header(READ_HEADER).map(str::to_string),
        body: Vec::new(),
    };
    let mut body = Vec::new();
    res.into_reader()
        .take(MAX_ANSWER)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    Ok(Answer { body, ..answer })
}

/// The headers of `req` a forwarded request keeps.
pub(super) fn kept(req: &HttpRequest) -> Vec<(String, String)> {
    KEPT.iter()
        .filter_map(|k| {
            let v = req.headers().get(*k)?.to_str().ok()?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

fn path_of(req: &HttpRequest) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| req.path().to_string(), |p| p.to_string())
}

/// This node as the sender of a forwarded request.
pub(super) fn sender(c: &Catalog) -> String {
    c.sharding.directory.me().unwrap_or_else(|| "a twinstream node".into())
}

/// Forwards `req` to the owner of its asset's shard and relays the answer.
async fn forward(
    agent: &ureq::Agent,
    c: &Catalog,
    req: &HttpRequest,
    body: Option<web::Bytes>,
    shard: u32,
    owner: Owner,
    http: String,
) -> Result<HttpResponse, ApiError> {
    let (method, path, headers, by) = (req.method().to_string(), path_of(req), kept(req), sender(c));
    let agent = agent.clone();
    let to = http.clone();
    let answer = super::server::blocking(move || call(&agent, &to, &method, &path, &headers, body.as_deref(), &by))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "node `{}` ({http}), the owner of shard {shard}, did not answer: {e}; retry",
                owner.node
            ))
        })?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut res = HttpResponse::build(status);
    res.insert_header((OWNER, owner.node.as_str()));
    if let Some(t) = answer.content_type {
        res.content_type(t);
    }
    if let Some(r) = answer.read {
        res.insert_header((READ_HEADER, r));
    }
    Ok(res.body(answer.body))
}

/// A list page: this node's `local` page (`{items, total, next}` sorted by
/// `key`) merged with the same page of every other owner of shards.
pub async fn gather(
    agent: &ureq::Agent,
    c: &Catalog,
    req: &HttpRequest,
    local: serde_json::Value,
    limit: usize,
    key: &'static str,
) -> Result<serde_json::Value, ApiError> {
    if !c.sharding.clustered() || req.headers().contains_key(FORWARDED_BY) {
        return Ok(local);
    }
    let peers = c.sharding.directory.peers();
    let (path, headers, by) = (path_of(req), kept(req), sender(c));
    let agent = agent.clone();
    let answers = super::server::blocking(move || {
        std::thread::scope(|s| {
            let calls: Vec<_> = peers
                .iter()
                .map(|(http, shards)| {
                    let (agent, path, headers, by) = (&agent, &path, &headers, &by);
                    (
                        shards.clone(),
                        s.spawn(move || call(agent, http, "GET", path, headers, None, by)),
                    )
                })
                .collect();
            calls
                .into_iter()
                .map(|(shards, h)| (shards, h.join().unwrap_or_else(|_| Err("the request panicked".into()))))
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut pages = vec![local];
    let mut answered: Vec<u32> = c.sharding.owned();
    for (shards, answer) in answers {
        match answer {
            Ok(a) if a.status == 200 => match serde_json::from_slice::<serde_json::Value>(&a.body) {
                Ok(page) => {
                    pages.push(page);
                    answered.extend(shards);
                }
                Err(e) => tracing::warn!(error = %e, "a node's list page is not JSON"),
            },
            // A peer's refusal of the request itself (a bad filter, a
            // token) is this request's answer too.
            Ok(a) if matches!(a.status, 400 | 401 | 403) => return Err(refusal(a.status, &a.body)),
            Ok(a) => tracing::warn!(status = a.status, ?shards, "a node did not list its shards"),
            Err(e) => tracing::warn!(error = %e, ?shards, "a node did not answer for its shards"),
        }
    }
    let missing: Vec<u32> = (0..c.sharding.partitions()).filter(|s| !answered.contains(s)).collect();
    Ok(merge(pages, limit, key, missing))
}

/// A peer's refusal of a request (a filter it rejects, a token it does not
/// take) as this node's: the same status and message.
fn refusal(status: u16, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    match status {
        401 => ApiError::Unauthorized(message),
        403 => ApiError::Forbidden(message),
        _ => ApiError::BadRequest(message),
    }
}

/// Merges keyset pages sorted by `key`: the first `limit` items of all of
/// them, the total of the totals, a `next` when any page had more.
fn merge(pages: Vec<serde_json::Value>, limit: usize, key: &str, missing: Vec<u32>) -> serde_json::Value {
    let mut items = Vec::new();
    let mut total = 0;
    let mut more = false;
    for mut p in pages {
        total += p["total"].as_u64().unwrap_or(0);
        more |= !p["next"].is_null();
        if let serde_json::Value::Array(a) = p["items"].take() {
            items.extend(a);
        }
    }
    items.sort_by(|a, b| a[key].as_str().cmp(&b[key].as_str()));
    let next = if items.len() > limit || (more && items.len() == limit) {
        items.truncate(limit);
        items.last().map(|i| i[key].clone())
    } else {
        more.then(|| items.last().map(|i| i[key].clone())).flatten()
    };
    let mut page = serde_json::json!({ "items": items, "total": total, "next": next });
    if !missing.is_empty() {
        page["missing_shards"] = missing.into();
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(ids: &[&str], total: u64, next: Option<&str>) -> serde_json::Value {
        json!({ "items": ids.iter().map(|i| json!({ "id": i })).collect::<Vec<_>>(), "total": total, "next": next })
    }

    #[test]
    fn pages_of_several_nodes_merge_into_one_keyset_page() {
        let ids = |p: &serde_json::Value| -> Vec<String> {
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        };
        // Two nodes, limit 3: a, c, e, g on one; b, d on the other.
        let p = merge(
            vec![page(&["a", "c", "e"], 4, Some("e")), page(&["b", "d"], 2, None)],
            3,
            "id",
            vec![],
        );
        assert_eq!(ids(&p), ["a", "b", "c"]);
        assert_eq!((p["total"].clone(), p["next"].clone()), (json!(6), json!("c")));
        assert!(p.get("missing_shards").is_none());
        // The next page asks each node after `c`.
        let p = merge(vec![page(&["e", "g"], 4, None), page(&["d"], 2, None)], 3, "id", vec![]);
        assert_eq!(ids(&p), ["d", "e", "g"]);
        assert_eq!(p["next"], json!(null));
        // Exactly `limit` items, one node with more: there is a next page.
        let p = merge(
            vec![page(&["a", "b"], 3, Some("b")), page(&["c"], 1, None)],
            3,
            "id",
            vec![7],
        );
        assert_eq!(
            (ids(&p), p["next"].clone()),
            (vec!["a".to_string(), "b".into(), "c".into()], json!("c"))
        );
        assert_eq!(p["missing_shards"], json!([7]));
    }
}
