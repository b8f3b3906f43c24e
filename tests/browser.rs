//! End-to-end: the demo binary driven by headless Chromium through WebDriver (chromedriver).
//!
//! Clicks Run and sees the bar reach 100 %; reloads mid-run and sees the run finish; kills the
//! server with SIGKILL mid-run, starts it again and sees the page finish. Each time it checks,
//! on the ids the page recorded per connection, that every reconnect resumed at the last id + 1
//! (no replay from the start) and that no tick is missing or doubled. An approval-flow run is
//! approved with the page's button while the server is down (the page retries the signal) and
//! finishes after the restart; another is rejected after a reload. The operator console
//! (`/console`, signed in as the demo's `admin`) lists two users' runs, filters them by state,
//! shows a running run's events arriving, stops and resumes it; a non-operator gets 403 on
//! the page and on every JSON route. Screenshots go to
//! `target/browser-test/`.
//!
//! Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`). When missing,
//! the test installs them if it runs as root, and otherwise fails with the command to run.
//! The WebDriver calls are a few JSON requests, made with the `reqwest` the suite already has.
//!
//! The browser is cleaned up also when the test fails or panics: the WebDriver session is
//! ended, then chromedriver's process group (chromedriver runs as its leader, and Chromium's
//! processes stay in it) is killed; the test checks at its end that no process using its
//! browser profile is left.

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

#[path = "common/demo_process.rs"]
mod demo_process;

const INSTALL: &str = "apt-get update && apt-get install -y chromium chromium-driver";

