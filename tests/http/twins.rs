//! Twins (filters, pagination) and alerts, their acknowledgement durable
//! across a restart, the error shape and the OpenAPI document.

use super::*;

#[test]
fn twins_and_alerts_are_served_filtered_paged_and_acknowledged_durably() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    readings(dir.path());
    let topo = topology(dir.path(), "{ write_token_env: TEST_WRITE_TOKEN }");
    let env = [("TEST_WRITE_TOKEN", "w-0123456789")];
    let (run, base) = start(&state, &topo, &env);

    assert_eq!(get(&base, "/healthz").body["status"], "ok");
    let pump2 = wait_get(&base, "/twins/pump-2", "pump-2 never reached version 3", |r| {
        r.status == 200 && r.body["version"] == 3
    });
    let t = &pump2.body;
    assert_eq!(t["type"], "pump");
    assert_eq!(t["health"], "red", "a critical alert is active: {t}");
    assert_eq!(t["sensors"]["temperature"]["value"], 95.0);
    assert_eq!(t["sensors"]["temperature"]["ts"], 2_000);
    assert_eq!(t["sensors"]["temperature"]["source"], "plc");
    assert_eq!(t["sensors"]["temperature"]["quality"], "good");
    assert_eq!(t["sensors"]["current"]["value"], 11.0);
    assert_eq!(
        t["relations"],
        serde_json::json!([{ "relation": "feeds", "asset": "tank-1" }])
    );
    assert_eq!(t["alerts"][0]["id"], "pump-2/hot/1");
    assert_eq!(t["alerts"][0]["state"], "raised");
    assert_eq!(t["alerts"][0]["severity"], "critical");
    assert_eq!(t["stats"]["events"], 3);

    // Read from the last durable checkpoint once one holds the twin (the
    // twin itself answers before), from the twin with `fresh=true`; the
    // same here, as nothing arrives any more.
    let stored = wait_get(&base, "/twins/pump-2", "no checkpoint holds pump-2", |r| {
        r.read.as_deref() == Some("checkpoint")
    });
    let fresh = get(&base, "/twins/pump-2?fresh=true");
    assert_eq!(fresh.read.as_deref(), Some("twin"), "{fresh:?}");
    assert_eq!(fresh.body["sensors"], stored.body["sensors"]);
    assert_eq!(fresh.body["alerts"], stored.body["alerts"]);
    assert_error(&get(&base, "/twins/pump-2?fresh=maybe"), 400, "bad_request");

    // tank-2 is declared and never reported (no checkpoint has it: the twin
    // answers); pump-9 matches a pattern and has no state; nothing matches
    // `valve-1`.
    let tank2 = get(&base, "/twins/tank-2");
    assert_eq!(
        (tank2.status, tank2.body["version"].clone()),
        (200, 0.into()),
        "{tank2:?}"
    );
    assert_eq!(tank2.read.as_deref(), Some("twin"));
    assert_error(&get(&base, "/twins/pump-9"), 404, "not_found");
    assert_error(&get(&base, "/twins/valve-1"), 404, "not_found");

    // tank-1 reported once and goes stale (processing time) 400 ms later:
    // `stale:level` and, with no sensor fresh, `offline` (critical: red).
    let stale = wait_get(&base, "/twins?quality=stale", "tank-1 never went stale", |r| {
        r.body["total"] == 1
    });
    assert_eq!(items(&stale, "asset"), ["tank-1"]);

    // Lists: every twin once, in asset order, paged by `next`.
    let all = get(&base, "/twins");
    assert_eq!(all.body["total"], 5, "{all:?}");
    assert_eq!(items(&all, "asset"), ["pump-1", "pump-2", "pump-3", "tank-1", "tank-2"]);
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page = get(&base, &format!("/twins?limit=2&after={after}"));
        assert_eq!(page.status, 200, "{page:?}");
        paged.extend(items(&page, "asset"));
        match page.body["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(paged, items(&all, "asset"));
    assert_eq!(items(&get(&base, "/twins?type=tank"), "asset"), ["tank-1", "tank-2"]);
    assert_eq!(items(&get(&base, "/twins?health=red"), "asset"), ["pump-2", "tank-1"]);
    assert_eq!(items(&get(&base, "/twins?health=green&type=tank"), "asset"), ["tank-2"]);
    assert_eq!(items(&get(&base, "/twins?alert=active"), "asset"), ["pump-2", "tank-1"]);
    assert_eq!(
        items(&get(&base, "/twins?alert=none&type=pump"), "asset"),
        ["pump-1", "pump-3"]
    );
    assert_eq!(
        items(&get(&base, "/twins?relation=feeds:tank-1"), "asset"),
        ["pump-1", "pump-2", "pump-3"]
    );
    assert!(items(&get(&base, "/twins?relation=feeds:tank-2"), "asset").is_empty());
    for bad in [
        "/twins?health=purple",
        "/twins?limit=0",
        "/twins?limit=5000",
        "/twins?colour=red",
        "/twins?type=valve",
        "/alerts?state=open",
        "/alerts?severity=fatal",
    ] {
        assert_error(&get(&base, bad), 400, "bad_request");
    }

    // Alerts, and acknowledging one.
    let alerts = get(&base, "/alerts");
    assert_eq!(
        items(&alerts, "id"),
        ["pump-2/hot/1", "tank-1/offline/1", "tank-1/stale:level/1"],
        "{alerts:?}"
    );
    assert_eq!(
        items(&get(&base, "/alerts?severity=warning"), "id"),
        ["tank-1/stale:level/1"]
    );
    assert_eq!(
        items(&get(&base, "/alerts?asset=pump-2&limit=1"), "id"),
        ["pump-2/hot/1"]
    );
    let ack = format!("{base}/alerts/pump-2/hot/1/ack");
    assert_error(&request("POST", &ack, None, None), 401, "unauthorized");
    assert_error(&request("POST", &ack, Some("w-wrong"), None), 401, "unauthorized");
    let acked = request("POST", &ack, Some("w-0123456789"), None);
    assert_eq!(acked.status, 200, "{acked:?}");
    assert_eq!(acked.body["state"], "acknowledged");
    let again = request("POST", &ack, Some("w-0123456789"), None);
    assert_eq!(
        (again.status, &again.body),
        (200, &acked.body),
        "acknowledging twice answers the same"
    );
    assert_eq!(
        items(&get(&base, "/alerts?state=raised"), "id"),
        ["tank-1/offline/1", "tank-1/stale:level/1"]
    );
    assert_eq!(
        items(
            &get(&base, "/alerts?state=acknowledged&severity=critical&asset=pump-2"),
            "id"
        ),
        ["pump-2/hot/1"]
    );
    let token = Some("w-0123456789");
    assert_error(
        &request("POST", &format!("{base}/alerts/pump-2/hot/7/ack"), token, None),
        409,
        "conflict",
    );
    assert_error(
        &request("POST", &format!("{base}/alerts/pump-2/cold/1/ack"), token, None),
        404,
        "not_found",
    );
    assert_error(
        &request("POST", &format!("{base}/alerts/pump-1/hot/1/ack"), token, None),
        404,
        "not_found",
    );
    assert_error(
        &request("POST", &format!("{base}/alerts/pump-2/hot/x/ack"), token, None),
        400,
        "bad_request",
    );
    assert_error(&request("GET", &ack, token, None), 405, "method_not_allowed");
    assert_error(
        &request("DELETE", &format!("{base}/twins"), token, None),
        405,
        "method_not_allowed",
    );
    assert_error(&get(&base, "/nowhere"), 404, "not_found");
    // The longest request target the HTTP layer parses (`http::Uri`'s
    // limit; the fuzz target's MAX_REQUEST_TARGET) is still answered in the
    // error shape; one byte more is refused by actix-http's parser with a
    // bare 400, before any route.
    let longest = format!("/nowhere/{}", "x".repeat(65_534 - "/nowhere/".len()));
    assert_error(&get(&base, &longest), 404, "not_found");
    let over = get(&base, &format!("{longest}x"));
    assert_eq!(over.status, 400, "{over:?}");

    // The acknowledgement went to the alert sink as a transition.
    let transitions: Vec<String> = jsonl(&dir.path().join("alerts.jsonl"))
        .iter()
        .filter(|l| l["asset"] == "pump-2")
        .map(|l| format!("{}:{}", l["id"].as_str().unwrap(), l["transition"].as_str().unwrap()))
        .collect();
    assert_eq!(transitions, ["pump-2/hot/1:raised", "pump-2/hot/1:acknowledged"]);

    let metrics = get(&base, "/metrics").body;
    let metrics = metrics.as_str().unwrap();
    for series in [
        "twinstream_http_auth_failures_total{route=\"/alerts/{id}/ack\"} 2",
        "twinstream_alerts_active{severity=\"critical\"} 2",
        "twinstream_alert_transitions_total{severity=\"critical\",transition=\"acknowledged\"} 1",
        "twinstream_sensors_stale 1",
        "twinstream_ready 1",
    ] {
        assert!(metrics.contains(series), "no `{series}` in:\n{metrics}");
    }
    let doc = get(&base, "/openapi.json").body;
    assert!(doc["paths"]["/twins/{id}"]["get"].is_object(), "{doc}");
    stop_cleanly(run);

    // After a restart the acknowledgement is still there, read from the
    // store for the list and from the woken twin for the detail.
    let (run, base) = start(&state, &topo, &env);
    let acked = get(&base, "/alerts?state=acknowledged");
    assert_eq!(items(&acked, "id"), ["pump-2/hot/1"], "{acked:?}");
    let pump2 = get(&base, "/twins/pump-2");
    assert_eq!(pump2.body["alerts"][0]["state"], "acknowledged", "{pump2:?}");
    assert_eq!(pump2.body["version"], 3);
    stop_cleanly(run);
}
