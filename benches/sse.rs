//! SSE bridge benchmark, in one run with its baselines:
//!
//! 1. replay of a 100,000-event run to one client, against raw axum streaming the same
//!    pre-made frames (issue 9 target ≥ 0.25×);
//! 2. emit-to-client latency with 1,000 concurrent SSE subscribers, against a raw
//!    `tokio::sync::broadcast` fan-out to 1,000 receivers plus a raw redb commit
//!    (target p99 ≤ 1.5 × (broadcast p99 + commit p99));
//! 3. server memory per idle SSE connection, measured on the demo server process, which runs on
//!    jemalloc (target ≤ 64 KiB; issue 9: ≤ 12 KiB);
//! 4. live burst: one task emitting 100,000 small events as fast as it can to one SSE client
//!    over a real socket: events/s received and fsyncs per 1,000 events (targets ≥ 100,000/s
//!    and ≤ 10), with raw axum streaming pre-made frames as the ceiling;
//! 5. many streams: 500 tasks each emitting one event every 100 ms (phases spread evenly over
//!    the period) to its own SSE client for 20 s: emit→client p50/p99 against a raw
//!    `fdatasync` p99 (target p99 ≤ fdatasync p99 + 1 ms) and events lost (target 0); raw
//!    axum pushing pre-made frames on the same cadence to 500 sockets is the floor of this
//!    load generator, and one loop appending and fdatasyncing the same 5,000 events/s to a
//!    plain file is the durable floor of this disk (what no durable stream can beat here);
//!    the same load then runs on a second flow with the event journal (opt-in)
//!    against the same baselines;
//! 6. the live burst of 4. on the PostgreSQL store (a schema of its own, dropped after):
//!    events/s and commit round trips per 1,000 events.
//!
//! The 1,000-subscriber fan-out runs three rounds against raw axum fan-out (issue 9 target:
//! p99 ≤ 1.2× raw), each reported.
//!
//! ```text
//! cargo bench -p taskflow-tests --bench sse   # needs the demo built (cargo build --release --examples)
//! TASKFLOW_BENCH_PHASES=burst,streams cargo bench -p taskflow-tests --bench sse   # a subset
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod disk;

const REPLAY_EVENTS: u32 = 100_000;
const SUBSCRIBERS: usize = 1_000;
const LATENCY_EVENTS: u32 = 100;
const BURST_EVENTS: u32 = 100_000;
const STREAMS: usize = 500;
const FAN_OUT_ROUNDS: u32 = 3;
/// The many-streams load: `STREAMS` runs × 10 events/s, for `stream_events()` × 100 ms.
const STREAM_RATE: u64 = STREAMS as u64 * 10;

/// How long the many-streams phase runs: `TASKFLOW_BENCH_STREAM_SECONDS` (default 20, the
/// issue's length; longer runs include the event journal's 30 s durable commit of the
/// database and the kernel's writeback of what the fold wrote).
fn stream_length() -> Duration {
    static SECONDS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    Duration::from_secs(*SECONDS.get_or_init(|| {
        std::env::var("TASKFLOW_BENCH_STREAM_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&s| s > 0)
            .unwrap_or(20)
    }))
}

/// Events each many-streams run emits, 100 ms apart.
fn stream_events() -> u32 {
    u32::try_from(stream_length().as_secs() * 10).expect("a bench shorter than 13 years")
}
/// About what one many-streams event costs in a log: its key, run and encoded payload.
const FLOOR_EVENT_BYTES: usize = 100;
/// The spacings between the durable floor's fdatasyncs tried (µs; 0: flush whenever ready).
const FLOOR_SPACINGS_US: [u64; 3] = [0, 500, 1_000];

fn now_micros() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_micros(),
    )
    .expect("fits")
}

