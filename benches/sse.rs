//! SSE bridge benchmark, in one run with its baselines:
//!
//! 1. replay of a 100,000-event run to one client, against raw axum streaming the same
//!    pre-made frames (target ≥ 0.1× and ≥ 200k events/s);
//! 2. emit-to-client latency with 1,000 concurrent SSE subscribers, against a raw
//!    `tokio::sync::broadcast` fan-out to 1,000 receivers plus a raw redb commit
//!    (target p99 ≤ 1.5 × (broadcast p99 + commit p99));
//! 3. server memory per idle SSE connection, measured on the demo server process
//!    (target ≤ 64 KiB).
//!
//! ```text
//! cargo bench -p taskflow --bench sse        # needs the demo example built (cargo build --examples)
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REPLAY_EVENTS: u32 = 100_000;
const SUBSCRIBERS: usize = 1_000;
const LATENCY_EVENTS: u32 = 100;

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
    start_gate: bool,
}

static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Emits `n` events, each stamped with the wall-clock time of its emit call.
#[task]
async fn emitter(ctx: TaskContext<Bench>, input: EmitIn) -> Result<(), TaskError> {
    if input.start_gate {
        GATE.notified().await;
    }
    for i in 0..input.n {
        ctx.emit(Bench::Tick { i, t: now_micros() }).await?;
        if input.gap_ms > 0 {
            tokio::time::sleep(Duration::from_millis(input.gap_ms)).await;
        }
        if i % 10_000 == 9_999 {
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
                start_gate: false,
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
    let hist = Arc::new(std::sync::Mutex::new(hist()));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(SUBSCRIBERS);
    let mut clients = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let path = path.to_owned();
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
                    pending.drain(..pos + 4 + digits.len());
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..SUBSCRIBERS {
        ready_rx.recv().await.expect("subscriber ready");
    }
    go().await;
    for c in clients {
        c.await.expect("client");
    }
    Arc::try_unwrap(hist)
        .expect("clients done")
        .into_inner()
        .expect("lock")
}

/// taskflow: `SUBSCRIBERS` SSE clients on one run that emits `LATENCY_EVENTS` stamped events.
async fn fan_out(flow: &TaskFlow, addr: std::net::SocketAddr) -> Histogram<u64> {
    let run = flow
        .start(
            emitter,
            EmitIn {
                n: LATENCY_EVENTS,
                gap_ms: 20,
                start_gate: true,
            },
        )
        .await
        .expect("start");
    let path = format!("/api/tasks/{}/events", run.idempotency_key);
    measure_clients(addr, &path, || async {
        eprintln!("[2/3] {SUBSCRIBERS} subscribers attached; emitting {LATENCY_EVENTS} events");
        GATE.notify_one();
    })
    .await
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

fn raise_fd_limit() {
    let pid = std::process::id().to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=65536:65536"])
        .status();
    match status {
        Ok(s) if s.success() => eprintln!("fd limit raised to 65536"),
        _ => eprintln!(
            "could not raise the fd limit (prlimit); {SUBSCRIBERS} subscribers need ~{} fds",
            SUBSCRIBERS * 2 + 100
        ),
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
        let flow = TaskFlow::builder()
            .data_dir(dir.path().join("flow"))
            .register(emitter)
            .payload_limit(1024 * 1024)
            .build()
            .await
            .expect("build");
        let (fan_tx, _) = tokio::sync::broadcast::channel::<Bytes>(1024);
        let fan_for_route = fan_tx.clone();
        let app = axum::Router::new()
            .nest("/api", taskflow::axum::routes(flow.clone()))
            .route("/raw", axum::routing::get(|| async { raw_frames() }))
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

        let (ours, raw) = replay(&flow, addr).await;
        let fan = fan_out(&flow, addr).await;
        eprintln!("[2/3] raw axum fan-out to {SUBSCRIBERS} sockets");
        let raw_fan = raw_fan_out(addr, fan_tx).await;
        let (broadcast, commit) = baselines(dir.path()).await;
        let per_conn = memory_per_connection(dir.path()).await;
        server.abort();
        flow.shutdown().await.expect("shutdown");

        let (f50, f99) = (fan.value_at_quantile(0.5), fan.value_at_quantile(0.99));
        let (b50, b99) = (broadcast.value_at_quantile(0.5), broadcast.value_at_quantile(0.99));
        let (c50, c99) = (commit.value_at_quantile(0.5), commit.value_at_quantile(0.99));
        println!();
        println!("## SSE bridge results (baselines measured in this run)");
        println!();
        println!("| measurement | value | baseline | ratio | target |");
        println!("|---|---|---|---|---|");
        println!(
            "| replay of a 100k-event run to one client (median of 3) | {ours:.0} events/s | raw axum SSE {raw:.0} events/s | {:.2}× | ≥ 0.1× and ≥ 200k/s |",
            ours / raw
        );
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
        match per_conn {
            Some(kib) => println!(
                "| server memory per idle SSE connection (demo process RSS delta / {SUBSCRIBERS}) | {kib:.1} KiB | | | ≤ 64 KiB |"
            ),
            None => println!("| server memory per idle SSE connection | not measured (demo not built) | | | ≤ 64 KiB |"),
        }
        println!();
        println!(
            "samples: {} emit→client deliveries ({LATENCY_EVENTS} events × {SUBSCRIBERS} clients, 20 ms apart); {} broadcast deliveries; {} raw commits",
            fan.len(),
            broadcast.len(),
            commit.len()
        );
    });
}
