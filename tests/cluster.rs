//! Several OS processes on one PostgreSQL schema (SPEC §7): this binary is the parent of
//! worker processes that are the same binary (`TASKFLOW_CLUSTER_WORKER` set), each a flow
//! on the shared schema serving the task routes on a port of its own.
//!
//! - `killed_worker`: three workers start ten runs each; one is SIGKILLed mid-run; the
//!   others claim its runs once their leases expire and finish them. Step bodies append to a
//!   shared, fsynced side journal (one line per execution and per acknowledged commit), so
//!   the parent sees, in one global order, that no body ran again after its result was
//!   committed, and every run completes exactly once.
//! - `frozen_worker`: a worker frozen with SIGSTOP past its lease loses its run to another;
//!   continued, it commits nothing more for that run and its handler sees `cancelled()`.
//! - `one_run_per_key`: 3 processes × 20 concurrent POSTs of one body make exactly one run,
//!   every response names the same key, exactly one says `attached: false`.
//! - `global_limit`: `max_concurrent(4)` on 3 processes sharing 20 runs: the handlers, which
//!   journal their start and end, never see more than 4 of them executing at once.
//! - `across_processes`: a run started on A streams live to a client re-attached on B with
//!   `Last-Event-ID` (exactly the next ids); a stop sent to B reaches A's stream as a
//!   `suspended` frame within 1 s and A's handler sees `cancelled()`; a resume sent to C runs
//!   it there to `completed`, every stream gapless, nothing re-executed.
//!
//! - `connection_cut`: a TCP proxy of the test's own between one worker and PostgreSQL cuts
//!   every connection mid-run: that worker's store fails stop (503 `storage_unavailable` for
//!   new work, documented), nothing it acknowledged is lost, its runs are claimed by the other
//!   worker once their leases expire and finish there, and a follower on the other worker
//!   misses no event.
//!
//! - `queued_runs_move`: a process with one slot queues six runs; a process with free
//!   slots takes those that wait longer than a heartbeat, and every run still runs once.
//! - `client_moves`: the disconnect rule counts clients on every process: a run started by a
//!   POST on A whose client moves to B (re-attach) within the grace keeps running after A's
//!   grace; once the client leaves B too, B stops it (`client_disconnected`) after the grace.
//!
//! A missing PostgreSQL server fails the test saying how to start one
//! (`taskflow::testing::TempSchema`).

#![allow(clippy::unwrap_used)] // a test program (harness = false): a panic is the failure report

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use taskflow::testing::TempSchema;

const WORKER: &str = "TASKFLOW_CLUSTER_WORKER";
const STALE: Duration = Duration::from_millis(1000);
const HEARTBEAT: Duration = Duration::from_millis(200);

