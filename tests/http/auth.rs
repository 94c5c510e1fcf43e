//! Bearer tokens: reads that need one, writes that need one configured,
//! tokens only from the environment or files.

use super::*;

#[test]
fn reads_can_need_a_token_and_writes_need_one_configured() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    readings(dir.path());
    std::fs::write(dir.path().join("read-token"), "r-secret\n").unwrap();
    let http = format!("{{ read_token_file: \"{}/read-token\" }}", dir.path().display());
    let topo = topology(dir.path(), &http);
    let (run, base) = start(&state, &topo, &[]);
    // Probes stay open.
    assert_eq!(get(&base, "/healthz").status, 200);
    assert_error(&get(&base, "/twins"), 401, "unauthorized");
    assert_error(&get(&base, "/metrics"), 401, "unauthorized");
    let ok = request("GET", &format!("{base}/twins?type=pump"), Some("r-secret"), None);
    assert_eq!(ok.status, 200, "{ok:?}");
    // No write token configured: writes are refused whatever the token.
    let ack = request(
        "POST",
        &format!("{base}/alerts/pump-2/hot/1/ack"),
        Some("r-secret"),
        None,
    );
    assert_error(&ack, 403, "forbidden");
    stop_cleanly(run);

    // A token named in the topology must be readable, or the node does not start.
    let topo = topology(dir.path(), "{ write_token_env: TEST_UNSET_TOKEN_VARIABLE }");
    let out = twinstream()
        .arg("run")
        .arg(&topo)
        .arg("--state-dir")
        .arg(&state)
        .arg("--http")
        .arg("127.0.0.1:0")
        .env_remove("TEST_UNSET_TOKEN_VARIABLE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TEST_UNSET_TOKEN_VARIABLE") && err.contains("not set"),
        "{err}"
    );
    // A token written inline is refused by `check`.
    let topo = topology(dir.path(), "{ write_token: hunter2 }");
    let out = twinstream().arg("check").arg(&topo).output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("never write a token in the topology"), "{text}");
}
