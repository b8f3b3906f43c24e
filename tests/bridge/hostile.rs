//! Hostile HTTP clients against `serve`, over real sockets: an oversized request head, a
//! client that trickles its headers, a thousand connections that send nothing, and a client
//! that never reads its stream.

use std::time::{Duration, Instant};

use taskflow::prelude::*;
use taskflow::testing::TempDataDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[events]
#[derive(Debug, Clone)]
enum Flood {
    Blob { pad: String },
}

/// `n` events of 60 KB, as fast as pipelined emits go.
#[task(name = "flood", max_attempts = 1)]
async fn flood(ctx: TaskContext<Flood>, n: u32) -> Result<u32, TaskError> {
    for _ in 0..n {
        ctx.emit(Flood::Blob {
            pad: "x".repeat(60_000),
        })
        .await?;
    }
    Ok(n)
}

/// A server whose header and stall timeouts are 1 s; its address and flow.
async fn server(dir: &TempDataDir) -> (String, TaskFlow, tokio::sync::oneshot::Sender<()>) {
    let flow = dir
        .builder()
        .register(flood)
        .header_read_timeout(Duration::from_secs(1))
        .stalled_stream_after(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let app = axum::Router::new()
        .nest(
            "/api",
            taskflow::axum::routes_with(flow.clone(), taskflow::axum::Anonymous::AsService),
        )
        .merge(taskflow::axum::metrics(flow.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(taskflow::axum::serve_until(
        listener,
        app,
        flow.clone(),
        async move {
            let _ = rx.await;
        },
    ));
    (addr, flow, tx)
}

/// Reads until the server closes the connection (or 10 s pass); what it sent.
async fn read_to_close(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_the_limit_is_431() {
    let dir = TempDataDir::new();
    let (addr, flow, _stop) = server(&dir).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let big = "a".repeat(taskflow::axum::MAX_REQUEST_HEAD + 1000);
    let request = format!("GET /api/tasks HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    // The server may answer and close before it has read everything we send.
    let _ = stream.write_all(request.as_bytes()).await;
    let (answer, closed) = read_to_close(&mut stream).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "answer: {}",
        &answer[..answer.len().min(200)]
    );
    assert!(closed);
    // A head under the limit (a 16 KiB token, say) is served.
    let ok = reqwest::Client::new()
        .get(format!("http://{addr}/api/tasks"))
        .header("x-big", "a".repeat(16 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trickles_its_headers_is_disconnected() {
    let dir = TempDataDir::new();
    let (addr, flow, _stop) = server(&dir).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /api/tasks HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if stream
            .write_all(format!("x-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    println!("a trickling client was disconnected after {took:?} (header timeout 1 s)");
    assert!(closed, "the server kept a trickling client for 4 s");
    assert!(took < Duration::from_secs(3), "{took:?}");
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_are_closed_and_memory_stays_bounded() {
    let dir = TempDataDir::new();
    let (addr, flow, _stop) = server(&dir).await;
    let before = rss_kib();
    let mut conns = Vec::new();
    for _ in 0..1000 {
        conns.push(TcpStream::connect(&addr).await.unwrap());
    }
    let opened = rss_kib();
    let started = Instant::now();
    let mut all_closed = true;
    for conn in &mut conns {
        let (_, closed) = read_to_close(conn).await;
        all_closed &= closed;
    }
    let took = started.elapsed();
    let after = rss_kib();
    println!(
        "1,000 silent connections: RSS {before} KiB before, {opened} KiB with them open (+{} KiB), {after} KiB after the server closed them all in {took:?}",
        opened.saturating_sub(before)
    );
    assert!(
        all_closed,
        "the server kept a silent connection past its header timeout"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        opened.saturating_sub(before) < 64 * 1024,
        "1,000 silent connections cost {} KiB",
        opened.saturating_sub(before)
    );
    // The server still serves.
    let ok = reqwest::get(format!("http://{addr}/api/tasks"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_stream_loses_it() {
    let dir = TempDataDir::new();
    let (addr, flow, _stop) = server(&dir).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small window, so the server's writes back up soon.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let body = "300";
    stream
        .write_all(
            format!(
                "POST /api/tasks/flood HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let gauge = || async {
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("taskflow_active_streams "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while gauge().await != 1 {
        assert!(Instant::now() < deadline, "the stream never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = Instant::now();
    // The client reads nothing; after the 1 s stall timeout the server drops its stream.
    while gauge().await != 0 {
        assert!(
            opened.elapsed() < Duration::from_secs(10),
            "a client that reads nothing kept its stream for 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "a client that read nothing lost its stream {:?} after it opened (stall timeout 1 s)",
        opened.elapsed()
    );
    drop(stream);
    flow.shutdown().await.unwrap();
}
