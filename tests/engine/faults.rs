//! The EIO matrix: a workload of concurrent tasks with steps and events, run once per storage
//! operation index with that operation failing (once, and sticky: every later one too). No
//! panic; a failed write or fsync fail-stops the store (the metric, exactly one error line in
//! the log), and then the HTTP routes answer a new submission with 503 `storage_unavailable`
//! over a real socket; the file opens again; recovery finishes every run with no acknowledged
//! step re-run and gapless events.
//!
//! The file is created first by a clean start (as `data_dir` creates it: atomically, which
//! the storage tests cover), then opened through the faulty backend: the matrix is every
//! operation of opening it and running the workload, every index, once and sticky.

use std::sync::LazyLock;
use std::time::Duration;

use taskflow::testing::{InstrumentedBackend, SimulateCrash, TempDataDir};
use taskflow::{SubscribeFrom, TaskFlow};

use crate::support::*;

const RUNS: u32 = 2;

fn script(tag: &str, r: u32) -> Script {
    let mut s = Script::new(&format!("{tag}-{r}"));
    s.steps = 3;
    s
}

/// Starts the runs and waits for them (each may fail: the disk does).
async fn workload(flow: &TaskFlow, tag: &str) {
    let mut runs = Vec::new();
    for r in 0..RUNS {
        if let Ok(run) = flow.start(scripted, script(tag, r)).await {
            runs.push(run);
        }
    }
    // Until each finished, or the store fail-stopped (then nothing more finishes here).
    for run in &runs {
        let waited = flow.wait(run);
        tokio::pin!(waited);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !flow.is_storage_failed() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = &mut waited => break,
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }
}

/// The log of the matrix's child process (a global subscriber: the fail-stop line is written
/// on the committer's thread).
static LOG: LazyLock<Captured> = LazyLock::new(Captured::default);

const FAIL_STOP_LINE: &str = "the store is now fail-stopped";

/// A new submission over HTTP, on a real socket: 503 `storage_unavailable` once the store
/// fail-stopped; otherwise accepted (its own commit may be the one that fails: then the
/// stream says so), or the same 503. Never another error, never a hang.
async fn submit_over_http(flow: &TaskFlow, tag: &str, index: u64) {
    let failed_before = flow.is_storage_failed();
    let app = taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        reqwest::Client::new()
            .post(format!("{base}/tasks/scripted"))
            .json(&script(&format!("{tag}-http"), 0))
            .send(),
    )
    .await
    .unwrap_or_else(|_| panic!("index {index}: the POST hung"))
    .unwrap();
    let status = response.status();
    if failed_before || status != 200 {
        assert_eq!(
            status, 503,
            "index {index}: fail-stopped or failing, the POST is 503"
        );
        let body = response.text().await.unwrap();
        assert!(
            body.contains(r#""code":"storage_unavailable""#),
            "index {index}: {body}"
        );
    }
    server.abort();
}

/// What one faulty life did.
#[derive(Debug, Default)]
struct Outcome {
    refused_at_open: bool,
    fail_stopped: bool,
}

/// A data dir holding an empty database, created the way `data_dir` creates one.
async fn created() -> TempDataDir {
    let dir = TempDataDir::new();
    fast(dir.builder())
        .build()
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    dir
}