#[events]
#[derive(Debug)]
enum Progress {
    Step { i: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    run: u32,
    steps: u32,
    step_ms: u64,
}

fn worker_index() -> u32 {
    std::env::var(WORKER).unwrap().parse().unwrap()
}

/// Appends one line to the shared journal and syncs it (one `write` per line: with
/// `O_APPEND` the lines of several processes never interleave).
fn journal(line: &str) {
    let path = std::env::var("TASKFLOW_CLUSTER_JOURNAL").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
    f.sync_data().unwrap();
}

/// `steps` steps; each body journals its execution, each acknowledged commit is journaled
/// too; the value says which worker computed it.
#[task(name = "cluster-steps")]
async fn cluster_steps(ctx: TaskContext<Progress>, job: Job) -> Result<Vec<u64>, TaskError> {
    let me = worker_index();
    journal(&format!("enter {} {me}", job.run));
    let work = async {
        let mut values = Vec::new();
        for i in 0..job.steps {
            let (run, ms) = (job.run, job.step_ms);
            let value = ctx
                .step("s", || async move {
                    journal(&format!("exec {run} {i} {me}"));
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, TaskError>(u64::from(i) * 1000 + u64::from(me))
                })
                .await?;
            journal(&format!("commit {run} {i} {me}"));
            values.push(value);
            ctx.emit(Progress::Step { i }).await?;
        }
        Ok(values)
    };
    let result = tokio::select! {
        result = work => result,
        () = ctx.cancelled() => Err(TaskError::new("cancelled: another process took the run over")),
    };
    // Whichever came first, a fenced write or the signal itself, `cancelled()` has fired.
    if ctx.is_cancelled() {
        journal(&format!("cancelled {} {me}", job.run));
    }
    journal(&format!("leave {} {me}", job.run));
    result
}

/// A worker: a flow on the shared schema, its runs started, the routes served until stdin
/// closes.
async fn worker() {
    let schema = std::env::var("TASKFLOW_CLUSTER_SCHEMA").unwrap();
    let url = std::env::var(taskflow::testing::TEST_DATABASE_URL)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let flow = TaskFlow::builder()
        .postgres(
            taskflow::store::PgConfig::new(url)
                .schema(schema)
                .stale_threshold(STALE),
        )
        .heartbeat_interval(HEARTBEAT)
        .max_concurrent(std::env::var("TASKFLOW_CLUSTER_MAX").map_or(50, |v| v.parse().unwrap()))
        .register(cluster_steps)
        .build()
        .await
        .unwrap();
    let jobs: Vec<Job> =
        serde_json::from_str(&std::env::var("TASKFLOW_CLUSTER_JOBS").unwrap()).unwrap();
    for job in jobs {
        flow.start(cluster_steps, job).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening {}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let app = taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService);
    let stdin_closed = async {
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
        })
        .await
        .unwrap();
    };
    taskflow::axum::serve_until(listener, app, flow, stdin_closed)
        .await
        .unwrap();
}

/// A running worker process.
struct Worker {
    index: u32,
    child: Child,
    port: u16,
}

impl Worker {
    fn start(index: u32, schema: &TempSchema, journal: &Path, jobs: &[Job]) -> Self {
        Self::start_with(index, schema, journal, jobs, 50)
    }

    fn start_with(
        index: u32,
        schema: &TempSchema,
        journal: &Path,
        jobs: &[Job],
        max_concurrent: usize,
    ) -> Self {
        Self::spawn(index, schema, journal, jobs, max_concurrent, None)
    }

    fn spawn(
        index: u32,
        schema: &TempSchema,
        journal: &Path,
        jobs: &[Job],
        max_concurrent: usize,
        database_url: Option<String>,
    ) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        if let Some(url) = database_url {
            command.env(taskflow::testing::TEST_DATABASE_URL, url);
        }
        let mut child = command
            .env("TASKFLOW_CLUSTER_MAX", max_concurrent.to_string())
            .env(WORKER, index.to_string())
            .env("TASKFLOW_CLUSTER_SCHEMA", schema.name())
            .env("TASKFLOW_CLUSTER_JOURNAL", journal)
            .env(
                "TASKFLOW_CLUSTER_JOBS",
                serde_json::to_string(jobs).unwrap(),
            )
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("listening ") {
                    let _ = tx.send(port.parse::<u16>().unwrap());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("worker {index} did not start within 60 s"));
        Self { index, child, port }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} worker {}", self.index);
    }

    fn kill(&mut self) {
        self.signal("KILL");
        self.child.wait().unwrap();
    }

    /// Closes stdin (a graceful stop) and waits for the exit.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                self.kill();
                panic!("worker {} did not stop within 30 s", self.index);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Exec { run: u32, step: u32, worker: u32 },
    Commit { run: u32, step: u32, worker: u32 },
    Cancelled { run: u32, worker: u32 },
    Enter { run: u32, worker: u32 },
    Leave { run: u32, worker: u32 },
}

fn read_journal(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            let n = |i: usize| w[i].parse::<u32>().unwrap();
            match w[0] {
                "exec" => Line::Exec {
                    run: n(1),
                    step: n(2),
                    worker: n(3),
                },
                "commit" => Line::Commit {
                    run: n(1),
                    step: n(2),
                    worker: n(3),
                },
                "cancelled" => Line::Cancelled {
                    run: n(1),
                    worker: n(2),
                },
                "enter" => Line::Enter {
                    run: n(1),
                    worker: n(2),
                },
                "leave" => Line::Leave {
                    run: n(1),
                    worker: n(2),
                },
                other => panic!("journal line {other}"),
            }
        })
        .collect()
}

