//! Operator console benchmark: how long its JSON routes take with 100 runs in the store and
//! with 100,000, over a real socket, in one run.
//!
//! ```text
//! cargo bench -p taskflow-tests --bench console            # redb
//! TASKFLOW_BENCH_STORE=postgres cargo bench -p taskflow-tests --bench console
//! ```
//!
//! Each store is filled through the engine (runs of a task that completes at once, owned by
//! 100 users, 64 starts in flight), then served with `console_with`. For each route it prints
//! the median and p99 of 200 requests (keep-alive, one client) with the small store and the
//! large one, and their ratio: the first page must cost about the same whatever the store
//! holds (target: ≤ 2×), because it is read by index and stops at the page's size. It asserts
//! nothing; the numbers go to BENCHMARKS.md.

// A failed request or start ends the benchmark with the error itself: nothing to recover.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use taskflow::axum::{ConsoleAccess, ProxyTrust, console_with};
use taskflow::prelude::*;
use taskflow::{UserContext, UserId};

const SMALL: u32 = 100;
const LARGE: u32 = 100_000;
const USERS: u32 = 100;
const REQUESTS: usize = 200;
const IN_FLIGHT: u32 = 64;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Job {
    n: u32,
}

/// Completes at once with one step, so each run leaves a full record behind.
#[task(name = "bench-job", max_attempts = 1)]
async fn bench_job(ctx: TaskContext<NoEvents>, job: Job) -> Result<u32, TaskError> {
    ctx.step("only", || async move { Ok::<_, TaskError>(job.n) })
        .await
}

/// Starts `n` runs (owner `u{i % USERS}`) and waits for all of them.
async fn fill(flow: &TaskFlow, n: u32) {
    let started = Instant::now();
    let (mut next, mut done) = (0u32, 0u32);
    let mut running = tokio::task::JoinSet::new();
    while next < n || !running.is_empty() {
        while next < n && running.len() < IN_FLIGHT as usize {
            let flow = flow.clone();
            let i = next;
            next += 1;
            running.spawn(async move {
                let user = UserContext::new(UserId::new(format!("u{}", i % USERS)).unwrap());
                let scope = flow.as_user(&user);
                let run = scope.start(bench_job, Job { n: i }).await.unwrap();
                scope.wait(&run).await.unwrap();
            });
        }
        running.join_next().await.unwrap().unwrap();
        done += 1;
        if done.is_multiple_of(10_000) {
            eprintln!(
                "  {done} of {n} runs ({:.0} runs/s)",
                f64::from(done) / started.elapsed().as_secs_f64()
            );
        }
    }
}

async fn build(store: &Store) -> TaskFlow {
    store
        .builder()
        .register(bench_job)
        .max_concurrent(IN_FLIGHT as usize)
        .start_rate_per_minute(100_000_000)
        .start_rate_per_minute_per_user(100_000_000)
        .max_concurrent_per_user(IN_FLIGHT as usize)
        .build()
        .await
        .unwrap()
}

enum Store {
    Redb(taskflow::testing::TempDataDir),
    Postgres(taskflow::testing::TempSchema),
}

impl Store {
    fn new() -> Self {
        match std::env::var("TASKFLOW_BENCH_STORE").as_deref() {
            Ok("postgres") => Self::Postgres(taskflow::testing::TempSchema::new()),
            _ => Self::Redb(taskflow::testing::TempDataDir::new()),
        }
    }

    fn builder(&self) -> taskflow::TaskFlowBuilder {
        match self {
            Self::Redb(d) => d.builder(),
            Self::Postgres(s) => s.builder(),
        }
    }
}

async fn serve(flow: &TaskFlow) -> String {
    let app = axum::Router::new().nest(
        "/console",
        console_with(flow.clone(), ConsoleAccess::users(["admin"]))
            .layer(ProxyTrust::new().layer(flow)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// Median and p99 of `REQUESTS` GETs of `path`, in microseconds, and the rows of the answer.
async fn time(http: &reqwest::Client, base: &str, path: &str) -> (u64, u64, usize) {
    let mut took = Vec::with_capacity(REQUESTS);
    let mut rows = 0;
    for i in 0..REQUESTS + 20 {
        let t = Instant::now();
        let res = http
            .get(format!("{base}{path}"))
            .header("x-forwarded-user", "admin")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        rows = body["runs"].as_array().map_or(0, Vec::len);
        if i >= 20 {
            took.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
    }
    took.sort_unstable();
    (took[took.len() / 2], took[took.len() * 99 / 100], rows)
}

const ROUTES: [(&str, &str); 7] = [
    ("first page (50)", "/console/api/runs?limit=50"),
    ("page 2 (cursor)", "CURSOR"),
    (
        "state=completed",
        "/console/api/runs?state=completed&limit=50",
    ),
    (
        "state=running (none)",
        "/console/api/runs?state=running&limit=50",
    ),
    ("owner=u7", "/console/api/runs?owner=u7&limit=50"),
    ("key prefix (2 chars)", "/console/api/runs?key=Ab&limit=50"),
    ("counts by state", "/console/api/counts"),
];

async fn measure(n: u32) -> Vec<(u64, u64, usize)> {
    let store = Store::new();
    let flow = build(&store).await;
    eprintln!("filling a store with {n} runs");
    let t = Instant::now();
    fill(&flow, n).await;
    eprintln!("  {n} runs in {:.1} s", t.elapsed().as_secs_f64());
    let base = serve(&flow).await;
    let http = reqwest::Client::new();
    let first: serde_json::Value = http
        .get(format!("{base}/console/api/runs?limit=50"))
        .header("x-forwarded-user", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"].as_str().unwrap_or("1").to_owned();
    let mut out = Vec::new();
    for (_, path) in ROUTES {
        let path = if path == "CURSOR" {
            format!("/console/api/runs?limit=50&cursor={cursor}")
        } else {
            path.to_owned()
        };
        out.push(time(&http, &base, &path).await);
    }
    flow.shutdown().await.unwrap();
    out
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = match std::env::var("TASKFLOW_BENCH_STORE").as_deref() {
        Ok("postgres") => "PostgreSQL",
        _ => "redb",
    };
    eprintln!("console benchmark on {store}: {SMALL} runs, then {LARGE}");
    let small = runtime.block_on(measure(SMALL));
    let large = runtime.block_on(measure(LARGE));
    println!("\nconsole routes on {store}, {REQUESTS} GETs each over loopback (µs):");
    println!(
        "{:<22} {:>10} {:>10} {:>6} {:>12} {:>12} {:>6} {:>8}",
        "route", "p50 @100", "p99 @100", "rows", "p50 @100k", "p99 @100k", "rows", "ratio"
    );
    for ((name, _), ((sp50, sp99, srows), (lp50, lp99, lrows))) in
        ROUTES.iter().zip(small.iter().zip(&large))
    {
        #[allow(clippy::cast_precision_loss)]
        let ratio = *lp50 as f64 / (*sp50).max(1) as f64;
        println!(
            "{name:<22} {sp50:>10} {sp99:>10} {srows:>6} {lp50:>12} {lp99:>12} {lrows:>6} {ratio:>7.2}×"
        );
    }
    println!("(rows: runs in the answer; counts by state has none. The ratio compares p50s.)");
}
