//! The typed Rust client through a TCP proxy that cuts connections at random byte offsets
//! (mid-frame): on the wire every reconnect sends the last complete id, the server never
//! resends an id at or below it, and the client yields every event once, then the output.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use taskflow::TaskEvent;
use taskflow::client::{Client, ClientEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// What one proxied connection carried.
#[derive(Debug, Default, Clone)]
struct Wire {
    request: String,
    delivered: Vec<u8>,
    cut: bool,
}

fn last_event_id_sent(w: &Wire) -> Option<u64> {
    w.request
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("last-event-id: ")
                .map(str::to_owned)
        })
        .map(|v| v.trim().parse().unwrap())
}

/// Ids of the frames the client received completely on this connection (a frame is complete
/// once its blank line arrived), and of every frame the server started to send.
fn ids_on(w: &Wire) -> (Vec<u64>, Vec<u64>) {
    let text = String::from_utf8_lossy(&w.delivered);
    // Only whole `id:` lines count: a cut inside "id: 12" must not read as id 1.
    let id_of = |part: &str| {
        part.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .find_map(|l| l.strip_prefix("id: "))
            .map(|v| v.trim().parse::<u64>().unwrap())
    };
    let parts: Vec<&str> = text.split("\n\n").collect();
    let complete = parts[..parts.len() - 1]
        .iter()
        .filter_map(|p| id_of(p))
        .collect();
    let started = parts.iter().filter_map(|p| id_of(p)).collect();
    (complete, started)
}