/// No body ran again after its result was acknowledged, in the journal's global order;
/// every step of every run was acknowledged.
fn check_exactly_once(lines: &[Line], runs: impl Iterator<Item = u32>, steps: u32) {
    let mut committed = std::collections::HashSet::new();
    for line in lines {
        match *line {
            Line::Commit { run, step, .. } => {
                committed.insert((run, step));
            }
            Line::Exec { run, step, worker } => assert!(
                !committed.contains(&(run, step)),
                "step {step} of run {run} ran again on worker {worker} after its result was committed"
            ),
            Line::Cancelled { .. } | Line::Enter { .. } | Line::Leave { .. } => {}
        }
    }
    for run in runs {
        for step in 0..steps {
            assert!(
                committed.contains(&(run, step)),
                "step {step} of run {run} never committed"
            );
        }
    }
}

/// Queries the shared schema directly.
struct Db {
    client: tokio_postgres::Client,
    schema: String,
}

impl Db {
    async fn connect(schema: &TempSchema) -> Self {
        let url = std::env::var(taskflow::testing::TEST_DATABASE_URL)
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        Self {
            client,
            schema: format!("\"{}\"", schema.name()),
        }
    }

    async fn count(&self, condition: &str) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM {}.runs WHERE {condition}",
            self.schema
        );
        self.client.query_one(&sql, &[]).await.unwrap().get(0)
    }

    async fn wait_count(&self, condition: &str, n: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.count(condition).await;
            if got == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{got} runs where {condition} after {within:?}, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Status and suspend reason (as JSON text) of the schema's only run.
    async fn status_of_only_run(&self) -> (String, Option<String>) {
        let sql = format!(
            "SELECT status, suspended_reason::text FROM {}.runs",
            self.schema
        );
        let row = self.client.query_one(&sql, &[]).await.unwrap();
        (row.get(0), row.get(1))
    }

    /// The output of the run of `job.run`.
    async fn outputs(&self) -> Vec<(u32, Vec<u64>)> {
        let sql = format!(
            "SELECT input::text, output::text FROM {}.runs WHERE status = 'completed'",
            self.schema
        );
        let mut out = Vec::new();
        for row in self.client.query(&sql, &[]).await.unwrap() {
            let input: String = row.get(0);
            let output: String = row.get(1);
            let job: Job = serde_json::from_str(&input).unwrap();
            out.push((job.run, serde_json::from_str(&output).unwrap()));
        }
        out.sort();
        out
    }
}

fn jobs(runs: std::ops::Range<u32>, steps: u32, step_ms: u64) -> Vec<Job> {
    runs.map(|run| Job {
        run,
        steps,
        step_ms,
    })
    .collect()
}

