//! Power loss (issue 11). Each workload runs on a `PowerCutBackend`, which records every write,
//! resize and sync; what the workload saw acknowledged is noted with the number of syncs done
//! at that moment. Then, at every sync boundary, cuts of eight kinds (nothing in flight, all,
//! prefixes, reorderings, random subsets, torn writes, random pages, zeroed tails) build the
//! file a disk could hold, a flow opens on it and recovers, and:
//!
//! - the file opens (never a panic);
//! - every acknowledged run, step result, event and removal is there;
//! - every run completes, no acknowledged step runs again, and each run's events are its
//!   emits exactly once, in order, with gapless ids.
//!
//! The first creation of the file is its own test: redb writes a new file in several steps,
//! so taskflow creates it under a temporary name and renames it when complete.
//!
//! Every sync boundary is a crash point. Each point's cuts are all inspected: the image opens as
//! a store and holds what was acknowledged (about 1 ms each). Some are recovered by a whole
//! flow (tens of ms each): two per point in CI, kinds rotating; `scripts/long-checks.sh`
//! inspects and recovers more (`TASKFLOW_POWER_CUTS_PER_KIND`,
//! `TASKFLOW_POWER_RECOVERIES_PER_KIND`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use taskflow::store::RedbStore;
use taskflow::testing::{CrashPoint, Cut, PowerCutBackend, Recording, TempDataDir};
use taskflow::{ControlError, IdempotencyKey, ManualClock, StoredEvent, TaskState, Timestamp};

#[events]
#[derive(Debug, Clone)]
pub enum Beat {
    Beat { i: u32, j: u32 },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    pub key: String,
    pub steps: u32,
    pub emits: u32,
}

/// What a workload saw acknowledged, each with the syncs done when it saw it; and, in a check,
/// which steps ran.
#[derive(Debug, Default)]
pub struct Ledger {
    backend: Option<PowerCutBackend>,
    executions: Mutex<Vec<(String, u32)>>,
    counter: AtomicU64,
    acks: Mutex<Acks>,
}

#[derive(Debug, Default, Clone)]
struct Acks {
    /// Every run the workload submitted, acknowledged or not.
    plans: Vec<Plan>,
    runs: BTreeMap<String, (Plan, IdempotencyKey, u64)>,
    steps: BTreeMap<(String, u32), (u64, u64)>,
    events: BTreeMap<String, Vec<(StoredEvent, u64)>>,
    removed: Vec<(String, IdempotencyKey, u64)>,
}

impl Ledger {
    fn syncs(&self) -> u64 {
        self.backend.as_ref().map_or(0, PowerCutBackend::syncs)
    }

    /// A step body: a value no other execution returns, so a re-run would show.
    fn execute(&self, key: &str, i: u32) -> u64 {
        self.executions.lock().unwrap().push((key.to_owned(), i));
        u64::from(i) * 1_000_000 + self.counter.fetch_add(1, Ordering::SeqCst)
    }

    /// Retention removed these runs (acknowledged after `at` syncs): what was acknowledged
    /// of them is now their absence.
    fn forget_removed(&self, plans: &[Plan], at: u64) {
        let mut acks = self.acks.lock().unwrap();
        for plan in plans {
            let (_, ik, _) = acks.runs.remove(&plan.key).expect("every run was started");
            acks.removed.push((plan.key.clone(), ik, at));
            acks.steps.retain(|(key, _), _| key != &plan.key);
            acks.events.remove(&plan.key);
        }
    }

    fn step_returned(&self, key: &str, i: u32, value: u64) {
        let at = self.syncs();
        self.acks
            .lock()
            .unwrap()
            .steps
            .insert((key.to_owned(), i), (value, at));
    }
}