async fn one_index(index: u64, sticky: bool) -> Outcome {
    let tag = format!("eio-{}-{index}", if sticky { "sticky" } else { "once" });
    LOG.clear();
    let dir = created().await;
    let (backend, io) = InstrumentedBackend::create(dir.path()).unwrap();
    io.fail_operation(index, sticky);
    let mut outcome = Outcome::default();
    match fast(TaskFlow::builder().storage_backend(dir.path(), backend))
        .build()
        .await
    {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            outcome.refused_at_open = true;
        }
        Ok(flow) => {
            workload(&flow, &tag).await;
            submit_over_http(&flow, &tag, index).await;
            outcome.fail_stopped = flow.is_storage_failed();
            let lines = LOG.text().matches(FAIL_STOP_LINE).count();
            if outcome.fail_stopped {
                assert_eq!(
                    flow.metrics().store_failed,
                    1,
                    "index {index}: the metric says so"
                );
                assert_eq!(lines, 1, "index {index}: one log line says so");
            } else {
                assert_eq!(lines, 0, "index {index}: no fail-stop, no line");
            }
            flow.crash();
        }
    }
    // The disk works again; a restart finishes everything, re-running nothing acknowledged.
    let flow = fast(dir.builder()).build().await.unwrap_or_else(|e| {
        panic!("index {index} sticky {sticky}: the file does not open again: {e}")
    });
    for r in 0..RUNS {
        let s = script(&tag, r);
        let run = flow.start(scripted, s.clone()).await.unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), flow.wait(&run))
            .await
            .expect("the run finishes after the restart")
            .unwrap_or_else(|e| panic!("index {index} sticky {sticky} run {r}: {e}"));
        assert_eq!(out.values.len(), 3);
        let p = probe(&s.tag);
        assert_eq!(
            p.reran_after_commit
                .load(std::sync::atomic::Ordering::SeqCst),
            0,
            "index {index} sticky {sticky}: a step whose result was acknowledged ran again"
        );
        let events = all_events(&flow, &run.idempotency_key, SubscribeFrom::Start).await;
        let first = events.first().map_or(1, |e| e.seq.get());
        assert_gapless(&events, first);
    }
    flow.shutdown().await.unwrap();
    outcome
}

/// The matrix runs in a child process of this binary with a global subscriber of its own (the
/// fail-stop line is logged on the committer's thread, where a test's thread-local subscriber
/// does not reach, and other tests of this binary log too).
#[test]
fn an_io_error_at_any_storage_operation_loses_nothing_acknowledged() {
    const CHILD: &str = "TASKFLOW_EIO_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(LOG.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(eio_matrix());
        return;
    }
    let stdout = run_alone_in_child(
        "faults::an_io_error_at_any_storage_operation_loses_nothing_acknowledged",
        CHILD,
    );
    for line in stdout
        .lines()
        .filter_map(|l| l.find("EIO matrix").map(|at| &l[at..]))
    {
        println!("{line}");
    }
}

async fn eio_matrix() {
    // How many operations the workload makes when nothing fails.
    let dir = created().await;
    let (backend, io) = InstrumentedBackend::create(dir.path()).unwrap();
    let flow = fast(TaskFlow::builder().storage_backend(dir.path(), backend))
        .build()
        .await
        .unwrap();
    workload(&flow, "eio-count").await;
    flow.shutdown().await.unwrap();
    let total = io.operations();
    let (mut tried, mut refused, mut stopped) = (0, 0, 0);
    for sticky in [false, true] {
        let mut index = 0;
        while index < total {
            let o = one_index(index, sticky).await;
            tried += 1;
            refused += u32::from(o.refused_at_open);
            stopped += u32::from(o.fail_stopped);
            index += 1;
        }
    }
    println!(
        "EIO matrix: the workload makes {total} storage operations; tried {tried} faults (every index, once and sticky): {refused} refused at open, {stopped} fail-stopped (each: one log line, the metric, 503 over HTTP), 0 acknowledged writes lost"
    );
    assert!(stopped > 0, "some faults must hit commits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_commit_the_routes_answer_503_storage_unavailable() {
    let dir = created().await;
    let (backend, io) = InstrumentedBackend::create(dir.path()).unwrap();
    let flow = fast(TaskFlow::builder().storage_backend(dir.path(), backend))
        .build()
        .await
        .unwrap();
    // The disk dies now: the next storage operation and all later ones fail.
    io.fail_operation(io.operations(), true);
    let app = taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    for attempt in 0..2 {
        let r = client
            .post(format!("{base}/tasks/scripted"))
            .json(&script("eio-http", attempt))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "POST {attempt}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    }
    assert!(flow.is_storage_failed());
    assert_eq!(flow.metrics().store_failed, 1);
    flow.crash();
}

/// A small ext4 file system on a loop device, mounted for one test and unmounted after.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: std::path::PathBuf,
}

impl SmallDisk {
    /// # Panics
    /// When the machine cannot make one (it needs root, `mkfs.ext4` and loop mounts), saying
    /// so: a disk-full test never passes without a disk to fill.
    fn new(mib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(u64::from(mib) * 1024 * 1024).unwrap();
        drop(file);
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new(cmd).args(args).output();
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => panic!(
                    "this test mounts a small ext4 file system to fill it and needs root and loop \
                     devices; `{cmd}` failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => panic!(
                    "this test mounts a small ext4 file system to fill it; `{cmd}` is missing \
                     ({e}): install e2fsprogs and mount (Debian: apt-get install e2fsprogs mount)"
                ),
            }
        };
        run("mkfs.ext4", &["-q".as_ref(), image.as_os_str()]);
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                mount.as_os_str(),
            ],
        );
        Self { _dir: dir, mount }
    }

    /// Fills every free block with a file; returns it (remove it to give the space back).
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.mount.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![1u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mount)
            .status();
    }
}