#[events]
#[derive(Debug)]
enum Bench {
    Tick { i: u32, t: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
struct EmitIn {
    n: u32,
    gap_ms: u64,
    /// Wait until `START` reaches this value (0: start at once).
    start_after: u32,
    /// Makes each run's input, and so its idempotency key, distinct.
    run: u32,
    /// Delay before the first event, so runs with one cadence do not all emit at once.
    phase_ms: u64,
}

/// Starting signal for runs that wait for their clients to attach.
static START: std::sync::LazyLock<tokio::sync::watch::Sender<u32>> =
    std::sync::LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// Emits `n` events, each stamped with the wall-clock time of its emit call.
#[task]
async fn emitter(ctx: TaskContext<Bench>, input: EmitIn) -> Result<(), TaskError> {
    if input.start_after > 0 {
        let _ = START
            .subscribe()
            .wait_for(|v| *v >= input.start_after)
            .await;
    }
    let started = tokio::time::Instant::now() + Duration::from_millis(input.phase_ms);
    tokio::time::sleep_until(started).await;
    for i in 0..input.n {
        ctx.emit(Bench::Tick { i, t: now_micros() }).await?;
        if input.gap_ms > 0 {
            // A fixed cadence, whatever each emit cost.
            let next = started + Duration::from_millis(input.gap_ms) * (i + 1);
            tokio::time::sleep_until(next).await;
        }
        if input.n > 1_000 && i % 10_000 == 9_999 {
            eprintln!("  emitted {} / {}", i + 1, input.n);
        }
    }
    Ok(())
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds")
}

/// Sends a GET and counts SSE frames (blank-line separated) until the body ends.
async fn count_frames(addr: std::net::SocketAddr, path: &str) -> (usize, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 256 * 1024];
    let mut frames = 0;
    let mut tail = [0u8; 1];
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        // Frames end with "\n\n"; chunked encoding never puts "\n\n" elsewhere here.
        let chunk = &buf[..n];
        if tail[0] == b'\n' && chunk[0] == b'\n' {
            frames += 1;
        }
        frames += chunk.windows(2).filter(|w| w == b"\n\n").count();
        tail[0] = chunk[n - 1];
    }
    (frames, start.elapsed())
}

async fn replay(flow: &TaskFlow, addr: std::net::SocketAddr) -> (f64, f64) {
    eprintln!("[1/3] replay: writing a run of {REPLAY_EVENTS} events");
    let run = flow
        .start(
            emitter,
            EmitIn {
                n: REPLAY_EVENTS,
                gap_ms: 0,
                start_after: 0,
                run: 0,
                phase_ms: 0,
            },
        )
        .await
        .expect("start");
    flow.wait(&run).await.expect("run");
    let path = format!("/api/tasks/{}/events", run.idempotency_key);
    let mut ours = Vec::new();
    let mut raw = Vec::new();
    for round in 0..3 {
        let (frames, took) = count_frames(addr, &path).await;
        // ready + 100,000 ticks + completed (the retry frame counts too).
        assert!(frames as u32 >= REPLAY_EVENTS, "only {frames} frames");
        ours.push(f64::from(REPLAY_EVENTS) / took.as_secs_f64());
        let (frames, took) = count_frames(addr, "/raw").await;
        assert!(frames as u32 >= REPLAY_EVENTS);
        raw.push(f64::from(REPLAY_EVENTS) / took.as_secs_f64());
        eprintln!(
            "  round {}: taskflow {:.0} events/s, raw axum {:.0} events/s",
            round + 1,
            ours[round],
            raw[round]
        );
    }
    ours.sort_by(f64::total_cmp);
    raw.sort_by(f64::total_cmp);
    (ours[1], raw[1])
}

fn raw_frames() -> Body {
    let stream = futures_util::stream::iter((1..=REPLAY_EVENTS + 2).map(|i| {
        let frame = format!("id: {i}\nevent: tick\ndata: {{\"i\":{i},\"t\":1795689365123456}}\n\n");
        Ok::<_, std::convert::Infallible>(Bytes::from(frame))
    }));
    Body::from_stream(stream)
}

/// Opens `SUBSCRIBERS` SSE clients on `path`, waits until all saw `ready`, calls `go`, and
/// records the emit→parse latency of every `"t":<micros>` they receive until their streams end.
async fn measure_clients<F, Fut>(addr: std::net::SocketAddr, path: &str, go: F) -> Histogram<u64>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let paths = vec![path.to_owned(); SUBSCRIBERS];
    measure_clients_on(addr, &paths, go).await.0
}

/// One SSE client per path (as [`measure_clients`]); also returns the events each received.
async fn measure_clients_on<F, Fut>(
    addr: std::net::SocketAddr,
    paths: &[String],
    go: F,
) -> (Histogram<u64>, Vec<u64>)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let hist = Arc::new(std::sync::Mutex::new(hist()));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(paths.len());
    let mut clients = Vec::new();
    for path in paths {
        let path = path.clone();
        let hist = hist.clone();
        let ready = ready_tx.clone();
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut pending = Vec::new();
            let mut buf = vec![0u8; 16 * 1024];
            let mut signalled = false;
            let mut received = 0u64;
            loop {
                let n = stream.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                let at = now_micros();
                pending.extend_from_slice(&buf[..n]);
                if !signalled && pending.windows(12).any(|w| w == b"event: ready") {
                    signalled = true;
                    let _ = ready.send(()).await;
                }
                // Every complete `"t":<micros>` in the buffer is one delivered event.
                let mut h = hist.lock().expect("lock");
                while let Some(pos) = pending.windows(4).position(|w| w == b"\"t\":") {
                    let digits: Vec<u8> = pending[pos + 4..]
                        .iter()
                        .copied()
                        .take_while(u8::is_ascii_digit)
                        .collect();
                    if pos + 4 + digits.len() >= pending.len() {
                        break; // the number may continue in the next read
                    }
                    let t: u64 = std::str::from_utf8(&digits)
                        .expect("ascii")
                        .parse()
                        .expect("number");
                    h.record(at.saturating_sub(t).max(1)).expect("record");
                    received += 1;
                    pending.drain(..pos + 4 + digits.len());
                }
            }
            received
        }));
    }
    drop(ready_tx);
    for _ in 0..paths.len() {
        ready_rx.recv().await.expect("subscriber ready");
    }
    go().await;
    let mut received = Vec::new();
    for c in clients {
        received.push(c.await.expect("client"));
    }
    let hist = Arc::try_unwrap(hist)
        .expect("clients done")
        .into_inner()
        .expect("lock");
    (hist, received)
}

