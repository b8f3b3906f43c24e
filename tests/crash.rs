//! Kill -9 test: a child process runs a 50-step durable task and is SIGKILLed 20 times, each
//! time after it reported at least one newly committed step and before the task finished.
//!
//! The step bodies append to an fsynced side journal outside taskflow, so the test can see
//! every execution of every body, whatever the WAL says. After the last restart the task must
//! complete with the right output; no body may have run again after its result was committed;
//! recorded results never change; event seqs are gapless and every user event appears once.
//!
//! A second part kills a child mid-burst: its task emits 50,000 events as fast as pipelined
//! emits allow while an in-process subscriber prints every event it receives; the child is
//! SIGKILLed 5 times a few milliseconds into a life. Everything a subscriber saw must be in
//! the final log at the same seq, and the final log holds every event exactly once, in order.
//!
//! A third part kills a child while its run sleeps durably (`ctx.sleep`, 800 ms, the real
//! clock): after the restart the run wakes at the time it chose before the kill (within 1 s)
//! and the step before the sleep does not run again.
//!
//! One binary plays every part: with `TASKFLOW_CRASH_CHILD` set it is the child.

#![allow(clippy::unwrap_used)] // a test program (harness = false): a panic is the failure report

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;

/// Kills of the main part: 20 in CI; `TASKFLOW_CRASH_KILLS` sets more for the long run
/// (`scripts/kill9-cycles.sh`).
fn kills() -> u32 {
    std::env::var("TASKFLOW_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
}

/// Steps of the task: enough for every life to commit a new one before its kill.
fn steps() -> u32 {
    (kills() + 30).max(50)
}
const STEP_MS: u64 = 30;

#[events]
#[derive(Debug)]
enum Tick {
    Tick { i: u32 },
}

#[derive(Debug, Serialize, Deserialize)]
struct Input {
    steps: u32,
}

/// 50 steps; each body journals its execution (fsynced) before doing its work.
#[task(name = "crash-fifty")]
async fn fifty(ctx: TaskContext<Tick>, input: Input) -> Result<Vec<u64>, TaskError> {
    let life: u64 = std::env::var("TASKFLOW_CRASH_LIFE")
        .unwrap()
        .parse()
        .unwrap();
    let journal = PathBuf::from(std::env::var("TASKFLOW_CRASH_CHILD").unwrap()).join("journal");
    let mut values = Vec::new();
    for i in 0..input.steps {
        let journal = journal.clone();
        let (value, origin) = ctx
            .step_with_origin("s", || async move {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&journal)?;
                writeln!(f, "exec {i} {life}")?;
                f.sync_data()?;
                tokio::time::sleep(Duration::from_millis(STEP_MS)).await;
                Ok::<_, std::io::Error>(u64::from(i) * 1000 + life)
            })
            .await?;
        let how = if origin == StepOrigin::Executed {
            "executed"
        } else {
            "replayed"
        };
        println!("committed {i} {value} {how}");
        std::io::stdout().flush()?;
        values.push(value);
        ctx.emit(Tick::Tick { i }).await?;
    }
    Ok(values)
}

const BURST: u32 = 50_000;
const BURST_KILLS: u32 = 5;