static DISK_ERRORS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
/// Step indexes whose body ran, and those whose `step` returned their result, in order.
static RAN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());
static ACKNOWLEDGED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Steps of 256 KiB, each recording the error `step` returned, if any.
#[taskflow::task(name = "big-steps", max_attempts = 1)]
async fn big_steps(
    ctx: taskflow::TaskContext<taskflow::NoEvents>,
    n: u32,
) -> Result<u32, taskflow::TaskError> {
    for i in 0..n {
        let r = ctx
            .step("big", || async move {
                RAN.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok::<_, taskflow::TaskError>("b".repeat(256 * 1024))
            })
            .await;
        if let Err(e) = r {
            DISK_ERRORS.lock().unwrap().push(e.message().to_owned());
            return Err(e);
        }
        ACKNOWLEDGED.lock().unwrap().push(i);
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fail_stops_saying_so_and_work_resumes_once_there_is_space() {
    let disk = SmallDisk::new(32);
    let data = disk.mount.join("data");
    let flow = taskflow::TaskFlow::builder()
        .data_dir(&data)
        .register(big_steps)
        .build()
        .await
        .unwrap();
    let run = flow.start(big_steps, 40).await.unwrap();
    // Fill the disk mid-run, once some steps are durable.
    while ACKNOWLEDGED.lock().unwrap().len() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let filler = disk.fill();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !flow.is_storage_failed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a commit on a full disk fail-stops the store"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let acknowledged = ACKNOWLEDGED.lock().unwrap().clone();
    let errors = DISK_ERRORS.lock().unwrap().clone();
    println!("on a full disk the step saw: {errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("No space left on device")),
        "the error says the disk is full: {errors:?}"
    );
    flow.crash();
    // Space returns; after a restart the run finishes.
    std::fs::remove_file(filler).unwrap();
    let flow = taskflow::TaskFlow::builder()
        .data_dir(&data)
        .register(big_steps)
        .build()
        .await
        .unwrap();
    let again = flow.start(big_steps, 40).await.unwrap();
    assert_eq!(again.task_id, run.task_id, "the same run, not a new one");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), flow.wait(&again))
            .await
            .unwrap()
            .unwrap(),
        40
    );
    let ran = RAN.lock().unwrap().clone();
    for i in &acknowledged {
        assert_eq!(
            ran.iter().filter(|r| *r == i).count(),
            1,
            "step {i} was acknowledged before the disk filled and must not run again"
        );
    }
    println!(
        "full disk: {} steps acknowledged before it filled, none re-run after the restart",
        acknowledged.len()
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_fail_stops_saying_so() {
    let dir = created().await;
    let (backend, io) = InstrumentedBackend::create(dir.path()).unwrap();
    let flow = fast(TaskFlow::builder().storage_backend(dir.path(), backend))
        .build()
        .await
        .unwrap();
    io.fill_disk_at(io.operations());
    let e = flow.start(scripted, script("enospc", 0)).await.unwrap_err();
    println!("a start on a full disk: {e}");
    assert!(e.to_string().contains("No space left on device"), "{e}");
    assert!(flow.is_storage_failed());
    flow.crash();
    // Space again: the restart works and runs it.
    let flow = fast(dir.builder()).build().await.unwrap();
    let run = flow.start(scripted, script("enospc", 0)).await.unwrap();
    flow.wait(&run).await.unwrap();
    flow.shutdown().await.unwrap();
}