/// Moves the start signal on and returns its new value.
fn next_start() -> u32 {
    START.send_modify(|v| *v += 1);
    *START.borrow()
}

/// taskflow: `SUBSCRIBERS` SSE clients on one run that emits `LATENCY_EVENTS` stamped events.
async fn fan_out(flow: &TaskFlow, addr: std::net::SocketAddr, round: u32) -> Histogram<u64> {
    let gate = *START.borrow() + 1;
    let run = flow
        .start(
            emitter,
            EmitIn {
                n: LATENCY_EVENTS,
                gap_ms: 20,
                start_after: gate,
                run: round,
                phase_ms: 0,
            },
        )
        .await
        .expect("start");
    let path = format!("/api/tasks/{}/events", run.idempotency_key);
    measure_clients(addr, &path, || async {
        eprintln!("[2/3] round {round}: {SUBSCRIBERS} subscribers attached; emitting {LATENCY_EVENTS} events");
        next_start();
    })
    .await
}

/// Live burst: one run emitting `BURST_EVENTS` as fast as it can, one client over a socket.
/// Returns events/s received (from the start signal to the end of the body) and fsyncs per
/// 1,000 events.
async fn live_burst(dir: &std::path::Path) -> (f64, f64) {
    let (backend, probe) =
        taskflow::testing::InstrumentedBackend::create(dir).expect("instrumented backend");
    let flow = TaskFlow::builder()
        .storage_backend(dir, backend)
        .register(emitter)
        .build()
        .await
        .expect("build");
    let syncs_before = probe.syncs();
    let rate = burst_over_http(&flow).await;
    let syncs = probe.syncs() - syncs_before;
    flow.shutdown().await.expect("shutdown");
    (rate, syncs as f64 * 1000.0 / f64::from(BURST_EVENTS))
}

/// The live burst on the PostgreSQL store (a schema of its own, dropped after): events/s and
/// commit statements (round trips of the committer) per 1,000 events.
async fn pg_burst() -> (f64, f64) {
    let url = std::env::var(taskflow::testing::TEST_DATABASE_URL)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = taskflow::testing::TempSchema::new();
    let flow = TaskFlow::builder()
        .postgres(taskflow::store::PgConfig::new(url).schema(schema.name()))
        .register(emitter)
        .build()
        .await
        .expect("PostgreSQL flow (a server on 127.0.0.1:5432, database test; see README)");
    let before = flow.metrics().wal_commits;
    let rate = burst_over_http(&flow).await;
    let commits = flow.metrics().wal_commits - before;
    flow.shutdown().await.expect("shutdown");
    drop(schema);
    (rate, commits as f64 * 1000.0 / f64::from(BURST_EVENTS))
}

/// One run emitting `BURST_EVENTS` as fast as it can, one client over a socket: events/s
/// received, from the start signal to the end of the body.
async fn burst_over_http(flow: &TaskFlow) -> f64 {
    let app = axum::Router::new().nest(
        "/api",
        taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let gate = *START.borrow() + 1;
    let run = flow
        .start(
            emitter,
            EmitIn {
                n: BURST_EVENTS,
                gap_ms: 0,
                start_after: gate,
                run: 0,
                phase_ms: 0,
            },
        )
        .await
        .expect("start");
    let path = format!("/api/tasks/{}/events", run.idempotency_key);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 256 * 1024];
    let mut seen = Vec::new();
    while !seen.windows(12).any(|w| w == b"event: ready") {
        let n = stream.read(&mut buf).await.expect("read");
        seen.extend_from_slice(&buf[..n]);
    }
    let started = Instant::now();
    next_start();
    let mut ticks = 0usize;
    let mut carry = Vec::new();
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        carry.extend_from_slice(&buf[..n]);
        ticks += carry.windows(11).filter(|w| w == b"event: tick").count();
        let keep = carry.len().min(10);
        carry.drain(..carry.len() - keep);
    }
    let took = started.elapsed();
    assert_eq!(
        ticks, BURST_EVENTS as usize,
        "every event reached the client"
    );
    server.abort();
    f64::from(BURST_EVENTS) / took.as_secs_f64()
}

