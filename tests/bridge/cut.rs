//! Streams cut anywhere: 500 SSE sessions through a proxy of the test's own that closes each
//! connection after a random number of bytes from the server, every client resuming with
//! `Last-Event-ID` until `completed`, with a server restart in the middle. Each client's
//! events must equal the log exactly: every id once, in order, no gap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// Sessions in CI; `TASKFLOW_CUT_SESSIONS` sets more (`scripts/long-checks.sh`: 10,000).
fn sessions() -> usize {
    std::env::var("TASKFLOW_CUT_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500)
}
const RUNS: u32 = 10;
const EVENTS: u32 = 40;

/// Forwards to the server's current address; closes each connection after `budget` bytes
/// from the server (a new random budget per connection).
struct CuttingProxy {
    addr: String,
    target: Arc<Mutex<String>>,
}

impl CuttingProxy {
    async fn start(target: String, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let target = Arc::new(Mutex::new(target));
        let to = target.clone();
        tokio::spawn(async move {
            let mut rng = seed | 1;
            while let Ok((mut client, _)) = listener.accept().await {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // Anywhere in the head or the first few frames.
                let budget = (rng % 3000) as usize;
                let target = to.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.split();
                    let (mut sr, mut sw) = server.split();
                    let up = tokio::io::copy(&mut cr, &mut sw);
                    let down = async {
                        let mut left = budget;
                        let mut buf = [0u8; 512];
                        while left > 0 {
                            let n = match sr.read(&mut buf[..left.min(512)]).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            left -= n;
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        () = down => {}
                    }
                });
            }
        });
        Self { addr, target }
    }
}

/// One client: follows `ik` from the start through the proxy, resuming after every cut, until
/// `completed`; the ids it received, in order, and how many connections it took.
async fn follow(proxy: &str, ik: &str) -> (Vec<u64>, usize) {
    let client = reqwest::Client::new();
    let (mut ids, mut connections) = (Vec::<u64>::new(), 0);
    loop {
        connections += 1;
        assert!(connections < 2000, "no progress for {ik}");
        let mut request = client.get(format!("http://{proxy}/api/tasks/{ik}/events"));
        if let Some(last) = ids.last() {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let Ok(mut response) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if response.status() != 200 {
            // 503 while the server restarts, or its proxy connection was cut in the head.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let id = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("id: "))
                    .and_then(|v| v.parse::<u64>().ok());
                let event = frame.lines().find_map(|l| l.strip_prefix("event: "));
                if let Some(id) = id {
                    ids.push(id);
                }
                if event == Some("completed") {
                    return (ids, connections);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_sessions_cut_at_random_bytes_see_the_log_exactly() {
    let s = server().await;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("cut-stream seed: {seed}");
    let proxy = CuttingProxy::start(s.base.trim_start_matches("http://").to_owned(), seed).await;
    let mut iks = Vec::new();
    for r in 0..RUNS {
        let response = post(
            &s.base,
            &json!({"tag": format!("cut-{r}"), "n": EVENTS, "sleep_ms": 25}),
        )
        .await;
        iks.push(ik_of(&response));
        // The POST's own stream may go; the run is followed through the proxy.
        drop(response);
    }
    let proxy_addr = proxy.addr.clone();
    let session_count = sessions();
    // At most 500 follow at once: each cut leaves a socket in TIME_WAIT, and 10,000 clients
    // at once would run this machine out of local ports (the later ones replay the log).
    let at_once = Arc::new(tokio::sync::Semaphore::new(500));
    let sessions: Vec<_> = (0..session_count)
        .map(|k| {
            let ik = iks[k % iks.len()].clone();
            let proxy = proxy_addr.clone();
            let at_once = at_once.clone();
            tokio::spawn(async move {
                let _turn = at_once.acquire_owned().await.unwrap();
                follow(&proxy, &ik).await
            })
        })
        .collect();
    // Restart the server in the middle: same data dir, a new port behind the proxy.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let dir = s.shutdown().await;
    let again = server_with(Options {
        dir: Some(dir),
        ..Options::default()
    })
    .await;
    *proxy.target.lock().unwrap() = again.base.trim_start_matches("http://").to_owned();
    let mut connections = 0;
    // A minute for every 500 sessions (they take seconds).
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(60 * (1 + session_count as u64 / 500));
    for (k, session) in sessions.into_iter().enumerate() {
        let (ids, used) = tokio::time::timeout_at(deadline, session)
            .await
            .expect("a session stalled")
            .unwrap();
        connections += used;
        let expected: Vec<u64> = (1..=u64::from(EVENTS) + 1).collect();
        assert_eq!(ids, expected, "session {k} (seed {seed})");
    }
    println!(
        "{session_count} sessions over {RUNS} runs, cut at random bytes through {connections} connections, a server restart in the middle: every client saw ids 1..={} exactly",
        EVENTS + 1
    );
    again.shutdown().await;
}
