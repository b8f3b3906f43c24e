//! PostgreSQL store benchmark: taskflow's durable steps against raw PostgreSQL commits on the
//! same server, in one run.
//!
//! ```text
//! cargo bench -p taskflow-tests --bench postgres
//! ```
//!
//! Baselines, on a table of their own in the benchmark's schema, 256-byte payloads,
//! `synchronous_commit` as the server has it:
//! - raw single-row `INSERT` commit latency, one client, sequential (the floor of a step);
//! - raw pipelined-insert throughput: 64 writers issuing autocommit inserts concurrently on
//!   one connection (tokio-postgres pipelines them; one backend runs them one after another,
//!   each commit waiting for its WAL flush);
//! - raw throughput with 64 connections, one writer each (the server group-commits the WAL
//!   flushes of concurrent backends: the ceiling for 64 writers).
//!
//! taskflow on PostgreSQL: step latency of one task (p50/p99, ratio to the raw p50), round
//! trips per step (commit statements per step: the store sends one `apply_group` call per
//! group), steps/s with 64 tasks in one process (ratio to the raw pipelined rate), and
//! steps/s with 1, 2 and 3 processes sharing the schema (child processes of this binary).
//! Raw and taskflow alternate in rounds, since shared machines drift. It prints numbers and
//! ratios and asserts nothing (the targets are in BENCHMARKS.md).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use taskflow::prelude::*;
use taskflow::testing::TempSchema;

const PAYLOAD: usize = 256;
const ROUNDS: u32 = 3;
const LATENCY_SAMPLES: u32 = 400;
const WRITERS: u32 = 64;
const PER_WRITER: u32 = 40;
const CHILD: &str = "TASKFLOW_PG_BENCH_CHILD";

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Steps {
    tag: String,
    steps: u32,
}

/// `steps` sequential steps of 256 bytes each; records each step's latency when asked.
#[task(name = "pg-bench-steps")]
async fn bench_steps(ctx: TaskContext<NoEvents>, s: Steps) -> Result<u32, TaskError> {
    let payload = "x".repeat(PAYLOAD);
    for _ in 0..s.steps {
        let p = payload.clone();
        let t = Instant::now();
        ctx.step("s", || async move { Ok::<_, TaskError>(p) })
            .await?;
        if s.tag.starts_with("latency") {
            LATENCIES.lock().expect("latencies").push(t.elapsed());
        }
    }
    Ok(s.steps)
}

static LATENCIES: std::sync::Mutex<Vec<Duration>> = std::sync::Mutex::new(Vec::new());