/// What the many-streams phase measured besides its latencies.
struct StreamsOutcome {
    latency: Histogram<u64>,
    lost: u64,
    /// Bytes and `write` calls the commits handed to the file system, per commit.
    bytes_per_commit: f64,
    writes_per_commit: f64,
}

/// Many streams: `STREAMS` runs, each emitting every 100 ms to its own client, on the flow
/// whose routes are under `prefix` (the probe counts what its database file is written).
async fn many_streams(
    flow: &TaskFlow,
    probe: Option<&taskflow::testing::BackendProbe>,
    addr: std::net::SocketAddr,
    prefix: &str,
) -> StreamsOutcome {
    let before = flow.metrics();
    let written = || probe.map_or((0, 0), |p| (p.written_bytes(), p.writes()));
    let (bytes_before, writes_before) = written();
    let gate = *START.borrow() + 1;
    let mut paths = Vec::new();
    for run in 0..STREAMS {
        let handle = flow
            .start(
                emitter,
                EmitIn {
                    n: stream_events(),
                    gap_ms: 100,
                    start_after: gate,
                    run: 1_000 + u32::try_from(run).expect("fits"),
                    // Phases spread evenly over the 100 ms period, as independent clients'.
                    phase_ms: (run as u64 * 100) / STREAMS as u64,
                },
            )
            .await
            .expect("start");
        paths.push(format!("{prefix}/tasks/{}/events", handle.idempotency_key));
    }
    let (hist, received) = measure_clients_on(addr, &paths, || async {
        eprintln!(
            "[5] {prefix}: {STREAMS} streams attached; each emits {} events, 100 ms apart",
            stream_events()
        );
        next_start();
    })
    .await;
    let lost = received
        .iter()
        .map(|r| u64::from(stream_events()).saturating_sub(*r))
        .sum();
    let after = flow.metrics();
    let commits = (after.wal_commits - before.wal_commits).max(1) as f64;
    let (bytes_after, writes_after) = written();
    let outcome = StreamsOutcome {
        latency: hist,
        lost,
        bytes_per_commit: (bytes_after - bytes_before) as f64 / commits,
        writes_per_commit: (writes_after - writes_before) as f64 / commits,
    };
    eprintln!(
        "[5] {commits} commits: {:.1} batches, {:.1} KiB in {:.1} writes and {:.0} µs per commit on average",
        (after.wal_batches - before.wal_batches) as f64 / commits,
        outcome.bytes_per_commit / 1024.0,
        outcome.writes_per_commit,
        (after.wal_commit_micros - before.wal_commit_micros) as f64 / commits
    );
    outcome
}

/// Raw axum on the same cadence: `STREAMS` sockets, each fed pre-made stamped frames every
/// 100 ms at its phase once the start signal moves; no log, no commit.
async fn raw_many_streams(addr: std::net::SocketAddr) -> Histogram<u64> {
    let gate = *START.borrow() + 1;
    let paths: Vec<String> = (0..STREAMS)
        .map(|k| format!("/raw-stream/{gate}/{}", (k as u64 * 100) / STREAMS as u64))
        .collect();
    let (hist, _) = measure_clients_on(addr, &paths, || async {
        eprintln!("[5] raw axum: {STREAMS} streams on the same cadence");
        next_start();
    })
    .await;
    hist
}

fn raw_stream_body(gate: u32, phase_ms: u64) -> Body {
    let ready = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
        Bytes::from_static(b"event: ready\ndata: {}\n\n"),
    )]);
    let ticks = futures_util::stream::unfold((0u32, None), move |(i, start)| async move {
        if i == stream_events() {
            return None;
        }
        let start = match start {
            Some(s) => s,
            None => {
                let _ = START.subscribe().wait_for(|v| *v >= gate).await;
                tokio::time::Instant::now() + Duration::from_millis(phase_ms)
            }
        };
        tokio::time::sleep_until(start + Duration::from_millis(100) * i).await;
        let frame = format!(
            "id: {i}\nevent: tick\ndata: {{\"i\":{i},\"t\":{}}}\n\n",
            now_micros()
        );
        Some((Ok(Bytes::from(frame)), (i + 1, Some(start))))
    });
    Body::from_stream(futures_util::StreamExt::chain(ready, ticks))
}

/// Raw axum: the same clients on a route that forwards pre-made frames from a broadcast
/// channel (no log, no commit): the floor for 1,000 real sockets on this machine.
async fn raw_fan_out(
    addr: std::net::SocketAddr,
    tx: tokio::sync::broadcast::Sender<Bytes>,
) -> Histogram<u64> {
    measure_clients(addr, "/raw-fanout", move || async move {
        for i in 0..LATENCY_EVENTS {
            let frame = format!(
                "id: {i}\nevent: tick\ndata: {{\"i\":{i},\"t\":{}}}\n\n",
                now_micros()
            );
            let _ = tx.send(Bytes::from(frame));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tx.send(Bytes::from_static(b"event: end\ndata: {}\n\n"));
    })
    .await
}

fn raw_fanout_body(rx: tokio::sync::broadcast::Receiver<Bytes>) -> Body {
    let ready = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
        Bytes::from_static(b"event: ready\ndata: {}\n\n"),
    )]);
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(frame) if frame.starts_with(b"event: end") => None,
            Ok(frame) => Some((Ok(frame), rx)),
            Err(_) => None,
        }
    });
    Body::from_stream(futures_util::StreamExt::chain(ready, live))
}