async fn killed_worker(dir: &Path) {
    const STEPS: u32 = 30;
    let schema = TempSchema::new();
    let journal_path = dir.join("journal-kill");
    let db = Db::connect(&schema).await;
    let mut workers: Vec<Worker> = (0..3)
        .map(|w| {
            Worker::start(
                w,
                &schema,
                &journal_path,
                &jobs(w * 10..w * 10 + 10, STEPS, 40),
            )
        })
        .collect();
    // Kill worker 0 once it has committed some steps (its runs are mid-way).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let commits = read_journal(&journal_path)
            .iter()
            .filter(|l| matches!(l, Line::Commit { worker: 0, .. }))
            .count();
        if commits >= 40 {
            break;
        }
        assert!(Instant::now() < deadline, "worker 0 made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = Instant::now();
    workers[0].kill();
    let unfinished = 30 - db.count("status = 'completed'").await;
    println!("killed worker 0 with {unfinished} runs unfinished");
    db.wait_count("status = 'completed'", 30, Duration::from_secs(90))
        .await;
    println!(
        "all 30 runs completed {:?} after the kill",
        killed_at.elapsed()
    );
    assert_eq!(db.count("true").await, 30, "exactly one run per job");
    let lines = read_journal(&journal_path);
    check_exactly_once(&lines, 0..30, STEPS);
    let taken_over = lines
        .iter()
        .filter(|l| matches!(l, Line::Commit { run, worker, .. } if *run < 10 && *worker != 0))
        .count();
    assert!(
        taken_over > 0,
        "no run of worker 0 was finished by another worker"
    );
    for (run, values) in db.outputs().await {
        assert_eq!(values.len(), STEPS as usize, "run {run}");
        for (i, v) in values.iter().enumerate() {
            assert_eq!(v / 1000, i as u64, "run {run} step {i}");
        }
    }
    println!(
        "killed_worker: 30 runs, {} step executions for {} steps, {taken_over} commits of worker 0's runs by others",
        lines
            .iter()
            .filter(|l| matches!(l, Line::Exec { .. }))
            .count(),
        30 * STEPS
    );
    for w in workers.drain(1..) {
        w.stop();
    }
}

async fn frozen_worker(dir: &Path) {
    const STEPS: u32 = 12;
    let schema = TempSchema::new();
    let journal_path = dir.join("journal-freeze");
    let db = Db::connect(&schema).await;
    let a = Worker::start(1, &schema, &journal_path, &jobs(100..101, STEPS, 150));
    let b = Worker::start(2, &schema, &journal_path, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_journal(&journal_path)
        .iter()
        .filter(|l| matches!(l, Line::Commit { worker: 1, .. }))
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "worker 1 made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.signal("STOP");
    // Past the lease, until the other worker has taken the run over.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !read_journal(&journal_path)
        .iter()
        .any(|l| matches!(l, Line::Commit { worker: 2, .. }))
    {
        assert!(
            Instant::now() < deadline,
            "worker 2 never took the frozen run over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let continued_at = read_journal(&journal_path).len();
    a.signal("CONT");
    db.wait_count("status = 'completed'", 1, Duration::from_secs(60))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read_journal(&journal_path)[continued_at..].iter().any(|l| {
        matches!(
            l,
            Line::Cancelled {
                run: 100,
                worker: 1
            }
        )
    }) {
        assert!(
            Instant::now() < deadline,
            "the frozen worker's handler never saw cancelled(): {:?}",
            read_journal(&journal_path)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = read_journal(&journal_path);
    assert!(
        !lines[continued_at..]
            .iter()
            .any(|l| matches!(l, Line::Commit { worker: 1, .. })),
        "the frozen worker committed after it was continued: {lines:?}"
    );
    check_exactly_once(&lines, 100..101, STEPS);
    let (_, values) = db.outputs().await.remove(0);
    let first_of_b = values.iter().position(|v| v % 1000 == 2).unwrap();
    assert!(
        values[first_of_b..].iter().all(|v| v % 1000 == 2),
        "no result of the frozen worker after the takeover: {values:?}"
    );
    println!(
        "frozen_worker: worker 1 computed steps 0..{first_of_b}, worker 2 the rest; worker 1 saw cancelled() and committed nothing after SIGCONT"
    );
    a.stop();
    b.stop();
}

async fn one_run_per_key(dir: &Path) {
    let schema = TempSchema::new();
    let journal_path = dir.join("journal-key");
    let db = Db::connect(&schema).await;
    let workers: Vec<Worker> = (0..3)
        .map(|w| Worker::start(w, &schema, &journal_path, &[]))
        .collect();
    let client = reqwest::Client::new();
    let body = serde_json::json!({"run": 200, "steps": 3, "step_ms": 20});
    let mut posts = Vec::new();
    for w in &workers {
        for _ in 0..20 {
            let url = format!("http://127.0.0.1:{}/tasks/cluster-steps", w.port);
            let request = client.post(url).json(&body);
            posts.push(tokio::spawn(async move {
                let mut response = request.send().await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                let mut text = String::new();
                while !text.contains("event: ready")
                    || !text[text.find("event: ready").unwrap()..].contains("\n\n")
                {
                    let chunk = response
                        .chunk()
                        .await
                        .unwrap()
                        .expect("the stream ended before `ready`");
                    text.push_str(&String::from_utf8_lossy(&chunk));
                }
                let data = text[text.find("event: ready").unwrap()..]
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap()
                    .to_owned();
                serde_json::from_str::<serde_json::Value>(&data).unwrap()
            }));
        }
    }
    let mut readies = Vec::new();
    for post in posts {
        readies.push(post.await.unwrap());
    }
    let keys: std::collections::HashSet<&str> = readies
        .iter()
        .map(|r| r["idempotency_key"].as_str().unwrap())
        .collect();
    let created = readies.iter().filter(|r| r["attached"] == false).count();
    println!(
        "one_run_per_key: 60 POSTs over 3 processes, {} key(s), {created} created",
        keys.len()
    );
    assert_eq!(keys.len(), 1, "every response names the same key");
    assert_eq!(created, 1, "exactly one response says attached: false");
    assert_eq!(db.count("true").await, 1, "exactly one run");
    for w in workers {
        w.stop();
    }
}

async fn global_limit(dir: &Path) {
    const LIMIT: usize = 4;
    let schema = TempSchema::new();
    let journal_path = dir.join("journal-limit");
    let db = Db::connect(&schema).await;
    let workers: Vec<Worker> = [(0, 0..7), (1, 7..14), (2, 14..20)]
        .into_iter()
        .map(|(w, runs)| Worker::start_with(w, &schema, &journal_path, &jobs(runs, 4, 40), LIMIT))
        .collect();
    db.wait_count("status = 'completed'", 20, Duration::from_secs(90))
        .await;
    let lines = read_journal(&journal_path);
    let (mut now, mut most) = (0usize, 0usize);
    let mut on_worker = [0usize; 3];
    for line in &lines {
        match *line {
            Line::Enter { worker, .. } => {
                now += 1;
                most = most.max(now);
                on_worker[worker as usize] += 1;
            }
            Line::Leave { .. } => now -= 1,
            _ => {}
        }
    }
    println!(
        "global_limit: 20 runs over 3 processes with max_concurrent({LIMIT}) each: at most {most} executing at once; attempts per worker {on_worker:?}"
    );
    assert!(
        most <= LIMIT,
        "{most} runs executed at once across the processes, limit {LIMIT}"
    );
    assert_eq!(most, LIMIT, "the limit was used (not a serial run)");
    check_exactly_once(&lines, 0..20, 4);
    for w in workers {
        w.stop();
    }
}

/// A TCP proxy to PostgreSQL that can cut every connection through it.
struct Proxy {
    port: u16,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                held.lock().unwrap().push(pipe.abort_handle());
            }
        });
        Self { port, conns }
    }

    /// Closes every connection through the proxy (both directions, at once).
    fn cut(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let n = conns.len();
        for c in conns.drain(..) {
            c.abort();
        }
        n
    }
}

async fn queued_runs_move(dir: &Path) {
    const STEPS: u32 = 4;
    let schema = TempSchema::new();
    let journal_path = dir.join("journal-queue");
    let db = Db::connect(&schema).await;
    let busy = Worker::start_with(0, &schema, &journal_path, &jobs(600..606, STEPS, 100), 1);
    let idle = Worker::start(1, &schema, &journal_path, &[]);
    db.wait_count("status = 'completed'", 6, Duration::from_secs(60))
        .await;
    let lines = read_journal(&journal_path);
    check_exactly_once(&lines, 600..606, STEPS);
    let ran_on = |worker: u32| {
        lines
            .iter()
            .filter(|l| matches!(l, Line::Enter { worker: w, .. } if *w == worker))
            .count()
    };
    println!(
        "queued_runs_move: 6 runs queued on a process with 1 slot: {} ran there, {} on the idle process",
        ran_on(0),
        ran_on(1)
    );
    assert!(
        ran_on(1) >= 3,
        "the idle process took the queued work: {lines:?}"
    );
    assert_eq!(ran_on(0) + ran_on(1), 6, "each run started once");
    busy.stop();
    idle.stop();
}

async fn client_moves(dir: &Path) {
    // The bridge's default grace.
    const GRACE: Duration = Duration::from_secs(5);
    let schema = TempSchema::new();
    let journal_path = dir.join("journal-moves");
    let db = Db::connect(&schema).await;
    let a = Worker::start(0, &schema, &journal_path, &[]);
    let b = Worker::start(1, &schema, &journal_path, &[]);
    let client = reqwest::Client::new();
    let started = client
        .post(format!("http://127.0.0.1:{}/tasks/cluster-steps", a.port))
        .json(&serde_json::json!({"run": 500, "steps": 300, "step_ms": 100}))
        .send()
        .await
        .unwrap();
    let (mut on_a, reader_a) = read_frames_until_aborted(started);
    let ready = next_frame(&mut on_a, "ready").await;
    let ik = serde_json::from_str::<serde_json::Value>(&ready.data).unwrap()["idempotency_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = next_frame(&mut on_a, "a step on A").await;
    let moved = client
        .get(format!("http://127.0.0.1:{}/tasks/{ik}/events", b.port))
        .header("Last-Event-ID", first.id.unwrap().to_string())
        .send()
        .await
        .unwrap();
    let (mut on_b, reader_b) = read_frames_until_aborted(moved);
    next_frame(&mut on_b, "a step on B").await;
    // The client leaves A; B still streams: past A's grace the run still runs.
    reader_a.abort();
    drop(on_a);
    tokio::time::sleep(GRACE + Duration::from_millis(1500)).await;
    assert_eq!(
        db.status_of_only_run().await,
        ("running".to_owned(), None),
        "the run kept going while its client streamed from B"
    );
    // The client leaves B too: after the grace, B stops the run.
    reader_b.abort();
    drop(on_b);
    let deadline = Instant::now() + GRACE + Duration::from_secs(10);
    loop {
        let now = db.status_of_only_run().await;
        if now.0 == "suspended" {
            assert_eq!(now.1.as_deref(), Some("\"client_disconnected\""));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run was never stopped: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "client_moves: the run survived A's grace while its client streamed from B, and B stopped it once that client left"
    );
    a.stop();
    b.stop();
}

async fn connection_cut(dir: &Path) {
    const STEPS: u32 = 25;
    let schema = TempSchema::new();
    let journal_path = dir.join("journal-cut");
    let db = Db::connect(&schema).await;
    let proxy = Proxy::start().await;
    let through_proxy = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port);
    let a = Worker::spawn(
        0,
        &schema,
        &journal_path,
        &jobs(400..403, STEPS, 40),
        50,
        Some(through_proxy),
    );
    let b = Worker::start(1, &schema, &journal_path, &[]);
    // Follow every run from B, from its first event.
    let client = reqwest::Client::new();
    let iks: Vec<String> = db
        .client
        .query(
            &format!("SELECT ik FROM {}.runs ORDER BY id", db.schema),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(iks.len(), 3);
    let mut followers = Vec::new();
    for ik in &iks {
        let r = client
            .get(format!("http://127.0.0.1:{}/tasks/{ik}/events", b.port))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        followers.push(read_frames(r));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_journal(&journal_path)
        .iter()
        .filter(|l| matches!(l, Line::Commit { worker: 0, .. }))
        .count()
        < 10
    {
        assert!(Instant::now() < deadline, "worker 0 made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cut = proxy.cut();
    println!("connection_cut: cut {cut} connections of worker 0 mid-run");
    // Worker 0's store fails stop: new work is refused with 503, never half-accepted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client
            .post(format!("http://127.0.0.1:{}/tasks/cluster-steps", a.port))
            .json(&serde_json::json!({"run": 499, "steps": 1, "step_ms": 1}))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "worker 0 kept accepting work: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.wait_count("status = 'completed'", 3, Duration::from_secs(60))
        .await;
    assert_eq!(db.count("true").await, 3, "the refused POST made no run");
    let lines = read_journal(&journal_path);
    check_exactly_once(&lines, 400..403, STEPS);
    for (run, values) in db.outputs().await {
        assert_eq!(values.len(), STEPS as usize, "run {run}");
    }
    for (k, follower) in followers.iter_mut().enumerate() {
        let frames = frames_until(follower, "completed").await;
        assert_consecutive(&frames, 1, &format!("the follower of run {k} on worker 1"));
    }
    let finished_by_b = lines
        .iter()
        .filter(|l| matches!(l, Line::Commit { worker: 1, .. }))
        .count();
    println!(
        "connection_cut: worker 0 fail-stopped (503 storage_unavailable); worker 1 finished its 3 runs ({finished_by_b} step commits, replays included); the followers saw every event"
    );
    a.stop();
    b.stop();
}

/// One SSE frame: its id (if any), event name and arrival time.
#[derive(Debug, Clone)]
struct Frame {
    id: Option<u64>,
    event: String,
    data: String,
    at: Instant,
}

/// Reads an SSE response into frames on a channel, in a task of its own.
fn read_frames(response: reqwest::Response) -> tokio::sync::mpsc::UnboundedReceiver<Frame> {
    read_frames_until_aborted(response).0
}

/// [`read_frames`], and the reading task: aborting it closes the connection (the client
/// leaves).
fn read_frames_until_aborted(
    mut response: reqwest::Response,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Frame>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut frame = Frame {
                    id: None,
                    event: String::new(),
                    data: String::new(),
                    at: Instant::now(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        frame.id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        frame.event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        frame.data = v.to_owned();
                    }
                }
                if !frame.event.is_empty() && tx.send(frame).is_err() {
                    return;
                }
            }
        }
    });
    (rx, reader)
}

async fn next_frame(frames: &mut tokio::sync::mpsc::UnboundedReceiver<Frame>, what: &str) -> Frame {
    tokio::time::timeout(Duration::from_secs(30), frames.recv())
        .await
        .unwrap_or_else(|_| panic!("no frame within 30 s while waiting for {what}"))
        .unwrap_or_else(|| panic!("the stream ended while waiting for {what}"))
}

/// Reads frames until `event`; returns them all (that one last).
async fn frames_until(
    frames: &mut tokio::sync::mpsc::UnboundedReceiver<Frame>,
    event: &str,
) -> Vec<Frame> {
    let mut out = Vec::new();
    loop {
        let frame = next_frame(frames, event).await;
        let done = frame.event == event;
        out.push(frame);
        if done {
            return out;
        }
    }
}

fn assert_consecutive(frames: &[Frame], first: u64, what: &str) {
    let ids: Vec<u64> = frames.iter().filter_map(|f| f.id).collect();
    let expected: Vec<u64> = (first..first + ids.len() as u64).collect();
    assert_eq!(
        ids, expected,
        "{what}: ids must be consecutive from {first}"
    );
}

async fn across_processes(dir: &Path) {
    const RUN: u32 = 300;
    let schema = TempSchema::new();
    let journal_path = dir.join("journal-across");
    let workers: Vec<Worker> = (0..3)
        .map(|w| Worker::start(w, &schema, &journal_path, &[]))
        .collect();
    let url = |w: usize, path: &str| format!("http://127.0.0.1:{}{path}", workers[w].port);
    let client = reqwest::Client::new();
    let started = client
        .post(url(0, "/tasks/cluster-steps"))
        .json(&serde_json::json!({"run": RUN, "steps": 40, "step_ms": 60}))
        .send()
        .await
        .unwrap();
    assert!(started.status().is_success());
    let mut on_a = read_frames(started);
    let ready = next_frame(&mut on_a, "ready").await;
    let ik = serde_json::from_str::<serde_json::Value>(&ready.data).unwrap()["idempotency_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut seen_on_a = Vec::new();
    while seen_on_a.len() < 3 {
        seen_on_a.push(next_frame(&mut on_a, "progress on A").await);
    }
    assert_consecutive(&seen_on_a, 1, "A's first frames");
    // Re-attach on B after id 3: exactly 4, 5, ... arriving live from A's commits.
    let reattached = client
        .get(url(1, &format!("/tasks/{ik}/events")))
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    assert!(reattached.status().is_success());
    let mut on_b = read_frames(reattached);
    let mut seen_on_b = Vec::new();
    while seen_on_b.iter().filter(|f: &&Frame| f.id.is_some()).count() < 4 {
        seen_on_b.push(next_frame(&mut on_b, "live frames on B").await);
    }
    assert_consecutive(&seen_on_b, 4, "B's re-attached stream");
    // Stop through B; A's stream shows `suspended` within 1 s.
    let stop_sent = Instant::now();
    let stopped = client
        .post(url(1, &format!("/tasks/{ik}/stop")))
        .json(&serde_json::json!({"reason": "from B"}))
        .send()
        .await
        .unwrap();
    assert!(stopped.status().is_success(), "stop: {}", stopped.status());
    let until_suspended = frames_until(&mut on_a, "suspended").await;
    let took = until_suspended.last().unwrap().at - stop_sent;
    seen_on_a.extend(until_suspended);
    println!("across_processes: stop sent to B, `suspended` on A's stream after {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "suspended reached A after {took:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read_journal(&journal_path).iter().any(|l| {
        matches!(
            l,
            Line::Cancelled {
                run: RUN,
                worker: 0
            }
        )
    }) {
        assert!(
            Instant::now() < deadline,
            "A's handler never saw cancelled()"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // `suspended` is the run's newest event: it ends both streams.
    seen_on_b.extend(frames_until(&mut on_b, "suspended").await);
    assert_consecutive(&seen_on_a, 1, "A's stream to `suspended`");
    assert_consecutive(&seen_on_b, 4, "B's stream to `suspended`");
    let suspended_id = seen_on_a.last().unwrap().id.unwrap();
    assert_eq!(seen_on_b.last().unwrap().id, Some(suspended_id));
    // Resume through C: it runs there to the end; a client re-attached on A after
    // `suspended` gets exactly the rest.
    let resumed = client
        .post(url(2, &format!("/tasks/{ik}/resume")))
        .send()
        .await
        .unwrap();
    assert!(
        resumed.status().is_success(),
        "resume: {}",
        resumed.status()
    );
    let again = client
        .get(url(0, &format!("/tasks/{ik}/events")))
        .header("Last-Event-ID", suspended_id.to_string())
        .send()
        .await
        .unwrap();
    let rest = frames_until(&mut read_frames(again), "completed").await;
    assert_consecutive(
        &rest,
        suspended_id + 1,
        "the stream re-attached on A after the resume",
    );
    let mut names: Vec<&str> = seen_on_a
        .iter()
        .chain(&rest)
        .filter(|f| f.id.is_some())
        .map(|f| f.event.as_str())
        .collect();
    names.dedup();
    assert_eq!(
        names,
        ["step", "suspended", "step", "completed"],
        "{names:?}"
    );
    let lines = read_journal(&journal_path);
    check_exactly_once(&lines, RUN..RUN + 1, 40);
    assert!(
        lines.iter().any(|l| matches!(
            l,
            Line::Exec {
                run: RUN,
                worker: 2,
                ..
            }
        )),
        "the resumed run executed on C"
    );
    println!(
        "across_processes: {} frames on A to `suspended`, {} on B (from id 4), {} after the resume on C",
        seen_on_a.len(),
        seen_on_b.len(),
        rest.len()
    );
    for w in workers {
        w.stop();
    }
}

fn main() {
    if std::env::var(WORKER).is_ok() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(worker());
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let dir: PathBuf = temp.path().to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `cargo test --test cluster -- <part>` runs the parts whose name contains `<part>`.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |part: &str| filter.as_deref().is_none_or(|f| part.contains(f));
    let started = Instant::now();
    let mut ran = 0;
    macro_rules! part {
        ($name:ident) => {
            if wanted(stringify!($name)) {
                runtime.block_on($name(&dir));
                ran += 1;
            }
        };
    }
    part!(one_run_per_key);
    part!(across_processes);
    part!(global_limit);
    part!(connection_cut);
    part!(client_moves);
    part!(queued_runs_move);
    part!(frozen_worker);
    part!(killed_worker);
    assert!(ran > 0, "no cluster part matches {filter:?}");
    println!("cluster: {ran} parts passed in {:?}", started.elapsed());
}