#[task(name = "power_cut_work")]
pub async fn power_cut_work(ctx: TaskContext<Beat>, plan: Plan) -> Result<Vec<u64>, TaskError> {
    let ledger = ctx.state::<Arc<Ledger>>()?.clone();
    let mut out = Vec::new();
    for i in 0..plan.steps {
        for j in 0..plan.emits {
            ctx.emit(Beat::Beat { i, j }).await?;
        }
        let (l, key) = (ledger.clone(), plan.key.clone());
        let v = ctx
            .step("work", move || async move {
                Ok::<_, TaskError>(l.execute(&key, i))
            })
            .await?;
        ledger.step_returned(&plan.key, i, v);
        out.push(v);
    }
    Ok(out)
}

const T0: u64 = 1_700_000_000_000;

fn builder(
    dir: &TempDataDir,
    backend: PowerCutBackend,
    ledger: Arc<Ledger>,
) -> taskflow::TaskFlowBuilder {
    TaskFlow::builder()
        .storage_backend(dir.path(), backend)
        .register(power_cut_work)
        .state(ledger)
        .clock(ManualClock::new(Timestamp::from_millis(T0)))
        .max_concurrent(8)
        .compact_after(4)
}

#[derive(Debug, Clone, Copy)]
enum Workload {
    /// Twenty-four waves of two submissions at once, each a one-step run.
    Submit,
    /// Three runs at once, thirty steps each with three emits before each step, each
    /// followed by a subscriber.
    StepsAndEvents,
    /// Four waves of four runs, then a retention pass that removes them all and compacts
    /// the file, then two more runs.
    RetentionWithCompaction,
}

/// Runs `workload` on a recording backend: what the disk was asked to do, what was acknowledged.
async fn record(workload: Workload) -> (Recording, Acks) {
    let dir = TempDataDir::new();
    // The file exists already (its first creation is a test of its own).
    let created = PowerCutBackend::from_image(Vec::new());
    builder(&dir, created.clone(), Arc::default())
        .build()
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let backend = PowerCutBackend::recording_from(created.image());
    let ledger = Arc::new(Ledger {
        backend: Some(backend.clone()),
        ..Ledger::default()
    });
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let flow = builder(&dir, backend.clone(), ledger.clone())
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let plans: Vec<Plan> = match workload {
        Workload::Submit => (0..48)
            .map(|k| Plan {
                key: format!("submit-{k}"),
                steps: 1,
                emits: 0,
            })
            .collect(),
        Workload::StepsAndEvents => (0..3)
            .map(|k| Plan {
                key: format!("steps-{k}"),
                steps: 30,
                emits: 3,
            })
            .collect(),
        Workload::RetentionWithCompaction => (0..16)
            .map(|k| Plan {
                key: format!("kept-{k}"),
                steps: 1,
                emits: 1,
            })
            .collect(),
    };
    let wave = match workload {
        Workload::Submit => 2,
        Workload::StepsAndEvents => 3,
        Workload::RetentionWithCompaction => 4,
    };
    for plans in plans.chunks(wave) {
        run_all(&flow, &ledger, plans.to_vec()).await;
    }
    if let Workload::RetentionWithCompaction = workload {
        clock.advance(Duration::from_secs(25 * 3600));
        assert_eq!(flow.collect_garbage().await.unwrap(), plans.len());
        let at = ledger.syncs();
        ledger.forget_removed(&plans, at);
        let more = (0..2)
            .map(|k| Plan {
                key: format!("after-{k}"),
                steps: 2,
                emits: 1,
            })
            .collect();
        run_all(&flow, &ledger, more).await;
    }
    flow.shutdown().await.unwrap();
    let acks = ledger.acks.lock().unwrap().clone();
    (backend.recording_so_far(), acks)
}