/// Raw baselines: broadcast fan-out to 1,000 receivers, and one redb Immediate commit.
async fn baselines(dir: &std::path::Path) -> (Histogram<u64>, Histogram<u64>) {
    let (tx, _) = tokio::sync::broadcast::channel::<u64>(1024);
    let hist_b = Arc::new(std::sync::Mutex::new(hist()));
    let mut receivers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut rx = tx.subscribe();
        let h = hist_b.clone();
        receivers.push(tokio::spawn(async move {
            while let Ok(t) = rx.recv().await {
                let at = now_micros();
                h.lock()
                    .expect("lock")
                    .record(at.saturating_sub(t).max(1))
                    .expect("record");
            }
        }));
    }
    for _ in 0..LATENCY_EVENTS {
        let _ = tx.send(now_micros());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tx);
    for r in receivers {
        r.await.expect("receiver");
    }
    let db = redb::Database::create(dir.join("raw.redb")).expect("raw db");
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let mut commit = hist();
    let payload = vec![7u8; 64];
    for i in 0..500u64 {
        let t = Instant::now();
        let mut txn = db.begin_write().expect("begin");
        txn.set_durability(redb::Durability::Immediate)
            .expect("durability");
        txn.open_table(table)
            .expect("table")
            .insert(i, payload.as_slice())
            .expect("insert");
        txn.commit().expect("commit");
        commit
            .record(u64::try_from(t.elapsed().as_micros()).expect("fits").max(1))
            .expect("record");
    }
    let b = Arc::try_unwrap(hist_b)
        .expect("done")
        .into_inner()
        .expect("lock");
    (b, commit)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Memory of the demo server per idle SSE connection.
async fn memory_per_connection(dir: &std::path::Path) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let demo = exe.parent()?.parent()?.join("examples/demo");
    if !demo.exists() {
        eprintln!("[3/3] skipped: build the demo first (cargo build --release --examples)");
        return None;
    }
    let mut child = tokio::process::Command::new(&demo)
        .env("TASKFLOW_ADDR", "127.0.0.1:0")
        .env("TASKFLOW_DATA_DIR", dir.join("demo"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let pid = child.id()?;
    let mut out = tokio::io::BufReader::new(child.stdout.take()?);
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
        .await
        .ok()?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))?
        .to_owned();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().ok()?;
    // A run that stays busy for a minute: every connection to it is idle but open.
    let mut start = TcpStream::connect(addr).await.ok()?;
    let body = r#"{"run_key":"mem","n":1,"sleep_ms":60000}"#;
    let request = format!(
        "POST /api/tasks/count-to-n HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    start.write_all(request.as_bytes()).await.ok()?;
    let mut head = vec![0u8; 4096];
    let n = start.read(&mut head).await.ok()?;
    let text = String::from_utf8_lossy(&head[..n]).to_string();
    let ik = text
        .lines()
        .find_map(|l| l.strip_prefix("x-taskflow-idempotency-key: "))?
        .trim()
        .to_owned();
    // Warm up allocator and runtime with a few connections, then measure.
    let open = |count: usize| {
        let ik = ik.clone();
        async move {
            let mut conns = Vec::new();
            for _ in 0..count {
                let mut s = TcpStream::connect(addr).await.expect("connect");
                let req = format!("GET /api/tasks/{ik}/events HTTP/1.1\r\nHost: b\r\n\r\n");
                s.write_all(req.as_bytes()).await.expect("write");
                let mut b = vec![0u8; 2048];
                let _ = s.read(&mut b).await.expect("read");
                conns.push(s);
            }
            conns
        }
    };
    let warm = open(50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(pid);
    let conns = open(SUBSCRIBERS).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    eprintln!(
        "[3/3] demo RSS {before} KiB → {after} KiB with {SUBSCRIBERS} more idle SSE connections"
    );
    drop(conns);
    drop(warm);
    drop(start);
    let _ = child.kill().await;
    Some(after.saturating_sub(before) as f64 / SUBSCRIBERS as f64)
}

/// Raises the open-files limit when the soft one is below what the subscribers need.
fn raise_fd_limit() {
    let needed = SUBSCRIBERS * 2 + 100;
    // The soft limit now, from the `Max open files` row of /proc/self/limits.
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let row = limits.lines().find(|l| l.starts_with("Max open files"))?;
            row.split_whitespace().nth(3)?.parse::<usize>().ok()
        });
    if soft.is_some_and(|soft| soft >= needed) {
        return;
    }
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=65536:65536"])
        .status();
    match status {
        Ok(s) if s.success() => eprintln!("fd limit raised to 65536"),
        _ => eprintln!(
            "could not raise the fd limit (prlimit) above {soft:?}; {SUBSCRIBERS} subscribers need ~{needed} fds"
        ),
    }
}