/// Emits `n` events as fast as it can (a step every 5,000 of them), pausing 1 ms every 100.
#[task(name = "crash-burst")]
async fn burst(ctx: TaskContext<Tick>, n: u32) -> Result<u32, TaskError> {
    for i in 0..n {
        ctx.emit(Tick::Tick { i }).await?;
        if i % 5_000 == 4_999 {
            ctx.step("mark", || async move { Ok::<_, TaskError>(i) })
                .await?;
        }
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(n)
}

async fn burst_child(dir: &Path) {
    let flow = TaskFlow::builder()
        .data_dir(dir.join("burst-data"))
        .event_journal(std::env::var("TASKFLOW_CRASH_JOURNAL").is_ok_and(|v| v == "1"))
        .register(burst)
        .build()
        .await
        .unwrap();
    let run = flow.start(burst, BURST).await.unwrap();
    let mut events = flow
        .subscribe(&run.idempotency_key, SubscribeFrom::Start)
        .await
        .unwrap();
    println!("started");
    let mut out = std::io::BufWriter::new(std::io::stdout());
    while let Some(e) = events.next().await {
        let e = e.unwrap();
        writeln!(out, "saw {} {} {}", e.seq, e.name, e.data).unwrap();
        if e.seq.get() % 64 == 0 {
            out.flush().unwrap();
        }
    }
    out.flush().unwrap();
    drop(out);
    let total = flow.wait(&run).await.unwrap();
    println!("done {total}");
    flow.shutdown().await.unwrap();
}

const NAP_MS: u64 = 800;

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A step that says in which life it ran, a durable sleep, and a step that says when it woke.
#[task(name = "crash-sleeper")]
async fn sleeper(ctx: TaskContext<NoEvents>, ms: u64) -> Result<(u64, u64), TaskError> {
    let life: u64 = std::env::var("TASKFLOW_CRASH_LIFE")
        .unwrap()
        .parse()
        .unwrap();
    let ran_in = ctx
        .step("before", || async move { Ok::<_, TaskError>(life) })
        .await?;
    ctx.sleep(Duration::from_millis(ms)).await?;
    let woke = ctx
        .step("after", || async { Ok::<_, TaskError>(now_ms()) })
        .await?;
    Ok((ran_in, woke))
}

async fn sleep_child(dir: &Path) {
    let flow = TaskFlow::builder()
        .data_dir(dir.join("sleep-data"))
        .register(sleeper)
        .build()
        .await
        .unwrap();
    let run = flow.start(sleeper, NAP_MS).await.unwrap();
    loop {
        let status = flow.status(&run.idempotency_key).await.unwrap();
        if let Some(until) = status.waiting.and_then(|w| w.until()) {
            println!("parked {}", until.as_millis());
            break;
        }
        if status.status.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (ran_in, woke) = flow.wait(&run).await.unwrap();
    println!("done {ran_in} {woke}");
    flow.shutdown().await.unwrap();
}

/// Kill -9 while asleep: the restarted process wakes the run at its time, once.
fn sleep_part() {
    let dir = tempfile::tempdir().unwrap();
    let parked: fn(&str) -> bool = |line| line.starts_with("parked ");
    let env = |life: u32| {
        [
            ("TASKFLOW_CRASH_MODE", "sleep".to_owned()),
            ("TASKFLOW_CRASH_LIFE", life.to_string()),
        ]
    };
    let (lines, status) = run_child(dir.path(), &env(0), Some((50, parked)), "sleep life 0");
    assert!(!status.success(), "the sleeping life exited by itself");
    let until: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("parked "))
        .expect("the run parked before the kill")
        .parse()
        .unwrap();
    assert!(!lines.iter().any(|l| l.starts_with("done")), "{lines:?}");
    let (lines, status) = run_child(dir.path(), &env(1), None, "sleep life 1");
    assert!(status.success(), "the restarted life failed: {status}");
    let done: Vec<u64> = lines
        .iter()
        .find_map(|l| l.strip_prefix("done "))
        .expect("done line")
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    let (ran_in, woke) = (done[0], done[1]);
    assert_eq!(
        ran_in, 0,
        "the step before the sleep ran again after the kill"
    );
    assert!(woke >= until, "woke {} ms early", until - woke);
    assert!(
        woke < until + 1000,
        "woke {} ms after its time",
        woke - until
    );
    println!(
        "crash: sleep: killed while asleep, woke {} ms after its time in the restarted process, its first step not re-run",
        woke - until
    );
}

async fn child(dir: &Path) {
    let flow = TaskFlow::builder()
        .data_dir(dir.join("data"))
        .register(fifty)
        .build()
        .await
        .unwrap();
    let run = flow.start(fifty, Input { steps: steps() }).await.unwrap();
    println!("started attached={}", run.attached);
    let output = flow.wait(&run).await.unwrap();
    let mut events = flow
        .subscribe(&run.idempotency_key, SubscribeFrom::Start)
        .await
        .unwrap();
    while let Some(e) = events.next().await {
        let e = e.unwrap();
        println!("event {} {} {}", e.seq, e.name, e.data);
    }
    println!("done {}", serde_json::to_string(&output).unwrap());
    flow.shutdown().await.unwrap();
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// When to kill a child: this many ms after the first line the predicate accepts.
type KillRule = (u64, fn(&str) -> bool);

/// Runs the child with `env` and collects its stdout lines. With `kill`, the child is
/// SIGKILLed `ms` after the first line that `trigger` accepts. Returns the lines and how the
/// child ended.
fn run_child(
    dir: &Path,
    env: &[(&str, String)],
    kill: Option<KillRule>,
    what: &str,
) -> (Vec<String>, std::process::ExitStatus) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env("TASKFLOW_CRASH_CHILD", dir);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut kill_at: Option<Instant> = None;
    loop {
        let wait = kill_at
            .unwrap_or(deadline)
            .saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(line) => {
                if let Some((ms, trigger)) = kill
                    && kill_at.is_none()
                    && trigger(&line)
                {
                    kill_at = Some(Instant::now() + Duration::from_millis(ms));
                }
                lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if kill_at.is_some() => {
                child.kill().unwrap(); // SIGKILL
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no progress in 120 s"),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    // Lines that were written before the kill but not yet read.
    lines.extend(rx.try_iter());
    (lines, status)
}

/// One run of the 50-step child; returns its stdout lines. With `kill_after_ms`, the child is
/// killed that long after its first newly executed step was reported.
fn life(dir: &Path, n: u32, kill_after_ms: Option<u64>) -> Vec<String> {
    let first_new_step: fn(&str) -> bool =
        |line| line.starts_with("committed ") && line.ends_with(" executed");
    let (lines, status) = run_child(
        dir,
        &[("TASKFLOW_CRASH_LIFE", n.to_string())],
        kill_after_ms.map(|ms| (ms, first_new_step)),
        &format!("life {n}"),
    );
    if kill_after_ms.is_some() {
        assert!(!status.success(), "life {n} exited by itself");
        assert!(
            !lines.iter().any(|l| l.starts_with("done")),
            "life {n} finished the task before it was killed"
        );
    } else {
        assert!(status.success(), "final life failed: {status}");
    }
    lines
}

/// One life of the burst child (on the event journal with `journal`); killed `kill_after_ms`
/// after it started (or left to finish).
fn burst_life(dir: &Path, kill_after_ms: Option<u64>, journal: bool) -> Vec<String> {
    let started: fn(&str) -> bool = |line| line == "started";
    let (lines, status) = run_child(
        dir,
        &[
            ("TASKFLOW_CRASH_MODE", "burst".to_owned()),
            ("TASKFLOW_CRASH_JOURNAL", u8::from(journal).to_string()),
        ],
        kill_after_ms.map(|ms| (ms, started)),
        "burst life",
    );
    if kill_after_ms.is_none() {
        assert!(status.success(), "final burst life failed: {status}");
    }
    lines
}

/// Kill -9 mid-burst (on the event journal with `journal`): nothing a subscriber saw is lost
/// or changed, nothing is doubled.
fn burst_part(rng: &mut Rng, journal: bool) {
    let store = if journal { "the event journal" } else { "redb" };
    let dir = tempfile::tempdir().unwrap();
    let parse = |lines: &[String]| -> Vec<(u64, String)> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("saw "))
            .map(|l| {
                let (seq, rest) = l.split_once(' ').unwrap();
                (seq.parse().unwrap(), rest.to_owned())
            })
            .collect()
    };
    let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
    let mut finished_early = 0;
    for n in 0..BURST_KILLS {
        let delay = 20 + rng.next() % 150;
        let lines = burst_life(dir.path(), Some(delay), journal);
        if lines.iter().any(|l| l.starts_with("done")) {
            finished_early += 1;
        }
        let saw = parse(&lines);
        let last = saw.last().map_or(0, |e| e.0);
        println!(
            "crash: burst on {store}, life {n}: killed {delay} ms in; its subscriber saw up to seq {last}"
        );
        seen.push(saw);
    }
    let lines = burst_life(dir.path(), None, journal);
    let log = parse(&lines);
    assert!(
        lines.iter().any(|l| l == &format!("done {BURST}")),
        "the burst run did not complete"
    );
    // The final log: gapless, every tick once and in order, then `completed`.
    assert_eq!(log.len(), BURST as usize + 1, "lost or doubled events");
    for (k, (seq, rest)) in log.iter().enumerate() {
        assert_eq!(*seq, k as u64 + 1, "gap or duplicate at {seq}");
        if k < BURST as usize {
            assert_eq!(rest, &format!("tick {{\"i\":{k}}}"), "seq {seq}");
        } else {
            assert!(rest.starts_with("completed "), "{rest}");
        }
    }
    // What any subscriber saw before a kill is in the final log at the same seq.
    for (n, saw) in seen.iter().enumerate() {
        for (seq, rest) in saw {
            assert_eq!(
                &log[*seq as usize - 1].1,
                rest,
                "life {n} saw seq {seq} differently"
            );
        }
    }
    let seen_max = seen
        .iter()
        .map(|s| s.last().map_or(0, |e| e.0))
        .max()
        .unwrap_or(0);
    println!(
        "crash: burst on {store}: {BURST_KILLS} kills ({finished_early} lives finished before their kill), {BURST} events once each; subscribers saw up to seq {seen_max} before the last kill"
    );
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::env::var("TASKFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash: seed {seed} (set TASKFLOW_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    // Step index → (life in which `step` first returned it, value).
    let mut committed: HashMap<u32, (u32, u64)> = HashMap::new();
    let mut record = |n: u32, lines: &[String]| {
        for line in lines.iter().filter(|l| l.starts_with("committed ")) {
            let parts: Vec<&str> = line.split(' ').collect();
            let (i, v): (u32, u64) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
            let first = committed.entry(i).or_insert((n, v));
            assert_eq!(
                first.1, v,
                "step {i}: recorded value changed from {} to {v}",
                first.1
            );
        }
    };
    let (kills, steps) = (kills(), steps());
    for n in 0..kills {
        let delay = rng.next() % (STEP_MS - 5);
        let lines = life(dir.path(), n, Some(delay));
        let new = lines.iter().filter(|l| l.ends_with(" executed")).count();
        println!("crash: life {n}: killed {delay} ms after its first new step ({new} new steps)");
        assert!(new >= 1);
        record(n, &lines);
    }
    let lines = life(dir.path(), kills, None);
    record(kills, &lines);

    // The output holds every recorded value.
    let done = lines
        .iter()
        .find_map(|l| l.strip_prefix("done "))
        .expect("done line");
    let output: Vec<u64> = serde_json::from_str(done).unwrap();
    assert_eq!(output.len(), steps as usize);
    for (i, v) in output.iter().enumerate() {
        assert_eq!(committed[&(i as u32)].1, *v, "step {i}");
    }
    // No body ran in a life after the one in which its result was first returned.
    let journal = std::fs::read_to_string(dir.path().join("journal")).unwrap();
    let mut executions: HashMap<u32, u32> = HashMap::new();
    for line in journal.lines() {
        let parts: Vec<u32> = line
            .split(' ')
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        let (i, n) = (parts[0], parts[1]);
        *executions.entry(i).or_default() += 1;
        assert!(
            n <= committed[&i].0,
            "step {i} ran in life {n} after its result was committed in life {}",
            committed[&i].0
        );
    }
    // Events: gapless seqs, each tick once, in order, then `completed`.
    let events: Vec<(u64, String, String)> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("event "))
        .map(|l| {
            let mut p = l.splitn(3, ' ');
            (
                p.next().unwrap().parse().unwrap(),
                p.next().unwrap().to_owned(),
                p.next().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(events.len(), steps as usize + 1);
    for (k, (seq, name, data)) in events.iter().enumerate() {
        assert_eq!(*seq, k as u64 + 1, "gap or duplicate");
        if k < steps as usize {
            assert_eq!(name, "tick");
            assert_eq!(data, &format!("{{\"i\":{k}}}"));
        } else {
            assert_eq!(name, "completed");
        }
    }
    let reruns: u32 = executions.values().map(|n| n - 1).sum();
    println!(
        "crash: {kills} kills, {} step executions for {steps} steps ({reruns} re-executions of uncommitted steps)",
        executions.values().sum::<u32>()
    );
    burst_part(&mut rng, false);
    burst_part(&mut rng, true);
    sleep_part();
}

fn main() {
    if let Ok(dir) = std::env::var("TASKFLOW_CRASH_CHILD") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        match std::env::var("TASKFLOW_CRASH_MODE").as_deref() {
            Ok("burst") => runtime.block_on(burst_child(Path::new(&dir))),
            Ok("sleep") => runtime.block_on(sleep_child(Path::new(&dir))),
            _ => runtime.block_on(child(Path::new(&dir))),
        }
        return;
    }
    parent();
    println!("crash: 1 passed, 0 failed");
}