/// Starts every plan at once, follows each run's events, waits for all.
async fn run_all(flow: &TaskFlow, ledger: &Arc<Ledger>, plans: Vec<Plan>) {
    ledger
        .acks
        .lock()
        .unwrap()
        .plans
        .extend(plans.iter().cloned());
    let runs = plans.into_iter().map(|plan| {
        let (flow, ledger) = (flow.clone(), ledger.clone());
        async move {
            let handle = flow.start(power_cut_work, plan.clone()).await.unwrap();
            let at = ledger.syncs();
            ledger.acks.lock().unwrap().runs.insert(
                plan.key.clone(),
                (plan.clone(), handle.idempotency_key.clone(), at),
            );
            let mut sub = flow
                .subscribe(&handle.idempotency_key, SubscribeFrom::Start)
                .await
                .unwrap();
            while let Some(event) = sub.next().await {
                let event = event.unwrap();
                let at = ledger.syncs();
                ledger
                    .acks
                    .lock()
                    .unwrap()
                    .events
                    .entry(plan.key.clone())
                    .or_default()
                    .push((event, at));
            }
            flow.wait(&handle).await.unwrap();
        }
    });
    futures_util::future::join_all(runs).await;
}

/// The cheap check, on every cut: the image opens as a store (no engine) and holds every
/// acknowledged run, step result, event and removal, with gapless event ids.
fn inspect(dir: &Path, image: Vec<u8>, synced: u64, acks: &Acks) -> Result<(), String> {
    let store = RedbStore::open_on(dir, PowerCutBackend::from_image(image))
        .map_err(|e| format!("does not open: {e}"))?;
    let contents = store.contents().map_err(|e| format!("does not read: {e}"));
    drop(store);
    let contents = contents?;
    for (key, ik, at) in &acks.removed {
        if *at <= synced && contents.runs.contains_key(ik) {
            return Err(format!("{key}: removed (acknowledged) but present"));
        }
    }
    for (key, (plan, ik, at)) in &acks.runs {
        // Runs not acknowledged by this point are the recovery check's.
        if *at > synced {
            continue;
        }
        let run = contents
            .runs
            .get(ik)
            .ok_or_else(|| format!("{key}: acknowledged run missing"))?;
        let steps = contents.steps.get(&run.id).map_or(&[][..], Vec::as_slice);
        for i in 0..plan.steps {
            if let Some(&(value, at)) = acks.steps.get(&(key.clone(), i))
                && at <= synced
                && !steps.iter().any(|r| r.value == value)
            {
                return Err(format!("{key}: acknowledged step {i} ({value}) missing"));
            }
        }
        let events = contents.events.get(ik).map_or(&[][..], Vec::as_slice);
        gapless(key, events)?;
        for (seen, at) in acks.events.get(key).into_iter().flatten() {
            if *at <= synced && !events.iter().any(|e| e == seen) {
                return Err(format!(
                    "{key}: event {} seen by a subscriber is missing",
                    seen.seq.get()
                ));
            }
        }
    }
    Ok(())
}

fn gapless(key: &str, events: &[StoredEvent]) -> Result<(), String> {
    let first = events.first().map_or(1, |e| e.seq.get());
    for (k, e) in events.iter().enumerate() {
        if e.seq.get() != first + k as u64 {
            return Err(format!("{key}: gap or duplicate at seq {}", e.seq.get()));
        }
    }
    Ok(())
}

/// The full check, on one cut of each kind per point: a flow opens on the image, recovers and
/// completes every run; nothing acknowledged is lost, run again or doubled.
async fn check(
    dir: &TempDataDir,
    point: &CrashPoint<'_>,
    cut: Cut,
    acks: &Acks,
) -> Result<(), String> {
    let synced = point.synced();
    let image = point.image(cut);
    let ledger = Arc::new(Ledger::default());
    let opened = {
        let builder = builder(dir, PowerCutBackend::from_image(image), ledger.clone());
        tokio::spawn(async move { builder.build().await })
            .await
            .map_err(|e| format!("opening panicked: {e}"))?
    };
    let flow = opened.map_err(|e| format!("does not open: {e}"))?;
    let result = verify(&flow, &ledger, synced, acks).await;
    flow.shutdown()
        .await
        .map_err(|e| format!("shutdown: {e}"))?;
    result
}

