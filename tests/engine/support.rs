//! A scriptable task and helpers shared by the engine tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use taskflow::{IdempotencyKey, StoredEvent, TaskState};
use tokio::sync::watch;

/// What the scripted task does; every field defaults to "nothing special".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Script {
    pub tag: String,
    pub steps: u32,
    pub step_sleep_ms: u64,
    pub events_per_step: u32,
    pub hold: bool,
    pub ignore_stop: bool,
    pub step_after_stop: bool,
    pub fail_times: u32,
    pub panic_times: u32,
    pub permanent: bool,
    pub step_bytes: usize,
    pub event_bytes: usize,
    pub output_bytes: usize,
}

impl Script {
    pub fn new(tag: &str) -> Self {
        Self {
            tag: tag.to_owned(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Out {
    pub values: Vec<u64>,
    pub pad: String,
}

/// The scripted task's events.
#[events]
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    Tick { i: u32, pad: String },
}

/// What one tag's runs did, observed from outside the engine.
#[derive(Debug)]
pub struct Probe {
    pub attempts: AtomicU32,
    /// Step index → times its body ran.
    pub executions: Mutex<HashMap<u32, u32>>,
    /// Step index → value returned by `step` (executed or replayed), in order.
    pub returned: Mutex<Vec<(u32, u64, StepOrigin)>>,
    pub tokens: Mutex<Vec<String>>,
    pub after_stop: Mutex<Vec<String>>,
    pub dropped: AtomicBool,
    /// Step bodies that ran although `step` had already returned for that index.
    pub reran_after_commit: AtomicU32,
    pub release: watch::Sender<bool>,
    /// Counts steps that returned, so tests can wait for progress.
    pub progress: watch::Sender<u32>,
}

static PROBES: LazyLock<Mutex<HashMap<String, Arc<Probe>>>> = LazyLock::new(Default::default);

pub fn probe(tag: &str) -> Arc<Probe> {
    PROBES
        .lock()
        .unwrap()
        .entry(tag.to_owned())
        .or_insert_with(|| {
            Arc::new(Probe {
                attempts: AtomicU32::new(0),
                executions: Mutex::new(HashMap::new()),
                returned: Mutex::new(Vec::new()),
                tokens: Mutex::new(Vec::new()),
                after_stop: Mutex::new(Vec::new()),
                dropped: AtomicBool::new(false),
                reran_after_commit: AtomicU32::new(0),
                release: watch::channel(false).0,
                progress: watch::channel(0).0,
            })
        })
        .clone()
}

impl Probe {
    pub fn executions_of(&self, i: u32) -> u32 {
        self.executions
            .lock()
            .unwrap()
            .get(&i)
            .copied()
            .unwrap_or(0)
    }

    pub fn release(&self) {
        self.release.send_replace(true);
    }

    pub async fn wait_progress(&self, at_least: u32) {
        let mut rx = self.progress.subscribe();
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|n| *n >= at_least))
            .await
            .expect("task made no progress within 20 s")
            .expect("progress channel open");
    }
}

struct DropFlag(Arc<Probe>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

/// Does what its [`Script`] says, reporting to the tag's [`Probe`].
#[task(name = "scripted")]
pub async fn scripted(ctx: TaskContext<Tick>, s: Script) -> Result<Out, TaskError> {
    let p = probe(&s.tag);
    let _flag = DropFlag(p.clone());
    let attempt = p.attempts.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(token) = ctx.user().and_then(|u| u.access_token()) {
        p.tokens
            .lock()
            .unwrap()
            .push(token.expose_secret().to_owned());
    }
    let mut values = Vec::new();
    for i in 0..s.steps {
        let probe = p.clone();
        let sleep = s.step_sleep_ms;
        let (v, origin) = ctx
            .step_with_origin("work", || async move {
                *probe.executions.lock().unwrap().entry(i).or_insert(0) += 1;
                if probe.returned.lock().unwrap().iter().any(|r| r.0 == i) {
                    probe.reran_after_commit.fetch_add(1, Ordering::SeqCst);
                }
                if sleep > 0 {
                    tokio::time::sleep(Duration::from_millis(sleep)).await;
                }
                Ok::<_, TaskError>(u64::from(i) * 1000 + u64::from(attempt))
            })
            .await?;
        p.returned.lock().unwrap().push((i, v, origin));
        values.push(v);
        for _ in 0..s.events_per_step.max(1) {
            ctx.emit(Tick::Tick {
                i,
                pad: "e".repeat(s.event_bytes),
            })
            .await?;
        }
        p.progress.send_modify(|n| *n += 1);
    }
    if s.step_bytes > 0 {
        let n = s.step_bytes;
        ctx.step("big", || async move { Ok::<_, TaskError>("s".repeat(n)) })
            .await?;
    }
    if attempt <= s.panic_times {
        panic!("scripted panic {attempt}");
    }
    if attempt <= s.fail_times {
        let e = TaskError::new(format!("scripted failure {attempt}"));
        return Err(if s.permanent { e.into_permanent() } else { e });
    }
    if s.hold {
        let mut release = p.release.subscribe();
        if s.ignore_stop {
            let _ = release.wait_for(|r| *r).await;
        } else {
            let released = async {
                let _ = release.wait_for(|r| *r).await;
            };
            tokio::select! {
                () = released => {}
                () = ctx.cancelled() => {
                    if s.step_after_stop {
                        let step = ctx.step("late", || async { Ok::<_, TaskError>(1u8) }).await;
                        let emit = ctx.emit(Tick::Tick { i: 999, pad: String::new() }).await;
                        let mut log = p.after_stop.lock().unwrap();
                        log.push(step.err().map_or("ok".into(), |e| e.code().to_owned()));
                        log.push(emit.err().map_or("ok".into(), |e| e.code().to_owned()));
                    }
                    return Err(TaskError::new("stopped by request"));
                }
            }
        }
    }
    Ok(Out {
        values,
        pad: "o".repeat(s.output_bytes),
    })
}

/// Polls the run's status until `pred` holds (at most 20 s).
pub async fn wait_status(
    flow: &TaskFlow,
    ik: &IdempotencyKey,
    pred: impl Fn(TaskState) -> bool,
) -> taskflow::TaskStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = flow.status(ik).await.expect("status");
        if pred(status.status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status stuck at {:?}",
            status.status
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls until the key's log holds at least `seq` events (at most 20 s): emits are pipelined,
/// so an emit that returned may not be durable yet.
pub async fn wait_last_seq(flow: &TaskFlow, ik: &IdempotencyKey, seq: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while flow.status(ik).await.expect("status").last_seq.get() < seq {
        assert!(
            tokio::time::Instant::now() < deadline,
            "event {seq} not durable in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads every event of the key's current run up to its end.
pub async fn all_events(
    flow: &TaskFlow,
    ik: &IdempotencyKey,
    from: SubscribeFrom,
) -> Vec<StoredEvent> {
    let mut sub = flow.subscribe(ik, from).await.expect("subscribe");
    let mut out = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("subscription stalled")
    {
        out.push(e.expect("event"));
    }
    out
}

/// Asserts that `events` have consecutive seqs starting at `first`.
pub fn assert_gapless(events: &[StoredEvent], first: u64) {
    for (k, e) in events.iter().enumerate() {
        assert_eq!(e.seq.get(), first + k as u64, "gap or duplicate at {e:?}");
    }
}

/// A builder on `store` (redb or PostgreSQL, as `TASKFLOW_TEST_STORE` says) with the
/// scripted task and short grace and backoff.
pub fn fast_builder(store: &taskflow::testing::TempStore) -> taskflow::TaskFlowBuilder {
    fast(store.builder())
}

/// `builder` with the scripted task and short grace and backoff.
pub fn fast(builder: taskflow::TaskFlowBuilder) -> taskflow::TaskFlowBuilder {
    builder
        .register(scripted)
        .stop_grace(Duration::from_millis(300))
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(20))
}

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Forgets what was written so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs the test `name` of this binary alone in a child process with `marker` set in its
/// environment (a test that needs a global subscriber of its own, which other tests running
/// at once would disturb); asserts that it passed and really ran; returns its stdout.
pub fn run_alone_in_child(name: &str, marker: &str) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name} failed in its child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The child really ran the check (a filter that matched nothing would pass too).
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
    stdout
}

/// Polls `done` every 10 ms until it holds (at most 20 s), failing with `what`.
pub async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}: timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