fn url() -> String {
    std::env::var(taskflow::testing::TEST_DATABASE_URL)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn raw_client() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// Raw single-row INSERT commits, one after another.
async fn raw_latency(
    client: &tokio_postgres::Client,
    table: &str,
    first: i64,
    h: &mut Histogram<u64>,
) {
    let insert = client
        .prepare(&format!(
            "INSERT INTO {table} (id, payload) VALUES ($1, $2)"
        ))
        .await
        .expect("prepare");
    let payload = "x".repeat(PAYLOAD);
    for i in 0..i64::from(LATENCY_SAMPLES) {
        let t = Instant::now();
        client
            .execute(&insert, &[&(first + i), &payload])
            .await
            .expect("insert");
        h.record(micros(t.elapsed())).expect("record");
    }
}

/// 64 writers, each inserting one row at a time, pipelined on one connection: rows/s.
async fn raw_pipelined(client: &tokio_postgres::Client, table: &str, first: i64) -> f64 {
    let insert = client
        .prepare(&format!(
            "INSERT INTO {table} (id, payload) VALUES ($1, $2)"
        ))
        .await
        .expect("prepare");
    let payload = "x".repeat(PAYLOAD);
    let started = Instant::now();
    let writers = (0..i64::from(WRITERS)).map(|w| {
        let (insert, payload) = (&insert, &payload);
        async move {
            for i in 0..i64::from(PER_WRITER) {
                let id = first + w * i64::from(PER_WRITER) + i;
                client
                    .execute(insert, &[&id, payload])
                    .await
                    .expect("insert");
            }
        }
    });
    futures_util::future::join_all(writers).await;
    f64::from(WRITERS * PER_WRITER) / started.elapsed().as_secs_f64()
}

/// A flow with the default lease and heartbeat settings (not the test ones).
/// 64 writers on 64 connections of their own: rows/s.
async fn raw_connections(clients: &[tokio_postgres::Client], table: &str, first: i64) -> f64 {
    let payload = "x".repeat(PAYLOAD);
    let sql = format!("INSERT INTO {table} (id, payload) VALUES ($1, $2)");
    let started = Instant::now();
    let writers = clients.iter().zip(0..).map(|(client, w): (_, i64)| {
        let (payload, sql) = (&payload, &sql);
        async move {
            let insert = client.prepare(sql).await.expect("prepare");
            for i in 0..i64::from(PER_WRITER) {
                let id = first + w * i64::from(PER_WRITER) + i;
                client
                    .execute(&insert, &[&id, payload])
                    .await
                    .expect("insert");
            }
        }
    });
    futures_util::future::join_all(writers).await;
    f64::from(WRITERS * PER_WRITER) / started.elapsed().as_secs_f64()
}

async fn flow(schema: &TempSchema) -> TaskFlow {
    TaskFlow::builder()
        .postgres(taskflow::store::PgConfig::new(url()).schema(schema.name()))
        .register(bench_steps)
        .max_concurrent(1000)
        .build()
        .await
        .expect("build the flow")
}

/// One task's sequential steps; their latencies.
async fn taskflow_latency(flow: &TaskFlow, round: u32, h: &mut Histogram<u64>) -> (u64, u64) {
    LATENCIES.lock().expect("latencies").clear();
    let before = flow.metrics().wal_commits;
    let run = flow
        .start(
            bench_steps,
            Steps {
                tag: format!("latency-{round}"),
                steps: LATENCY_SAMPLES,
            },
        )
        .await
        .expect("start");
    flow.wait(&run).await.expect("run");
    for d in LATENCIES.lock().expect("latencies").iter() {
        h.record(micros(*d)).expect("record");
    }
    (
        flow.metrics().wal_commits - before,
        u64::from(LATENCY_SAMPLES),
    )
}

/// 64 tasks of `PER_WRITER` steps at once in one flow: steps/s.
async fn taskflow_throughput(flow: &TaskFlow, tag: &str) -> f64 {
    let started = Instant::now();
    let mut runs = Vec::new();
    for w in 0..WRITERS {
        let s = Steps {
            tag: format!("{tag}-{w}"),
            steps: PER_WRITER,
        };
        runs.push(flow.start(bench_steps, s).await.expect("start"));
    }
    for run in &runs {
        flow.wait(run).await.expect("run");
    }
    f64::from(WRITERS * PER_WRITER) / started.elapsed().as_secs_f64()
}

/// A child process: 64 tasks on the shared schema once the parent says go (a line on
/// stdin), then prints its steps/s and the wall time it took.
async fn child(schema: String) {
    let flow = TaskFlow::builder()
        .postgres(taskflow::store::PgConfig::new(url()).schema(schema))
        .register(bench_steps)
        .max_concurrent(1000)
        .build()
        .await
        .expect("child flow");
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("go");
    let tag = format!("child-{}", std::process::id());
    let rate = taskflow_throughput(&flow, &tag).await;
    println!("rate {rate}");
    flow.shutdown().await.expect("shutdown");
}

/// `n` processes, 64 tasks each, started together: total steps/s.
fn processes(schema: &TempSchema, n: usize, round: u32) -> f64 {
    use std::io::{BufRead, BufReader, Write};
    let mut children = Vec::new();
    for _ in 0..n {
        let mut c = std::process::Command::new(std::env::current_exe().expect("exe"))
            .env(CHILD, schema.name())
            .env("TASKFLOW_PG_BENCH_ROUND", round.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn a child");
        let mut out = BufReader::new(c.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("ready");
        assert_eq!(line.trim(), "ready", "child did not start");
        children.push((c, out));
    }
    let started = Instant::now();
    for (c, _) in &mut children {
        writeln!(c.stdin.as_mut().expect("stdin")).expect("go");
    }
    for (c, out) in &mut children {
        let mut line = String::new();
        out.read_line(&mut line).expect("rate");
        assert!(line.starts_with("rate "), "child said {line}");
        c.wait().expect("child exit");
    }
    let total = f64::from(WRITERS * PER_WRITER) * n as f64;
    total / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Ok(schema) = std::env::var(CHILD) {
        runtime.block_on(child(schema));
        return;
    }
    let schema = TempSchema::new();
    let table = format!("\"{}\".bench", schema.name());
    runtime.block_on(async {
        let client = raw_client().await;
        client
            .batch_execute(&format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, payload text NOT NULL)"
            ))
            .await
            .expect("bench table");
        let sync: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .expect("show")
            .get(0);
        println!("PostgreSQL synchronous_commit = {sync}; payload {PAYLOAD} B");
        let flow = flow(&schema).await;
        let (mut raw_h, mut tf_h) = (hist(), hist());
        let (mut commits, mut steps) = (0, 0);
        let (mut raw_rates, mut tf_rates, mut wide_rates) = (Vec::new(), Vec::new(), Vec::new());
        let mut clients = Vec::new();
        for _ in 0..WRITERS {
            clients.push(raw_client().await);
        }
        let mut next_id = 0i64;
        for round in 0..ROUNDS {
            raw_latency(&client, &table, next_id, &mut raw_h).await;
            next_id += i64::from(LATENCY_SAMPLES);
            let (c, s) = taskflow_latency(&flow, round, &mut tf_h).await;
            commits += c;
            steps += s;
            raw_rates.push(raw_pipelined(&client, &table, next_id).await);
            next_id += i64::from(WRITERS * PER_WRITER);
            tf_rates.push(taskflow_throughput(&flow, &format!("tp-{round}")).await);
            wide_rates.push(raw_connections(&clients, &table, next_id).await);
            next_id += i64::from(WRITERS * PER_WRITER);
        }
        let (raw50, raw99) = (raw_h.value_at_quantile(0.5), raw_h.value_at_quantile(0.99));
        let (tf50, tf99) = (tf_h.value_at_quantile(0.5), tf_h.value_at_quantile(0.99));
        println!("raw single-row INSERT commit: p50 {raw50} µs, p99 {raw99} µs");
        println!(
            "taskflow step, one task:       p50 {tf50} µs, p99 {tf99} µs  ({:.2}x the raw p50; target <= 1.5x)",
            tf50 as f64 / raw50 as f64
        );
        println!(
            "round trips per step (commit statements / steps, one task): {:.3} (target 1)",
            commits as f64 / steps as f64
        );
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (raw_rate, tf_rate) = (median(&mut raw_rates), median(&mut tf_rates));
        let wide_rate = median(&mut wide_rates);
        println!("raw pipelined INSERTs, 64 writers, one connection: {raw_rate:.0} rows/s");
        println!("raw INSERTs, 64 writers on 64 connections:        {wide_rate:.0} rows/s");
        println!(
            "taskflow, 64 tasks in one process:                 {tf_rate:.0} steps/s ({:.2}x raw pipelined, target >= 0.5x; {:.2}x the 64-connection ceiling)",
            tf_rate / raw_rate,
            tf_rate / wide_rate
        );
        flow.shutdown().await.expect("shutdown");
    });
    for n in 1..=3 {
        let mut rates: Vec<f64> = (0..ROUNDS).map(|r| processes(&schema, n, r)).collect();
        rates.sort_by(f64::total_cmp);
        println!(
            "taskflow, {n} process(es) x 64 tasks on one schema: {:.0} steps/s (median of {ROUNDS})",
            rates[rates.len() / 2]
        );
    }
}