async fn proxy(upstream: String, cuts: usize, seed: u64) -> (String, Arc<Mutex<Vec<Wire>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let wires = log.clone();
    tokio::spawn(async move {
        let mut rng = seed | 1;
        let mut n = 0usize;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let mut server = TcpStream::connect(&upstream).await.unwrap();
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Cut the first `cuts` connections at a random offset within ~600 bytes after their
            // `ready` frame (a cut before `ready` would count against the client's 3 retries
            // per episode, which it is right to give up after).
            let cut_after_ready = (n < cuts).then_some((rng % 600) as usize);
            n += 1;
            let index = {
                let mut w = wires.lock().unwrap();
                w.push(Wire::default());
                w.len() - 1
            };
            let wires = wires.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                // The request: read until the end of headers (GETs and small POSTs).
                let mut request = Vec::new();
                loop {
                    let k = client.read(&mut buf).await.unwrap_or(0);
                    if k == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..k]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(str::to_owned)
                            })
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                wires.lock().unwrap()[index].request =
                    String::from_utf8_lossy(&request).into_owned();
                server.write_all(&request).await.unwrap();
                let mut sent = 0usize;
                let mut cut_at: Option<usize> = None;
                let mut seen = Vec::new();
                loop {
                    let k = server.read(&mut buf).await.unwrap_or(0);
                    if k == 0 {
                        break;
                    }
                    let mut chunk = &buf[..k];
                    if cut_at.is_none()
                        && let Some(extra) = cut_after_ready
                    {
                        seen.extend_from_slice(chunk);
                        let text = String::from_utf8_lossy(&seen);
                        if let Some(ready) = text.find("event: ready")
                            && let Some(end) = text[ready..].find("\n\n")
                        {
                            cut_at = Some((ready + end + 2 + extra).max(sent + 1));
                        }
                    }
                    let mut cut = false;
                    if let Some(at) = cut_at
                        && at > sent
                        && sent + chunk.len() >= at
                    {
                        chunk = &chunk[..at - sent];
                        cut = true;
                    }
                    if client.write_all(chunk).await.is_err() {
                        break;
                    }
                    sent += chunk.len();
                    wires.lock().unwrap()[index]
                        .delivered
                        .extend_from_slice(chunk);
                    if cut {
                        wires.lock().unwrap()[index].cut = true;
                        break;
                    }
                }
                // Dropping both sockets cuts the connection.
            });
        }
    });
    (addr, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_resumes_after_mid_frame_cuts_without_gaps_or_duplicates() {
    let s = server().await;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("client proxy test seed: {seed}");
    let upstream = s.base.trim_start_matches("http://").to_owned();
    let (base, wires) = proxy(upstream, 5, seed).await;
    let client = Client::new(format!("{base}/api")).backoff_base(Duration::from_millis(50));
    let input = CountIn {
        tag: "client-cuts".into(),
        n: 30,
        sleep_ms: 15,
        ..CountIn::default()
    };
    let mut run = client.start(count, &input).await.unwrap();
    let mut ticks = Vec::new();
    let mut output = None;
    let mut readies = 0;
    while let Some(event) = run.next().await {
        match event.unwrap() {
            ClientEvent::Ready { .. } => readies += 1,
            ClientEvent::Event(TaskEvent::Progress {
                seq,
                event: Count::Tick { i, big },
            }) => {
                assert_eq!(
                    big, 9_007_199_254_740_993,
                    "JS-safe string read back as a number"
                );
                ticks.push((seq.get(), i));
            }
            ClientEvent::Event(TaskEvent::Completed { seq, output: o }) => {
                assert_eq!(seq.get(), 31);
                output = Some(o);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ticks.len(), 30, "{ticks:?}");
    for (k, (seq, i)) in ticks.iter().enumerate() {
        assert_eq!(
            (*seq, *i),
            (k as u64 + 1, k as u32),
            "every event once, in order"
        );
    }
    let output = output.expect("the output");
    assert_eq!((output.n, output.huge), (30, u64::MAX));

    let wires = wires.lock().unwrap().clone();
    assert!(
        wires.iter().filter(|w| w.cut).count() >= 3,
        "the proxy cut connections"
    );
    assert!(readies >= 2);
    let mut last_complete: Option<u64> = None;
    for (k, w) in wires.iter().enumerate() {
        let sent = last_event_id_sent(w);
        assert_eq!(
            sent, last_complete,
            "connection {k} resumed from the last complete id"
        );
        let (complete, started) = ids_on(w);
        if let Some(first) = started.first() {
            assert_eq!(
                *first,
                last_complete.unwrap_or(0) + 1,
                "connection {k} resent an id"
            );
        }
        if let Some(last) = complete.last() {
            last_complete = Some(*last);
        }
    }
    s.shutdown().await;
}

/// A fake server: answers its first connection with `first` (a whole HTTP response, then
/// closes it after `hold`), every later one by closing at once; the times it accepted them.
async fn fake_server(
    first: String,
    hold: Duration,
) -> (String, Arc<Mutex<Vec<std::time::Instant>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let log = accepted.clone();
    tokio::spawn(async move {
        let mut first = Some(first);
        while let Ok((mut conn, _)) = listener.accept().await {
            log.lock().unwrap().push(std::time::Instant::now());
            let mut request = vec![0u8; 8192];
            let _ = conn.read(&mut request).await;
            if let Some(answer) = first.take() {
                let _ = conn.write_all(answer.as_bytes()).await;
                tokio::time::sleep(hold).await;
            }
            drop(conn);
        }
    });
    (base, accepted)
}

fn sse_response(frames: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\nevent: ready\ndata: {{\"idempotency_key\":\"{}\",\"attached\":false}}\n\n{frames}",
        "A".repeat(43)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_backs_off_with_jitter_and_gives_up_after_three_failed_reconnects() {
    let (base, accepted) = fake_server(
        sse_response("id: 1\nevent: tick\ndata: {\"i\":0,\"big\":1}\n\n"),
        Duration::ZERO,
    )
    .await;
    let client = Client::new(base).backoff_base(Duration::from_millis(100));
    let mut run = client.start(count, &CountIn::default()).await.unwrap();
    assert!(matches!(
        run.next().await,
        Some(Ok(ClientEvent::Ready { .. }))
    ));
    match run.next().await {
        Some(Ok(ClientEvent::Event(TaskEvent::Progress {
            event: Count::Tick { i: 0, .. },
            ..
        }))) => {}
        other => panic!("expected the first tick, got {other:?}"),
    }
    match run.next().await {
        Some(Err(taskflow::client::ClientError::GaveUp { attempts: 3, .. })) => {}
        other => panic!("expected GaveUp after 3 attempts, got {other:?}"),
    }
    let times = accepted.lock().unwrap().clone();
    assert_eq!(times.len(), 4, "the first connection and 3 reconnects");
    // Each wait is base x 2^n plus 0-20 % jitter (and a little scheduling).
    for (n, pair) in times.windows(2).enumerate() {
        let waited = pair[1] - pair[0];
        let floor = Duration::from_millis(100) * (1 << n);
        println!("reconnect {}: waited {waited:?} (base {floor:?})", n + 1);
        assert!(waited >= floor, "reconnect {} after {waited:?}", n + 1);
        assert!(
            waited <= floor.mul_f64(1.2) + Duration::from_millis(80),
            "reconnect {} after {waited:?}",
            n + 1
        );
    }
    assert!(run.next().await.is_none(), "nothing after giving up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_is_frame_too_large() {
    let huge = format!("id: 1\nevent: tick\ndata: {}\n\n", "x".repeat(80 * 1024));
    // Held open, so the client meets the frame, not a closed connection.
    let (base, _) = fake_server(sse_response(&huge), Duration::from_secs(2)).await;
    let client = Client::new(base).payload_limit(1024);
    let mut run = client.start(count, &CountIn::default()).await.unwrap();
    assert!(matches!(
        run.next().await,
        Some(Ok(ClientEvent::Ready { .. }))
    ));
    match run.next().await {
        Some(Err(taskflow::client::ClientError::FrameTooLarge { limit })) => {
            assert_eq!(limit, 1024 + 64 * 1024);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
}