async fn verify(flow: &TaskFlow, ledger: &Ledger, synced: u64, acks: &Acks) -> Result<(), String> {
    for (key, ik, at) in &acks.removed {
        if *at <= synced && !matches!(flow.status(ik).await, Err(ControlError::NotFound)) {
            return Err(format!("{key}: removed (acknowledged) but present"));
        }
    }
    let plans = acks
        .plans
        .iter()
        .filter(|plan| !acks.removed.iter().any(|(k, _, _)| k == &plan.key))
        .map(|plan| verify_plan(flow, ledger, synced, acks, plan));
    futures_util::future::join_all(plans)
        .await
        .into_iter()
        .collect()
}

/// Resubmits `plan` as a retrying client would and checks the run it gets.
async fn verify_plan(
    flow: &TaskFlow,
    ledger: &Ledger,
    synced: u64,
    acks: &Acks,
    plan: &Plan,
) -> Result<(), String> {
    let key = &plan.key;
    let acked = acks.runs.get(key).filter(|(_, _, at)| *at <= synced);
    if let Some((_, ik, _)) = acked
        && let Err(e) = flow.status(ik).await
    {
        return Err(format!("{key}: acknowledged run missing: {e}"));
    }
    // What a client retrying its submission gets: the recovered run, or a new one.
    let handle = flow
        .start(power_cut_work, plan.clone())
        .await
        .map_err(|e| format!("{key}: resubmit: {e}"))?;
    if acked.is_some() && !handle.attached {
        return Err(format!("{key}: a resubmit made a second run"));
    }
    let ik = &handle.idempotency_key;
    let output = tokio::time::timeout(Duration::from_secs(20), flow.wait_json(ik))
        .await
        .map_err(|_| format!("{key}: recovery did not complete"))?
        .map_err(|e| format!("{key}: did not complete: {e}"))?;
    let values: Vec<u64> = serde_json::from_value(output).map_err(|e| e.to_string())?;
    if values.len() != plan.steps as usize {
        return Err(format!("{key}: {} step values", values.len()));
    }
    for i in 0..plan.steps {
        if let Some(&(value, at)) = acks.steps.get(&(key.clone(), i))
            && at <= synced
            && values[i as usize] != value
        {
            return Err(format!(
                "{key}: step {i} was acknowledged as {value}, now {}",
                values[i as usize]
            ));
        }
    }
    let reran: Vec<u32> = ledger
        .executions
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, i)| {
            k == key
                && acks
                    .steps
                    .get(&(k.clone(), *i))
                    .is_some_and(|s| s.1 <= synced)
        })
        .map(|(_, i)| *i)
        .collect();
    if !reran.is_empty() {
        return Err(format!("{key}: acknowledged steps {reran:?} ran again"));
    }
    let events = events_of(flow, ik).await?;
    let beats: Vec<(u32, u32)> = events
        .iter()
        .filter(|e| !e.is_lifecycle())
        .map(|e| {
            (
                e.data["i"].as_u64().unwrap() as u32,
                e.data["j"].as_u64().unwrap() as u32,
            )
        })
        .collect();
    let expected: Vec<(u32, u32)> = (0..plan.steps)
        .flat_map(|i| (0..plan.emits).map(move |j| (i, j)))
        .collect();
    if beats != expected {
        return Err(format!(
            "{key}: emits {beats:?}, expected each once in order"
        ));
    }
    gapless(key, &events)?;
    for (seen, at) in acks.events.get(key).into_iter().flatten() {
        if *at <= synced && !events.iter().any(|e| e == seen) {
            return Err(format!(
                "{key}: event {} seen by a subscriber is gone",
                seen.seq.get()
            ));
        }
    }
    let status = flow.status(ik).await.map_err(|e| e.to_string())?;
    if status.status != TaskState::Completed {
        return Err(format!("{key}: {:?}", status.status));
    }
    Ok(())
}