/// The parts of the bench to run: `TASKFLOW_BENCH_PHASES` (comma-separated from `replay`,
/// `fanout`, `memory`, `burst`, `pgburst`, `streams`); all of them when unset (`pgburst`
/// needs the PostgreSQL server of the test suite).
struct Phases(Option<Vec<String>>);

impl Phases {
    fn from_env() -> Self {
        Self(
            std::env::var("TASKFLOW_BENCH_PHASES")
                .ok()
                .map(|v| v.split(',').map(|p| p.trim().to_owned()).collect()),
        )
    }

    fn has(&self, phase: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| p == phase))
    }
}

fn main() {
    raise_fd_limit();
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Instrumented only to count the bytes the many-streams commits write.
        let flow_dir = dir.path().join("flow");
        let (backend, probe) =
            taskflow::testing::InstrumentedBackend::create(&flow_dir).expect("instrumented backend");
        let flow = TaskFlow::builder()
            .storage_backend(&flow_dir, backend)
            .register(emitter)
            .payload_limit(1024 * 1024)
            .max_concurrent(STREAMS + 10)
            .build()
            .await
            .expect("build");
        // The same store with the event journal in front of it, for the many-streams phase.
        let journaled = TaskFlow::builder()
            .data_dir(dir.path().join("flow-journal"))
            .event_journal(true)
            .register(emitter)
            .max_concurrent(STREAMS + 10)
            .build()
            .await
            .expect("build the journaled flow");
        let (fan_tx, _) = tokio::sync::broadcast::channel::<Bytes>(1024);
        let fan_for_route = fan_tx.clone();
        let app = axum::Router::new()
            .nest("/api", taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService))
            .nest(
                "/journal/api",
                taskflow::axum::routes_with(journaled.clone(), taskflow::axum::Anonymous::AsService),
            )
            .route("/raw", axum::routing::get(|| async { raw_frames() }))
            .route(
                "/raw-stream/{gate}/{phase}",
                axum::routing::get(
                    |axum::extract::Path((gate, phase)): axum::extract::Path<(u32, u64)>| async move {
                        raw_stream_body(gate, phase)
                    },
                ),
            )
            .route(
                "/raw-fanout",
                axum::routing::get(move || {
                    let rx = fan_for_route.subscribe();
                    async move { raw_fanout_body(rx) }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let phases = Phases::from_env();
        // The replay's raw axum rate is the ceiling for the burst too: measured when either runs.
        let replayed = if phases.has("replay") || phases.has("burst") || phases.has("pgburst") {
            Some(replay(&flow, addr).await)
        } else {
            None
        };
        let mut rounds = Vec::new();
        if phases.has("fanout") {
            for round in 1..=FAN_OUT_ROUNDS {
                let fan = fan_out(&flow, addr, round).await;
                eprintln!("[2/3] round {round}: raw axum fan-out to {SUBSCRIBERS} sockets");
                let raw_fan = raw_fan_out(addr, fan_tx.clone()).await;
                rounds.push((fan, raw_fan));
            }
        }
        let baseline = if phases.has("fanout") {
            Some(baselines(dir.path()).await)
        } else {
            None
        };
        let per_conn = if phases.has("memory") {
            memory_per_connection(dir.path()).await
        } else {
            None
        };
        let burst = if phases.has("burst") {
            eprintln!("[4] live burst: {BURST_EVENTS} events as fast as one task emits them");
            let burst_dir = dir.path().join("burst");
            std::fs::create_dir_all(&burst_dir).expect("burst dir");
            Some(live_burst(&burst_dir).await)
        } else {
            None
        };
        let pg = if phases.has("pgburst") {
            eprintln!("[6] live burst on PostgreSQL: {BURST_EVENTS} events");
            Some(pg_burst().await)
        } else {
            None
        };
        let streams = if phases.has("streams") {
            let outcome = many_streams(&flow, Some(&probe), addr, "/api").await;
            let raw_streams = raw_many_streams(addr).await;
            let with_journal = many_streams(&journaled, None, addr, "/journal/api").await;
            let size = |name: &str| {
                std::fs::metadata(dir.path().join("flow-journal").join(name))
                    .map_or(0, |m| m.len())
            };
            eprintln!(
                "[5] with the event journal: taskflow.redb {:.1} MiB, taskflow.journal {:.1} MiB after the phase",
                size("taskflow.redb") as f64 / f64::from(1 << 20),
                size("taskflow.journal") as f64 / f64::from(1 << 20)
            );
            let pages = (outcome.bytes_per_commit / 4096.0).round().max(1.0) as u64;
            let fdatasync = disk::fdatasync_baseline(dir.path(), 1, hist());
            let commit_sized = disk::fdatasync_baseline(dir.path(), pages, hist());
            // Which spacing between fdatasyncs does best depends on the disk (flushing at once
            // syncs most often, spacing them makes each event wait), so the floor is the best
            // of a few.
            let floor = FLOOR_SPACINGS_US
                .iter()
                .map(|&us| {
                    eprintln!(
                        "[5] the durable floor: {STREAM_RATE} events/s for {}s appended by one loop, fdatasyncs at least {us} µs apart",
                        stream_length().as_secs()
                    );
                    let spacing = Duration::from_micros(us);
                    let (h, syncs) = disk::durable_floor(
                        dir.path(),
                        STREAM_RATE,
                        stream_length(),
                        FLOOR_EVENT_BYTES,
                        spacing,
                        hist(),
                    );
                    eprintln!(
                        "[5]   {syncs} fdatasyncs, p50 {} µs, p99 {} µs",
                        h.value_at_quantile(0.5),
                        h.value_at_quantile(0.99)
                    );
                    (h, us)
                })
                .min_by_key(|(h, _)| h.value_at_quantile(0.99))
                .expect("spacings");
            Some((outcome, raw_streams, with_journal, fdatasync, (pages, commit_sized), floor))
        } else {
            None
        };
        server.abort();
        flow.shutdown().await.expect("shutdown");
        journaled.shutdown().await.expect("shutdown the journaled flow");

        println!();
        println!("## SSE bridge results (baselines measured in this run)");
        println!();
        println!("| measurement | value | baseline | ratio | target |");
        println!("|---|---|---|---|---|");
        let raw = replayed.map_or(f64::NAN, |(_, raw)| raw);
        if let Some((ours, raw)) = replayed.filter(|_| phases.has("replay")) {
            println!(
                "| replay of a 100k-event run to one client (median of 3) | {ours:.0} events/s | raw axum SSE {raw:.0} events/s | {:.2}× | ≥ 0.25× |",
                ours / raw
            );
        }
        let mut samples = Vec::new();
        if let Some((broadcast, commit)) = baseline {
            let round_ratios: Vec<(u64, u64)> = rounds
                .iter()
                .map(|(fan, raw_fan)| (fan.value_at_quantile(0.99), raw_fan.value_at_quantile(0.99)))
                .collect();
            let (fan, raw_fan) = rounds.swap_remove(rounds.len() / 2);
            let (f50, f99) = (fan.value_at_quantile(0.5), fan.value_at_quantile(0.99));
            let (b50, b99) = (broadcast.value_at_quantile(0.5), broadcast.value_at_quantile(0.99));
            let (c50, c99) = (commit.value_at_quantile(0.5), commit.value_at_quantile(0.99));
            println!(
                "| emit→client latency p50, {SUBSCRIBERS} subscribers | {f50} µs | broadcast p50 {b50} µs + commit p50 {c50} µs = {} µs | {:.2}× | |",
                b50 + c50,
                f50 as f64 / (b50 + c50) as f64
            );
            println!(
                "| emit→client latency p99, {SUBSCRIBERS} subscribers | {f99} µs | broadcast p99 {b99} µs + commit p99 {c99} µs = {} µs | {:.2}× | ≤ 1.5× |",
                b99 + c99,
                f99 as f64 / (b99 + c99) as f64
            );
            let (r50, r99) = (raw_fan.value_at_quantile(0.5), raw_fan.value_at_quantile(0.99));
            println!(
                "| emit→client latency p99 against raw axum fan-out to the same {SUBSCRIBERS} sockets | {f99} µs | raw fan-out p99 {r99} µs (p50 {r50} µs) | {:.2}× | (context) |",
                f99 as f64 / r99 as f64
            );
            for (k, (f99, r99)) in round_ratios.iter().copied().enumerate() {
                println!(
                    "| fan-out round {} of {FAN_OUT_ROUNDS}: p99 against raw axum fan-out | {f99} µs | raw fan-out p99 {r99} µs | {:.2}× | ≤ 1.2× |",
                    k + 1,
                    f99 as f64 / r99 as f64
                );
            }
            samples.push(format!(
                "{} emit→client deliveries per fan-out round ({LATENCY_EVENTS} events × {SUBSCRIBERS} clients, 20 ms apart, median round in the latency rows); {} broadcast deliveries; {} raw commits",
                fan.len(),
                broadcast.len(),
                commit.len()
            ));
        }
        if let Some((burst_rate, burst_syncs)) = burst {
            println!(
                "| live burst: {BURST_EVENTS} events from one task to one client | {burst_rate:.0} events/s | raw axum SSE {raw:.0} events/s | {:.2}× | ≥ 100,000 events/s |",
                burst_rate / raw
            );
            println!("| live burst: fsyncs per 1,000 events | {burst_syncs:.1} | | | ≤ 10 |");
        }
        if let Some((pg_rate, pg_commits)) = pg {
            println!(
                "| live burst on PostgreSQL: {BURST_EVENTS} events from one task to one client | {pg_rate:.0} events/s | raw axum SSE {raw:.0} events/s | {:.2}× | |",
                pg_rate / raw
            );
            println!(
                "| live burst on PostgreSQL: commit round trips per 1,000 events | {pg_commits:.1} | | | |"
            );
        }
        if let Some((
            outcome,
            raw_streams,
            with_journal,
            fdatasync,
            (pages, commit_sized),
            (floor, spacing),
        )) = streams
        {
            let (streams, lost) = (outcome.latency, outcome.lost);
            let (s50, s99) = (streams.value_at_quantile(0.5), streams.value_at_quantile(0.99));
            let (d50, d99) = (fdatasync.value_at_quantile(0.5), fdatasync.value_at_quantile(0.99));
            println!(
                "| {STREAMS} streams, 1 event / 100 ms each: emit→client p50 | {s50} µs | fdatasync p50 {d50} µs | | |"
            );
            println!(
                "| {STREAMS} streams, 1 event / 100 ms each: emit→client p99 | {s99} µs | fdatasync p99 {d99} µs + 1 ms = {} µs | {:.2}× | ≤ 1.0× |",
                d99 + 1000,
                s99 as f64 / (d99 + 1000) as f64
            );
            println!(
                "| {STREAMS} streams: emit→client p99 against raw axum on the same cadence | {s99} µs | raw p50 {} µs, p99 {} µs | {:.2}× | (context) |",
                raw_streams.value_at_quantile(0.5),
                raw_streams.value_at_quantile(0.99),
                s99 as f64 / raw_streams.value_at_quantile(0.99) as f64
            );
            println!(
                "| {STREAMS} streams: bytes a commit writes | {:.1} KiB in {:.1} writes | fdatasync after {pages} scattered pages: p50 {} µs, p99 {} µs | | (context) |",
                outcome.bytes_per_commit / 1024.0,
                outcome.writes_per_commit,
                commit_sized.value_at_quantile(0.5),
                commit_sized.value_at_quantile(0.99)
            );
            println!(
                "| {STREAMS} streams: emit→client p99 against the durable floor (the same {STREAM_RATE} events/s appended by one loop, best fdatasync spacing {spacing} µs) | {s99} µs | floor p50 {} µs, p99 {} µs | {:.2}× | (context) |",
                floor.value_at_quantile(0.5),
                floor.value_at_quantile(0.99),
                s99 as f64 / floor.value_at_quantile(0.99) as f64
            );
            println!(
                "| {STREAMS} streams: events lost | {lost} of {} | | | 0 |",
                STREAMS as u64 * u64::from(stream_events())
            );
            let journal = &with_journal.latency;
            let (j50, j99) = (journal.value_at_quantile(0.5), journal.value_at_quantile(0.99));
            println!(
                "| {STREAMS} streams with the event journal: emit→client p50 | {j50} µs | fdatasync p50 {d50} µs | | |"
            );
            println!(
                "| {STREAMS} streams with the event journal: emit→client p99 | {j99} µs | fdatasync p99 {d99} µs + 1 ms = {} µs | {:.2}× | ≤ 1.0× |",
                d99 + 1000,
                j99 as f64 / (d99 + 1000) as f64
            );
            println!(
                "| {STREAMS} streams with the event journal: p99 against the durable floor | {j99} µs | floor p99 {} µs | {:.2}× | (context) |",
                floor.value_at_quantile(0.99),
                j99 as f64 / floor.value_at_quantile(0.99) as f64
            );
            println!(
                "| {STREAMS} streams with the event journal: events lost | {} of {} | | | 0 |",
                with_journal.lost,
                STREAMS as u64 * u64::from(stream_events())
            );
            samples.push(format!(
                "{} many-stream deliveries; {} fdatasyncs",
                streams.len(),
                fdatasync.len()
            ));
        }
        if phases.has("memory") {
            match per_conn {
                Some(kib) => println!(
                    "| server memory per idle SSE connection (demo process RSS delta / {SUBSCRIBERS}) | {kib:.1} KiB | | | ≤ 12 KiB |"
                ),
                None => println!(
                    "| server memory per idle SSE connection | not measured (demo not built) | | | ≤ 12 KiB |"
                ),
            }
        }
        println!();
        if !samples.is_empty() {
            println!("samples: {}", samples.join("; "));
        }
    });
}
