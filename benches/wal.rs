//! Write-ahead-log benchmark: taskflow's durable steps against raw redb, in one run.
//!
//! ```text
//! cargo bench -p taskflow --bench wal
//! ```
//!
//! Every measurement writes to a fresh file in one temp dir on the same disk, with the same
//! durability (`Durability::Immediate`) and a 256-byte payload:
//!
//! - raw redb: one insert per `Immediate` commit, sequentially (the latency floor of a step);
//! - raw group commit, G64: 64 writer threads feeding one committer thread that commits
//!   whatever is queued in one transaction (the throughput ceiling for 64 writers);
//! - taskflow: sequential step checkpoint latency of one task, durable steps per second for 1,
//!   16 and 64 concurrent tasks, and the latency of steps #10 and #1000 of one task.
//!
//! Shared VMs drift by tens of percent within seconds, so baseline and taskflow alternate:
//! latencies in batches of 50 (raw, taskflow, raw, ...), throughput in rounds whose ratio is
//! taken within the round. It prints numbers and ratios; it asserts
//! nothing (the targets are in BENCHMARKS.md).

use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use redb::{Database, Durability, TableDefinition};
use taskflow::prelude::*;

const PAYLOAD: usize = 256;
const ROUNDS: u32 = 5;
const LATENCY_BATCHES: u32 = 60;
const BATCH: u32 = 50;
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("bench");

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn raw_sequential(db: &Database, first_key: u64, samples: u32, h: &mut Histogram<u64>) {
    let payload = vec![7u8; PAYLOAD];
    for i in 0..u64::from(samples) {
        let t = Instant::now();
        let mut txn = db.begin_write().expect("begin");
        txn.set_durability(Durability::Immediate)
            .expect("durability");
        {
            let mut table = txn.open_table(TABLE).expect("table");
            table
                .insert(first_key + i, payload.as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
        h.record(micros(t.elapsed())).expect("record");
    }
}

/// `writers` threads, each writes `per_writer` records one at a time, waiting for durability;
/// one committer thread commits whatever is queued. Returns durable writes per second.
fn raw_group_commit(
    db: Database,
    first_key: u64,
    writers: usize,
    per_writer: usize,
) -> (f64, Database) {
    type Job = (u64, mpsc::Sender<()>);
    let (tx, rx) = mpsc::channel::<Job>();
    let committer = std::thread::spawn(move || {
        let payload = vec![7u8; PAYLOAD];
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            group.extend(rx.try_iter());
            let mut txn = db.begin_write().expect("begin");
            txn.set_durability(Durability::Immediate)
                .expect("durability");
            {
                let mut table = txn.open_table(TABLE).expect("table");
                for (key, _) in &group {
                    table.insert(*key, payload.as_slice()).expect("insert");
                }
            }
            txn.commit().expect("commit");
            for (_, done) in group {
                let _ = done.send(());
            }
        }
        db
    });
    let start = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..per_writer {
                    let (done_tx, done_rx) = mpsc::channel();
                    tx.send((first_key + (w * per_writer + i) as u64, done_tx))
                        .expect("send");
                    done_rx.recv().expect("ack");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    let rate = (writers * per_writer) as f64 / start.elapsed().as_secs_f64();
    drop(tx);
    (rate, committer.join().expect("committer"))
}

static LATENCIES: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

/// Records the latency of every step of a task (the input's first number only makes runs
/// distinct).
#[task]
async fn bench_steps(
    ctx: TaskContext<NoEvents>,
    (_id, steps): (u32, u32),
) -> Result<(), TaskError> {
    let mut lat = Vec::with_capacity(steps as usize);
    for _ in 0..steps {
        let t = Instant::now();
        let v: String = ctx
            .step("s", || async {
                Ok::<_, TaskError>("x".repeat(PAYLOAD - 2))
            })
            .await?;
        lat.push(micros(t.elapsed()));
        std::hint::black_box(v);
    }
    LATENCIES.lock().expect("lock").push(lat);
    Ok(())
}

/// Runs `tasks` concurrent tasks of `steps` steps; returns durable steps per second.
async fn run_tasks(flow: &TaskFlow, next_id: &mut u32, tasks: u32, steps: u32) -> f64 {
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        *next_id += 1;
        handles.push(
            flow.start(bench_steps, (*next_id, steps))
                .await
                .expect("start"),
        );
    }
    for h in &handles {
        flow.wait(h).await.expect("wait");
    }
    f64::from(tasks * steps) / start.elapsed().as_secs_f64()
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    eprintln!("taskflow WAL benchmark in {}", dir.path().display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let flow = runtime.block_on(async {
        TaskFlow::builder()
            .data_dir(dir.path().join("taskflow"))
            .register(bench_steps)
            .max_concurrent(64)
            .build()
            .await
            .expect("build")
    });
    let mut raw_db = Database::create(dir.path().join("raw.redb")).expect("create raw db");
    let mut next_key = 0u64;
    let mut next_id = 0u32;

    // Latency: raw commits and taskflow steps alternate in small batches, so both see the
    // same disk weather.
    let (mut raw, mut seq) = (hist(), hist());
    let mut commit_micros = Vec::new();
    for batch in 0..LATENCY_BATCHES {
        raw_sequential(&raw_db, next_key, BATCH, &mut raw);
        next_key += u64::from(BATCH);
        runtime.block_on(async {
            let m0 = flow.metrics();
            run_tasks(&flow, &mut next_id, 1, BATCH).await;
            let m1 = flow.metrics();
            commit_micros.push(
                (m1.wal_commit_micros - m0.wal_commit_micros) as f64
                    / (m1.wal_commits - m0.wal_commits) as f64,
            );
        });
        for l in LATENCIES.lock().expect("lock").drain(..).flatten() {
            seq.record(l).expect("record");
        }
        if batch % 20 == 19 {
            eprintln!(
                "latency: {} / {LATENCY_BATCHES} batches of {BATCH}",
                batch + 1
            );
        }
    }
    // Throughput: each round runs G64 and then taskflow at 1, 16 and 64 tasks; the ratio is
    // taken per round (same conditions) and the median ratio reported.
    let mut g64 = Vec::new();
    let mut rates: [(u32, u32, Vec<f64>, Vec<f64>); 3] = [
        (1, 500, vec![], vec![]),
        (16, 100, vec![], vec![]),
        (64, 100, vec![], vec![]),
    ];
    for round in 1..=ROUNDS {
        eprintln!("throughput round {round}/{ROUNDS}");
        let (rate, db) = raw_group_commit(raw_db, next_key, 64, 100);
        raw_db = db;
        next_key += 6400;
        g64.push(rate);
        for (tasks, steps, samples, ratios) in &mut rates {
            let m0 = flow.metrics();
            let r = runtime.block_on(run_tasks(&flow, &mut next_id, *tasks, *steps));
            let m1 = flow.metrics();
            eprintln!(
                "  {tasks} task(s): {r:.0} steps/s ({:.2}x G64 {rate:.0}), mean group {:.1}",
                r / rate,
                (m1.wal_batches - m0.wal_batches) as f64 / (m1.wal_commits - m0.wal_commits) as f64
            );
            samples.push(r);
            ratios.push(r / rate);
        }
        LATENCIES.lock().expect("lock").clear();
    }
    eprintln!("step #10 vs #1000: 7 tasks x 1100 steps");
    let (mut early, mut late, mut position_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..7 {
        runtime.block_on(run_tasks(&flow, &mut next_id, 1, 1100));
        let lat = LATENCIES.lock().expect("lock").pop().expect("latencies");
        // Windows of 100 steps at each position, so one slow fsync does not decide; the ratio
        // is taken within one task (the same minute of disk weather).
        let mut e: Vec<f64> = lat[10..110].iter().map(|&x| x as f64).collect();
        let mut l: Vec<f64> = lat[1000..1100].iter().map(|&x| x as f64).collect();
        let (me, ml) = (median(&mut e), median(&mut l));
        early.push(me);
        late.push(ml);
        position_ratios.push(ml / me);
    }
    runtime.block_on(flow.shutdown()).expect("shutdown");
    let _ = raw_db.compact();

    let g64 = median(&mut g64);
    let (early, late) = (median(&mut early), median(&mut late));
    let position_ratio = median(&mut position_ratios);
    println!();
    println!(
        "## Results (ratios against baselines measured in this run, under the same conditions)"
    );
    println!();
    println!("| measurement | value | baseline | ratio | target |");
    println!("|---|---|---|---|---|");
    let (rp50, rp99) = (raw.value_at_quantile(0.5), raw.value_at_quantile(0.99));
    let (sp50, sp99) = (seq.value_at_quantile(0.5), seq.value_at_quantile(0.99));
    println!(
        "| step checkpoint p50 | {sp50} µs | raw commit p50 {rp50} µs | {:.2}× | ≤ 1.3× |",
        sp50 as f64 / rp50 as f64
    );
    println!(
        "| step checkpoint p99 | {sp99} µs | raw commit p99 {rp99} µs | {:.2}× | ≤ 2× |",
        sp99 as f64 / rp99 as f64
    );
    for (tasks, _, samples, ratios) in &mut rates {
        let rate = median(samples);
        let ratio = median(ratios);
        let target = if *tasks == 64 { "≥ 0.7×" } else { "" };
        println!(
            "| durable steps/s, {tasks} concurrent task(s) | {rate:.0} | G64 {g64:.0} writes/s | {ratio:.2}× | {target} |"
        );
    }
    println!(
        "| step #1000 latency (median of #1000–#1099; 7 tasks) | {late:.0} µs | step #10 (#10–#109) {early:.0} µs | {position_ratio:.2}× (median of per-task ratios) | ≤ 1.2× |"
    );
    println!();
    println!(
        "samples: raw {} commits (max {} µs), taskflow {} steps (max {} µs); median commit inside taskflow's committer {:.0} µs; throughput: medians of {ROUNDS} rounds, ratio = median of per-round ratios",
        raw.len(),
        raw.max(),
        seq.len(),
        seq.max(),
        median(&mut commit_micros)
    );
}