async fn events_of(flow: &TaskFlow, ik: &IdempotencyKey) -> Result<Vec<StoredEvent>, String> {
    let mut sub = flow
        .subscribe(ik, SubscribeFrom::Start)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .map_err(|_| "subscription stalled".to_owned())?
    {
        out.push(e.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Cuts of each random kind inspected per crash point, and cuts of each kind recovered by a
/// flow: `TASKFLOW_POWER_CUTS_PER_KIND` (default 75, which makes more than 50,000 cuts) and
/// `TASKFLOW_POWER_RECOVERIES_PER_KIND` (unset: two cuts per point, of kinds that rotate with
/// the point, so every kind is recovered across a workload).
fn setting(name: &str, default: usize) -> (usize, bool) {
    match std::env::var(name).ok().and_then(|v| v.parse().ok()) {
        Some(n) => (n, true),
        None => (default, false),
    }
}

/// The first `n` cuts of each kind among `cuts`: the ones the full check recovers.
fn some_of_each_kind(cuts: &[Cut], n: usize) -> Vec<Cut> {
    let mut seen: Vec<(std::mem::Discriminant<Cut>, usize)> = Vec::new();
    let mut out = Vec::new();
    for cut in cuts {
        let kind = std::mem::discriminant(cut);
        let k = match seen.iter_mut().find(|(d, _)| *d == kind) {
            Some((_, k)) => k,
            None => {
                seen.push((kind, 0));
                &mut seen.last_mut().expect("just pushed").1
            }
        };
        if *k < n {
            *k += 1;
            out.push(*cut);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cut_of_every_sync_boundary_keeps_what_was_acknowledged_and_recovers() {
    let dir = TempDataDir::new();
    let (per_kind, chosen) = setting("TASKFLOW_POWER_CUTS_PER_KIND", 75);
    let (recoveries, all_kinds) = setting("TASKFLOW_POWER_RECOVERIES_PER_KIND", 1);
    let mut total = Tally::default();
    let started = Instant::now();
    for workload in [
        Workload::Submit,
        Workload::StepsAndEvents,
        Workload::RetentionWithCompaction,
    ] {
        let (recording, acks) = record(workload).await;
        let mut failures = Vec::new();
        let mut here = Tally::default();
        for point in recording.crash_points() {
            here.points += 1;
            let cuts = point.cuts(per_kind, point.synced() * 1_000);
            let at = |cut: &Cut| {
                format!(
                    "after sync {} ({} in flight), {cut:?}",
                    point.synced(),
                    point.in_flight()
                )
            };
            let t = Instant::now();
            // Opening images is synchronous work: two threads share the cuts.
            let found: Vec<String> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..2)
                    .map(|w| {
                        let (point, acks, dir, at) = (&point, &acks, &dir, &at);
                        let cuts = cuts.iter().skip(w).step_by(2);
                        scope.spawn(move || {
                            cuts.filter_map(|&cut| {
                                let image = point.image(cut);
                                let inspected =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                        inspect(dir.path(), image, point.synced(), acks)
                                    }));
                                match inspected {
                                    Ok(Ok(())) => None,
                                    Ok(Err(e)) => Some(format!("{}: {e}", at(&cut))),
                                    Err(_) => Some(format!("{}: panicked", at(&cut))),
                                }
                            })
                            .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().expect("an inspection thread"))
                    .collect()
            });
            here.inspected += cuts.len();
            failures.extend(found);
            here.inspecting += t.elapsed();
            let t = Instant::now();
            let mut recover = some_of_each_kind(&cuts, recoveries);
            if !all_kinds && recover.len() > 2 {
                let n = recover.len();
                let p = here.points;
                recover = vec![recover[p % n], recover[(p + n / 2) % n]];
            }
            for cut in recover {
                here.recovered += 1;
                if let Err(e) = check(&dir, &point, cut, &acks).await {
                    failures.push(format!("{}, recovering: {e}", at(&cut)));
                }
            }
            here.recovering += t.elapsed();
        }
        println!(
            "{workload:?}: {} syncs, {} failed; {here}",
            recording.syncs(),
            failures.len(),
        );
        assert!(
            failures.is_empty(),
            "{workload:?}: {} cuts failed:\n{}",
            failures.len(),
            failures[..failures.len().min(20)].join("\n")
        );
        total.add(&here);
    }
    println!(
        "power loss: {total}; nothing acknowledged lost ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(total.points >= 200, "{} crash points", total.points);
    assert!(
        chosen || total.inspected >= 50_000,
        "{} cuts: the default must make at least 50,000",
        total.inspected
    );
}

#[derive(Debug, Default)]
struct Tally {
    points: usize,
    inspected: usize,
    recovered: usize,
    inspecting: Duration,
    recovering: Duration,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.points += other.points;
        self.inspected += other.inspected;
        self.recovered += other.recovered;
        self.inspecting += other.inspecting;
        self.recovering += other.recovering;
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = |d: Duration, n: usize| d.as_secs_f64() * 1e3 / n.max(1) as f64;
        write!(
            f,
            "{} crash points, {} cuts inspected ({:.2} ms each), {} recovered by a flow ({:.1} ms each)",
            self.points,
            self.inspected,
            per(self.inspecting, self.inspected),
            self.recovered,
            per(self.recovering, self.recovered)
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_while_the_file_is_first_created_never_leaves_one_that_cannot_open() {
    // What redb writes for a new database, recorded: taskflow writes it under a temporary
    // name and renames the file into place only once it is complete and synced.
    let scratch = TempDataDir::new();
    let backend = PowerCutBackend::recording();
    builder(&scratch, backend.clone(), Arc::default())
        .build()
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    let recording = backend.recording_so_far();
    let (mut cuts, mut started, mut broken_in_place) = (0usize, 0usize, 0usize);
    for point in recording.crash_points() {
        let all = point.cuts(75, point.synced() * 1_000);
        for &cut in &all {
            cuts += 1;
            // Had redb created the file in place, this image would be the data file.
            let in_place = std::panic::catch_unwind(|| {
                RedbStore::open_on(
                    scratch.path(),
                    PowerCutBackend::from_image(point.image(cut)),
                )
                .map(drop)
            })
            .unwrap_or_else(|_| panic!("opening {cut:?} after sync {} panicked", point.synced()));
            if let Err(e) = in_place {
                broken_in_place += 1;
                assert!(!e.to_string().is_empty());
            }
        }
        // As taskflow creates it: the image is a leftover under the temporary name, and the
        // next start removes it, creates the file again and runs work.
        for cut in some_of_each_kind(&all, 1) {
            started += 1;
            let data = TempDataDir::new();
            let leftover = data.path().join("taskflow.redb.creating-4242-17");
            std::fs::write(&leftover, point.image(cut)).unwrap();
            let ledger = Arc::new(Ledger::default());
            let flow = TaskFlow::builder()
                .data_dir(data.path())
                .register(power_cut_work)
                .state(ledger)
                .build()
                .await
                .unwrap_or_else(|e| panic!("after sync {}, {cut:?}: {e}", point.synced()));
            let plan = Plan {
                key: "after-creation".into(),
                steps: 2,
                emits: 1,
            };
            let run = flow.start(power_cut_work, plan).await.unwrap();
            assert_eq!(flow.wait(&run).await.unwrap().len(), 2);
            flow.shutdown().await.unwrap();
            assert!(!leftover.exists(), "the cut-short file was removed");
        }
    }
    println!(
        "first creation: {} syncs, {cuts} cuts; {broken_in_place} would not open had the file been created in place; {started} starts from a leftover, all ran work",
        recording.syncs()
    );
    assert!(started >= 8);
    // Why the file is created under another name: redb's in-place creation can be cut into
    // a file that never opens (if a redb release makes creation atomic, this fails: then the
    // rename is no longer needed).
    assert!(broken_in_place > 0, "every cut image opened in place");
}
