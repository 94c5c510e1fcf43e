//! A real headless Chromium, driven through WebDriver (Debian's
//! `chromium` and `chromium-driver`): the W3C protocol's few JSON calls the
//! view's tests need, over ureq. The driver listens on an ephemeral
//! loopback port and is stopped (with its browser) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::brokers::listening;

pub struct Browser {
    driver: Child,
    url: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (1400x900).
    pub fn start() -> Browser {
        let (driver, port) = listening("chromedriver", None, |port| {
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (scripts/install-deps.sh installs chromium-driver)")
        });
        let url = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,900", "--no-first-run", "--no-default-browser-check",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let mut b = Browser {
            driver,
            url,
            session: String::new(),
            agent,
            _profile: profile,
        };
        let created = b.call("POST", "/session", Some(caps));
        b.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.url);
        let req = self.agent.request(method, &url);
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let text = match res {
            Ok(r) => r.into_string().unwrap(),
            Err(ureq::Error::Status(code, r)) => {
                panic!(
                    "WebDriver {method} {path}: {code}: {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        };
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("WebDriver answer {text}: {e}"));
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.session_call("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Polls `script` until it returns something other than null or false;
    /// returns that, or panics with `what` and the last value after `timeout`.
    pub fn wait(&self, what: &str, timeout: Duration, script: &str, args: Value) -> Value {
        let started = Instant::now();
        loop {
            let v = self.eval(script, args.clone());
            if !v.is_null() && v != Value::Bool(false) {
                return v;
            }
            if started.elapsed() > timeout {
                panic!("{what}: still {v} after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The element `css` matches (waiting up to 30 s for it).
    fn element(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let url = format!("{}/session/{}/element", self.url, self.session);
            match self
                .agent
                .post(&url)
                .send_json(json!({ "using": "css selector", "value": css }))
            {
                Ok(r) => {
                    let v: Value = r.into_json().unwrap();
                    let e = &v["value"];
                    let id = e
                        .as_object()
                        .and_then(|o| o.values().next())
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| panic!("element {css}: {v}"));
                    return id.to_string();
                }
                Err(ureq::Error::Status(404, _)) if started.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("no element `{css}`: {e}"),
            }
        }
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the element `css` (after what it holds).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })));
    }

    pub fn clear(&self, css: &str) {
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/clear"), Some(json!({})));
    }

    /// Writes a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.session_call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("a screenshot"))
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// The browser's console messages so far (severe ones: errors, CSP
    /// violations).
    pub fn errors(&self) -> Vec<String> {
        let url = format!("{}/session/{}/se/log", self.url, self.session);
        match self.agent.post(&url).send_json(json!({ "type": "browser" })) {
            Ok(r) => {
                let v: Value = r.into_json().unwrap_or_default();
                v["value"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|e| e["level"] == "SEVERE")
                            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            }
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.url, self.session);
            let _ = self.agent.delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where tests write what a person may want to look at (screenshots):
/// `$TWINSTREAM_TEST_OUTPUT`, else `test-output` in the cargo target dir.
pub fn output_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TWINSTREAM_TEST_OUTPUT") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| super::repo().join("target"), PathBuf::from);
    target.join("test-output")
}