fn ensure_chromium() {
    let present = |bin: &str| Path::new(bin).exists();
    if present("/usr/bin/chromium") && present("/usr/bin/chromedriver") {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        root,
        "Chromium and chromedriver are missing. Install them with: sudo sh -c '{INSTALL}'"
    );
    eprintln!("browser test: installing Chromium: {INSTALL}");
    let status = Command::new("sh")
        .args(["-c", &format!("DEBIAN_FRONTEND=noninteractive {INSTALL}")])
        .status()
        .unwrap();
    assert!(status.success(), "installing Chromium failed: {INSTALL}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Live processes whose command line names `profile` (every Chromium process of one browser
/// gets its `--user-data-dir`).
fn processes_using(profile: &Path) -> Vec<u32> {
    let needle = profile.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            // A zombie has an empty command line and is gone once reaped.
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}

fn start_demo(data: &Path, addr: &str) -> (Proc, String) {
    let (child, url) = demo_process::start_demo(data, addr);
    (Proc(child), url)
}

/// A WebDriver session, ended (and its browser's processes killed) on drop.
struct Browser {
    http: reqwest::Client,
    base: String,
    port: u16,
    session: String,
    /// chromedriver, the leader of a process group of its own; `None` once shut.
    driver: Option<Child>,
    profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let left = self.shut();
        if !left.is_empty() {
            eprintln!("browser test: Chromium processes still running: {left:?}");
        }
    }
}

impl Browser {
    async fn start() -> Self {
        let port = free_port();
        // A process group of its own, so that every Chromium process it starts can be killed
        // with it.
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let driver_url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http
            .get(format!("{driver_url}/status"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1200,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let r: Value = http
            .post(format!("{driver_url}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser-test");
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            http,
            base: format!("{driver_url}/session/{id}"),
            port,
            session: id,
            driver: Some(driver),
            profile,
            shots,
        }
    }

    /// Ends the WebDriver session (Chromium quits), kills what is left of chromedriver's
    /// process group, and returns the pids of processes still using this browser's profile
    /// after up to 5 s. Blocking, so that `Drop` can call it during a panic.
    fn shut(&mut self) -> Vec<u32> {
        let Some(mut driver) = self.driver.take() else {
            return Vec::new();
        };
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                conn,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session, self.port
            );
            let _ = conn.read_to_end(&mut Vec::new());
        }
        let group = format!("-{}", driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = driver.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = processes_using(self.profile.path());
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r: Value = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["value"].get("error").is_some() {
            panic!("WebDriver {path}: {r}");
        }
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    async fn screenshot(&self, name: &str) {
        let v = self
            .call(reqwest::Method::GET, "/screenshot", json!({}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Fills the form and clicks Run; returns the new run's key.
    async fn run(&self, task: &str, n: &str, ms: &str) -> Option<String> {
        let before = self.js("return [...window.__taskflow.runs.keys()]").await;
        self.js(&format!(
            "const f = document.getElementById('start');
             f.task.value = {task:?}; f.n.value = {n:?}; f.ms.value = {ms:?};
             document.getElementById('run').click(); return true;"
        ))
        .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let keys = self.js("return [...window.__taskflow.runs.keys()]").await;
            let new: Vec<String> = keys
                .as_array()
                .unwrap()
                .iter()
                .filter(|k| !before.as_array().unwrap().contains(k))
                .map(|k| k.as_str().unwrap().to_owned())
                .collect();
            if let Some(k) = new.first() {
                return Some(k.clone());
            }
            let error = self
                .js("return document.getElementById('error').textContent")
                .await;
            if !error.as_str().unwrap_or_default().is_empty() {
                return None;
            }
            assert!(Instant::now() < deadline, "no run appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn state(&self, ik: &str) -> (String, u64) {
        let v = self
            .js(&format!(
                "const r = window.__taskflow.runs.get({ik:?});
                 if (!r || !r.el) return null;
                 return [r.el.dataset.state, Number(r.el.querySelector('.bar > div').dataset.percent || 0)];"
            ))
            .await;
        match v.as_array() {
            Some(a) => (
                a[0].as_str().unwrap_or_default().to_owned(),
                a[1].as_u64().unwrap_or(0),
            ),
            None => (String::new(), 0),
        }
    }

    async fn wait_until(&self, ik: &str, what: &str, pred: impl Fn(&str, u64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (state, pct) = self.state(ik).await;
            if pred(&state, pct) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: stuck at {state} {pct} %"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `script` (a JavaScript expression) is true on the page.
    async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.js(&format!("return Boolean({script})")).await != json!(true) {
            if Instant::now() >= deadline {
                let page = self.js("return document.body.innerText").await;
                panic!("{what}: never became true: {script}\nthe page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of a run's log on the page.
    async fn log(&self, ik: &str) -> String {
        self.js(&format!(
            "return window.__taskflow.runs.get({ik:?}).el.querySelector('.log').textContent"
        ))
        .await
        .as_str()
        .unwrap()
        .to_owned()
    }

    /// Checks the page's per-connection ids: each connection starts at its `from` + 1, ids are
    /// consecutive, and together they are 1..=last exactly once. Returns (connections, last).
    async fn check_ids(&self, ik: &str) -> (usize, u64) {
        let conns = self
            .js(&format!(
                "return window.__taskflow.connections.filter(c => c.ik === {ik:?})"
            ))
            .await;
        let mut all = Vec::new();
        let conns = conns.as_array().unwrap();
        for c in conns {
            let from = c["from"].as_u64().unwrap();
            let ids: Vec<u64> = c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            if let Some(first) = ids.first() {
                assert_eq!(
                    *first,
                    from + 1,
                    "a reconnect did not resume at the last id + 1: {c}"
                );
            }
            assert!(
                ids.windows(2).all(|w| w[1] == w[0] + 1),
                "gap or repeat within {c}"
            );
            all.extend(ids);
        }
        let last = all.len() as u64;
        assert!(
            all.iter().copied().eq(1..=last),
            "ids across connections: {all:?}"
        );
        (conns.len(), last)
    }
}

/// JavaScript expressions for an approval-flow run on the page: the run, its Approve button,
/// its Reject button.
fn approval_js(ik: &str) -> (String, String, String) {
    let run = format!("window.__taskflow.runs.get({ik:?})");
    let button = |d: &str| format!("{run}.el.querySelector('button[data-d={d}]')");
    let (approve, reject) = (button("approve"), button("reject"));
    (run, approve, reject)
}

/// One browser at a time: the two tests share two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_survives_reloads_and_server_kills() {
    let _one = ONE_BROWSER.lock().await;
    ensure_chromium();
    let data = tempfile::tempdir().unwrap();
    let (demo, url) = start_demo(data.path(), "127.0.0.1:0");
    // The restart below must come back on the same origin, so it reuses the port the first
    // server picked.
    let addr = url.trim_start_matches("http://").to_owned();
    let mut demo = Some(demo);
    let b = Browser::start().await;
    b.goto(&url).await;

    // 1. Run to 100 %.
    let ik = b.run("count-to-n", "6", "150").await.expect("run started");
    b.wait_until(&ik, "first run", |s, p| s == "completed" && p == 100)
        .await;
    let (conns, last) = b.check_ids(&ik).await;
    assert_eq!(last, 7, "6 ticks and completed");
    assert_eq!(conns, 1);
    b.screenshot("1-completed").await;

    // 2. Reload mid-run.
    let ik = b.run("count-to-n", "12", "250").await.unwrap();
    b.wait_until(&ik, "before reload", |_, p| p >= 25).await;
    b.goto(&url).await;
    b.wait_until(&ik, "after reload", |s, p| s == "completed" && p == 100)
        .await;
    let (conns, last) = b.check_ids(&ik).await;
    assert!(conns >= 2, "the reload made a new connection");
    assert_eq!(last, 13);
    b.screenshot("2-after-reload").await;

    // 3. SIGKILL the server mid-run and start it again on the same address.
    let ik = b.run("count-to-n", "12", "250").await.unwrap();
    b.wait_until(&ik, "before kill", |_, p| p >= 25).await;
    let mut killed = demo.take().unwrap();
    Command::new("kill")
        .args(["-KILL", &killed.0.id().to_string()])
        .status()
        .unwrap();
    let _ = killed.0.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    while b
        .js("return document.getElementById('banner').classList.contains('on')")
        .await
        != json!(true)
    {
        assert!(
            Instant::now() < deadline,
            "no reconnecting banner while the server is down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.screenshot("3-server-down").await;
    let (restarted, _) = start_demo(data.path(), &addr);
    demo = Some(restarted);
    b.wait_until(&ik, "after restart", |s, p| s == "completed" && p == 100)
        .await;
    let (conns, last) = b.check_ids(&ik).await;
    assert!(conns >= 2, "the page reconnected after the restart");
    assert_eq!(last, 13);
    b.screenshot("3-after-restart").await;

    // 4. Bad input shows the server's 400 message.
    assert!(b.run("count-to-n", "abc", "100").await.is_none());
    let error = b
        .js("return document.getElementById('error').textContent")
        .await;
    assert!(error.as_str().unwrap().contains("(field: n)"), "{error}");
    assert!(b.run("count-to-n", "0", "100").await.is_none());
    let error = b
        .js("return document.getElementById('error').textContent")
        .await;
    assert!(
        error
            .as_str()
            .unwrap()
            .contains("n must be between 1 and 10000"),
        "{error}"
    );
    b.screenshot("4-bad-input").await;

    // 5. After a reload, GET /api/tasks lists the runs the page shows, a run started
    // elsewhere (here: by a script) included, and a finished run shows its events again.
    let elsewhere = reqwest::Client::new()
        .post(format!("{url}/api/tasks/count-to-n"))
        .json(&json!({"run_key": "started-by-a-script", "n": 2, "sleep_ms": 10}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(elsewhere.contains("event: completed"), "{elsewhere}");
    b.goto(&url).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let finished = b
        .js(&format!(
            "const r = window.__taskflow.runs.get('{ik}'); \
             return [r.state, r.el.querySelector('.log').textContent, \
                     [...r.el.querySelectorAll('button')].map(b => b.disabled)]"
        ))
        .await;
    assert_eq!(finished[0], "completed", "{finished}");
    assert!(
        finished[1].as_str().unwrap().contains("tick 12/12")
            && finished[1].as_str().unwrap().contains("completed"),
        "a finished run shows its events after a reload: {finished}"
    );
    assert_eq!(
        finished[2],
        json!([true, true, true, true, true]),
        "no action (stop, resume, cancel, and the hidden approve and reject) is valid on a completed run"
    );
    let scripted = b
        .js("return [...window.__taskflow.runs.values()].filter(r => r.state === 'completed' && r.task === 'count-to-n' && r.done === 2).length")
        .await;
    assert_eq!(
        scripted,
        json!(1),
        "the run a script started is on the page"
    );
    b.screenshot("5-after-reload").await;

    // 6. approval-flow: the page asks for a decision while the run waits for one. The server
    // is killed during the wait, Approve is clicked while it is down (the page retries the
    // signal with one Idempotency-Key), and after the restart the run takes the decision
    // once, sleeps and joins its two children.
    let ik = b
        .run("approval-flow", "3", "300")
        .await
        .expect("approval started");
    let (run, approve, _) = approval_js(&ik);
    b.wait_for(
        "asked for a decision",
        &format!("{run}.el.dataset.waiting === 'signal:decision' && !{approve}.disabled"),
    )
    .await;
    assert!(b.log(&ik).await.contains("waiting for approval"));
    b.screenshot("6-waiting-for-approval").await;
    let mut killed = demo.take().unwrap();
    Command::new("kill")
        .args(["-KILL", &killed.0.id().to_string()])
        .status()
        .unwrap();
    let _ = killed.0.wait();
    b.wait_for(
        "reconnecting banner while the server is down",
        "document.getElementById('banner').classList.contains('on')",
    )
    .await;
    b.js(&format!("{approve}.click(); return true")).await;
    b.wait_for(
        "the decision is pending",
        &format!("{run}.decision && !{run}.decision.sent && {approve}.disabled"),
    )
    .await;
    b.screenshot("6-approved-while-down").await;
    let (restarted, _) = start_demo(data.path(), &addr);
    demo = Some(restarted);
    b.wait_until(&ik, "approved run", |s, p| s == "completed" && p == 100)
        .await;
    let log = b.log(&ik).await;
    assert!(
        log.contains(
            r#"completed {"approved_by":"a reviewer","children":[{"final":3},{"final":3}]}"#
        ),
        "{log}"
    );
    assert_eq!(
        log.matches("decision sent: approve by a reviewer").count(),
        1,
        "{log}"
    );
    for line in ["prepared", "signal over", "asleep until", "sleep over"] {
        assert!(log.contains(line), "no `{line}` in {log}");
    }
    let (conns, last) = b.check_ids(&ik).await;
    assert!(conns >= 2, "the page reconnected after the restart");
    assert!(last >= 6, "prepared, two waits and the end: {last}");
    let status: Value = reqwest::get(format!("{url}/api/tasks/{ik}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let children = status["children"].as_array().expect("children listed");
    assert_eq!(children.len(), 2, "{status}");
    assert!(
        children.iter().all(|c| c["status"] == "completed"),
        "{status}"
    );
    b.screenshot("6-approved-after-restart").await;

    // A reload while a run waits keeps asking for its decision; Reject ends it.
    let ik = b.run("approval-flow", "1", "10").await.unwrap();
    let (run, _, reject) = approval_js(&ik);
    let asked =
        format!("{run} && {run}.el.dataset.waiting === 'signal:decision' && !{reject}.disabled");
    b.wait_for("asked before the reload", &asked).await;
    b.goto(&url).await;
    b.wait_for("asked after the reload", &asked).await;
    b.js(&format!("{reject}.click(); return true")).await;
    b.wait_until(&ik, "rejected run", |s, _| s == "completed")
        .await;
    let log = b.log(&ik).await;
    assert!(
        log.contains(r#"completed {"rejected_by":"a reviewer"}"#),
        "{log}"
    );
    b.screenshot("6-rejected").await;
    let shown = b
        .js("return [...window.__taskflow.runs.keys()].sort()")
        .await;
    let listed: Value = reqwest::get(format!("{url}/api/tasks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut listed: Vec<String> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["idempotency_key"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(shown, json!(listed));
    drop(demo);

    // 7. Nothing of the browser is left running.
    let mut b = b;
    assert!(
        processes_using(b.profile.path()).len() > 1,
        "the profile check sees the running browser (else it proves nothing)"
    );
    let left = b.shut();
    assert!(left.is_empty(), "Chromium processes left running: {left:?}");
}

/// Keeps re-attaching to `ik`'s events as `user` (a watcher under the disconnect rule, like
/// the user's own browser), until aborted.
fn keep_watching(url: &str, user: &'static str, ik: &str) -> tokio::task::JoinHandle<()> {
    let url = format!("{url}/api/tasks/{ik}/events");
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        loop {
            if let Ok(mut res) = http.get(&url).header("x-forwarded-user", user).send().await {
                while let Ok(Some(_)) = res.chunk().await {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_filters_and_steers_every_users_runs_for_the_operator_only() {
    let _one = ONE_BROWSER.lock().await;
    ensure_chromium();
    let data = tempfile::tempdir().unwrap();
    let (_demo, url) = start_demo(data.path(), "127.0.0.1:0");
    let http = reqwest::Client::new();
    let start = |user: &'static str, task: &str, input: Value| {
        http.post(format!("{url}/api/tasks/{task}"))
            .header("x-forwarded-user", user)
            .json(&input)
            .send()
    };
    // Two users' finished runs, and one of bob's that runs for a minute.
    for (user, key) in [("alice", "a1"), ("alice", "a2"), ("bob", "b1")] {
        let body = start(
            user,
            "count-to-n",
            json!({"run_key": key, "n": 2, "sleep_ms": 10}),
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        assert!(body.contains("event: completed"), "{body}");
    }
    let long = start(
        "bob",
        "count-to-n",
        json!({"run_key": "long", "n": 300, "sleep_ms": 200}),
    )
    .await
    .unwrap();
    let long_ik = long
        .headers()
        .get("x-taskflow-idempotency-key")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    drop(long);
    let watcher = keep_watching(&url, "bob", &long_ik);

    let b = Browser::start().await;
    // 1. Not an operator: anonymous, then signed in as bob. The page and every JSON route
    // answer 403.
    let routes = json!([
        "/console/api/runs",
        "/console/api/runs?state=running",
        "/console/api/counts",
        "/console/api/health",
        format!("/console/api/runs/{long_ik}"),
        format!("/console/api/runs/{long_ik}/events"),
        format!("/console/api/runs/{long_ik}/steps/tick%230"),
    ]);
    for who in ["anonymous", "bob"] {
        if who == "bob" {
            b.goto(&format!("{url}/sign-in?user=bob")).await;
        } else {
            b.goto(&format!("{url}/console")).await;
        }
        let text = b.js("return document.body.innerText").await;
        assert!(
            text.as_str().unwrap().contains("\"code\":\"forbidden\""),
            "{who}: {text}"
        );
        let statuses = b
            .js(&format!(
                "return Promise.all({routes}.map(p => fetch(p).then(r => r.status)))
                   .then(s => s.concat([]))
                   .then(async s => s.concat(await Promise.all(['stop', 'resume', 'cancel', 'signals/go']
                     .map(a => fetch('/console/api/runs/{long_ik}/' + a, {{method: 'POST'}}).then(r => r.status)))))"
            ))
            .await;
        let statuses: Vec<u64> = statuses
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .collect();
        assert_eq!(statuses.len(), 11);
        assert!(statuses.iter().all(|s| *s == 403), "{who}: {statuses:?}");
    }
    b.screenshot("console-1-forbidden").await;

    // 2. The operator sees every user's runs, newest first.
    b.goto(&format!("{url}/sign-in?user=admin")).await;
    b.wait_for(
        "four runs listed",
        "document.querySelectorAll('#runs tbody tr').length === 4",
    )
    .await;
    let owners = b
        .js("return [...document.querySelectorAll('#runs tbody tr td:nth-child(3)')].map(td => td.textContent)")
        .await;
    assert_eq!(owners, json!(["bob", "bob", "alice", "alice"]));
    b.wait_for(
        "counts by state",
        "document.querySelector('#counts button[data-state=completed]')?.dataset.count === '3'",
    )
    .await;
    b.wait_for(
        "health drawn",
        "document.getElementById('store').textContent === 'ok' && document.querySelectorAll('#latency-chart rect').length > 0",
    )
    .await;
    b.screenshot("console-2-runs").await;

    // 3. Filter by state: only the finished runs.
    b.js("document.querySelector('#counts button[data-state=completed]').click(); return true")
        .await;
    b.wait_for(
        "filtered to completed",
        "(() => { const rows = [...document.querySelectorAll('#runs tbody tr')]; \
           return rows.length === 3 && rows.every(r => r.dataset.state === 'completed'); })()",
    )
    .await;
    b.screenshot("console-3-completed").await;
    b.js("document.getElementById('clear').click(); return true")
        .await;
    b.wait_for(
        "unfiltered again",
        "document.querySelectorAll('#runs tbody tr').length === 4",
    )
    .await;

    // 4. Open bob's running run: its events arrive live.
    b.js(&format!(
        "document.querySelector('#runs tbody tr[data-key={long_ik:?}]').click(); return true"
    ))
    .await;
    b.wait_for(
        "the run is open",
        "document.getElementById('detail').dataset.state === 'running' && window.__console.events.length > 0",
    )
    .await;
    let before = b
        .js("return window.__console.events.length")
        .await
        .as_u64()
        .unwrap();
    b.wait_for(
        "new events arrive",
        &format!("window.__console.events.length >= {before} + 3"),
    )
    .await;
    let ids = b.js("return window.__console.events.map(e => e.id)").await;
    let ids: Vec<u64> = ids
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        ids.iter().copied().eq(1..=ids.len() as u64),
        "gapless, in order: {ids:?}"
    );
    assert!(
        b.js("return document.querySelectorAll('#steps tbody tr').length")
            .await
            .as_u64()
            .unwrap()
            >= 1,
        "its steps are listed"
    );
    b.js("document.getElementById('detail').scrollIntoView(); return true")
        .await;
    b.screenshot("console-4-live").await;

    // 5. Stop it with a reason: asked first, then the answer shown.
    b.js("document.querySelector('#actions button[data-action=stop]').click(); return true")
        .await;
    b.wait_for(
        "asks to confirm",
        "document.getElementById('confirm').classList.contains('on')",
    )
    .await;
    b.js(
        "document.querySelector('#confirm-reason input').value = 'checking the warehouse'; \
          document.getElementById('confirm-yes').click(); return true",
    )
    .await;
    b.wait_for(
        "stopped",
        "document.getElementById('answer').textContent.includes('suspended') && \
         document.getElementById('detail').dataset.state === 'suspended'",
    )
    .await;
    let status: Value = http
        .get(format!("{url}/api/tasks/{long_ik}"))
        .header("x-forwarded-user", "bob")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "suspended");
    assert_eq!(status["suspended_reason"], "checking the warehouse");
    b.js("document.getElementById('detail').scrollIntoView(); return true")
        .await;
    b.screenshot("console-5-stopped").await;

    // 6. Resume it: it runs again and its events go on arriving.
    b.js("document.querySelector('#actions button[data-action=resume]').click(); return true")
        .await;
    b.wait_for(
        "asks to confirm",
        "document.getElementById('confirm').classList.contains('on')",
    )
    .await;
    b.js("document.getElementById('confirm-yes').click(); return true")
        .await;
    b.wait_for(
        "resumed",
        "document.getElementById('answer').textContent.startsWith('resume: the run is now') && \
         document.getElementById('detail').dataset.state === 'running'",
    )
    .await;
    let after = b
        .js("return Math.max(...window.__console.events.map(e => e.id))")
        .await
        .as_u64()
        .unwrap();
    b.wait_for(
        "events after the resume",
        &format!("Math.max(...window.__console.events.map(e => e.id)) >= {after} + 2"),
    )
    .await;
    // The health charts draw the run's steps and events per second from the sampled history.
    b.wait_for(
        "steps/s and events/s drawn",
        "document.querySelector('#steps-chart polyline') && document.querySelector('#events-chart polyline') \
         && !document.getElementById('steps-rate').textContent.includes('max 0.0/s')",
    )
    .await;
    b.screenshot("console-6-resumed").await;
    watcher.abort();

    let mut b = b;
    let left = b.shut();
    assert!(left.is_empty(), "Chromium processes left running: {left:?}");
}
