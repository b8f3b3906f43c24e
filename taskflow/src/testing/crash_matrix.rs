//! A user's task, crashed at every commit: [`run`] runs it once; [`CrashMatrix`] runs it once
//! to learn its commits, then for each commit k crashes it right before k is written and right
//! after k is durable (before anyone hears of it), reopens the store (a redb data dir, or a
//! PostgreSQL schema through [`CrashMatrix::store`]), lets recovery finish the run, and
//! compares everything with the uncrashed run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::context::StepOrigin;
use crate::engine::{StartOptions, TaskFlow, TaskFlowBuilder};
use crate::error::{BuildError, ControlError, StartError, WaitError};
use crate::ids::{IdempotencyKey, Seq, StepKey, TaskId};
use crate::status::{StoredEvent, SubscribeFrom};
use crate::store::{DynStore, RedbStore};
use crate::task::Task;

use super::commit_crash::CrashAtCommit;
pub use super::commit_crash::Side as CrashSide;
use super::{StepCall, StepLog, TempDataDir, TempStore};

/// How long one life of the task may take before the matrix calls it stuck.
const LIFE_LIMIT: Duration = Duration::from_secs(60);

/// What one uncrashed run of a task did.
#[derive(Debug)]
#[non_exhaustive]
pub struct RunReport<T: Task> {
    /// The output.
    pub output: T::Output,
    /// Every event a subscriber from the start saw, lifecycle events included.
    pub events: Vec<StoredEvent>,
    /// Each `ctx.step` in order, and whether its body ran or was replayed.
    pub steps: Vec<StepCall>,
    /// Commits the store made for it.
    pub commits: u64,
}

/// Why [`run`] or [`CrashMatrix::run`] could not give a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MatrixError {
    /// The flow did not build (the configure closure's settings, or the data dir).
    #[error("the flow did not build: {0}")]
    Build(#[from] BuildError),
    /// The task did not start.
    #[error("the task did not start: {0}")]
    Start(#[from] StartError),
    /// The task did not complete (the matrix needs a task that completes when nothing
    /// crashes).
    #[error("the task did not complete: {0}")]
    Wait(#[from] WaitError),
    /// Following the run's events failed.
    #[error("following the run's events failed: {0}")]
    Events(String),
    /// The input or the output does not serialise.
    #[error("the input or output does not serialise: {0}")]
    Json(#[from] serde_json::Error),
    /// A life took longer than a minute.
    #[error("{0} took longer than {LIFE_LIMIT:?}")]
    Stuck(String),
    /// A crash at `point` broke the run: `problem` says how, and whose it is to fix.
    #[error("after a crash {point}: {problem}")]
    Broken {
        /// Where the crash was.
        point: CommitPoint,
        /// What differed from the uncrashed run.
        problem: String,
    },
}

impl From<ControlError> for MatrixError {
    fn from(e: ControlError) -> Self {
        Self::Events(e.to_string())
    }
}

/// One crash point: a side of the k-th commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPoint {
    /// The commit, counted from 1 in the order the store made them.
    pub commit: u64,
    /// Before it was written, or after it was durable.
    pub side: CrashSide,
}

impl fmt::Display for CommitPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.side {
            CrashSide::Before => write!(f, "before commit {}", self.commit),
            CrashSide::After => write!(
                f,
                "after commit {} (durable, not yet acknowledged)",
                self.commit
            ),
        }
    }
}

/// What a [`CrashMatrix`] tried.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MatrixReport {
    /// Commits of the uncrashed run: the matrix tried both sides of each.
    pub commits: u64,
    /// Crash points tried (a point the run finished before is counted as not reached).
    pub points: Vec<CommitPoint>,
    /// Points the crashed life finished before reaching (commits are grouped by timing).
    pub not_reached: usize,
    /// Steps whose body ran again after a crash because its result had not been committed
    /// yet, with how often: their side effects happen more than once, so they must be
    /// idempotent.
    pub re_executed: BTreeMap<String, u32>,
}

impl fmt::Display for MatrixReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} commits, {} crash points tried ({} not reached), every one recovered to the uncrashed output and events",
            self.commits,
            self.points.len(),
            self.not_reached
        )?;
        if !self.re_executed.is_empty() {
            write!(
                f,
                "; steps that ran again (not yet committed at the crash; keep them idempotent):"
            )?;
            for (step, n) in &self.re_executed {
                write!(f, " `{step}` ×{n}")?;
            }
        }
        Ok(())
    }
}

type Configure = Arc<dyn Fn(TaskFlowBuilder) -> TaskFlowBuilder + Send + Sync>;
type Normalize = Arc<dyn Fn(&mut StoredEvent) + Send + Sync>;
type StoreFactory = Arc<dyn Fn() -> TempStore + Send + Sync>;

/// Runs `task` once on a flow over a temporary data dir and reports what it did.
///
/// # Errors
/// [`MatrixError`]: the flow did not build, the task failed, or events could not be read.
pub async fn run<T: Task>(task: T, input: T::Input) -> Result<RunReport<T>, MatrixError> {
    CrashMatrix::new(task, input).run_once().await
}

/// Crashes `task` at every commit and checks that recovery gives what an uncrashed run gives.
///
/// ```no_run
/// # use taskflow::prelude::*;
/// # #[task] async fn charge(ctx: TaskContext<NoEvents>, cents: u64) -> Result<u64, TaskError> {
/// #     ctx.step("charge", || async move { Ok::<_, TaskError>(cents) }).await }
/// # async fn demo() -> Result<(), taskflow::testing::MatrixError> {
/// let report = taskflow::testing::CrashMatrix::new(charge, 1250).run().await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
pub struct CrashMatrix<T: Task> {
    task: T,
    input: serde_json::Value,
    configure: Configure,
    normalize: Normalize,
    store: StoreFactory,
    input_error: Option<String>,
}

impl<T: Task> fmt::Debug for CrashMatrix<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashMatrix")
            .field("task", &T::NAME)
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

/// One life of the task on a data dir: what it saw before it ended or crashed.
#[derive(Default)]
struct Life {
    ik: Option<IdempotencyKey>,
    run: Option<TaskId>,
    events: Vec<StoredEvent>,
    steps: Vec<StepCall>,
    output: Option<serde_json::Value>,
    crashed: bool,
    commits: u64,
}

impl<T: Task> CrashMatrix<T> {
    /// A matrix for `task` with `input`, on redb data dirs of its own (see [`Self::store`]).
    #[must_use]
    pub fn new(task: T, input: T::Input) -> Self {
        let (input, input_error) = match serde_json::to_value(&input) {
            Ok(v) => (v, None),
            Err(e) => (serde_json::Value::Null, Some(e.to_string())),
        };
        Self {
            task,
            input,
            configure: Arc::new(|b| b),
            normalize: Arc::new(|_| {}),
            store: Arc::new(|| TempStore::Redb(TempDataDir::new())),
            input_error,
        }
    }

    /// Applies `f` to every flow's builder (app state, other tasks, limits); the data dir and
    /// the task are the matrix's.
    #[must_use]
    pub fn configure(
        mut self,
        f: impl Fn(TaskFlowBuilder) -> TaskFlowBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure = Arc::new(f);
        self
    }

    /// Where the runs are kept: `make` gives a fresh, empty store for the uncrashed run and
    /// for each crash point (default: a redb data dir). `.store(TempStore::new)` follows
    /// [`TEST_STORE`](super::TEST_STORE), so one test covers both stores; on PostgreSQL each
    /// point waits out the crashed flow's leases ([`TEST_STALE_THRESHOLD`](super::TEST_STALE_THRESHOLD))
    /// before recovery, as after a real kill.
    #[must_use]
    pub fn store(mut self, make: impl Fn() -> TempStore + Send + Sync + 'static) -> Self {
        self.store = Arc::new(make);
        self
    }

    /// Applies `f` to every event before the crashed and the uncrashed events are compared:
    /// for a field that says whether a step was replayed (`StepOrigin`), which a crash changes
    /// by design. Remove or overwrite it there.
    #[must_use]
    pub fn normalize_events(
        mut self,
        f: impl Fn(&mut StoredEvent) + Send + Sync + 'static,
    ) -> Self {
        self.normalize = Arc::new(f);
        self
    }

    async fn run_once(self) -> Result<RunReport<T>, MatrixError> {
        let store = (self.store)();
        let life = self.life(&store, None, None).await?;
        let output = life
            .output
            .ok_or_else(|| MatrixError::Stuck("the run".into()))?;
        Ok(RunReport {
            output: serde_json::from_value(output)?,
            events: life.events,
            steps: life.steps,
            commits: life.commits,
        })
    }

    /// Runs the matrix: the uncrashed run, then both sides of each of its commits.
    ///
    /// # Errors
    /// [`MatrixError::Broken`] at the first crash point whose recovery differs from the
    /// uncrashed run, saying how; the other variants when a run cannot be made at all.
    pub async fn run(self) -> Result<MatrixReport, MatrixError> {
        if let Some(e) = &self.input_error {
            return Err(MatrixError::Events(format!(
                "the input does not serialise: {e}"
            )));
        }
        let reference = self.life(&(self.store)(), None, None).await?;
        let mut report = MatrixReport {
            commits: reference.commits,
            ..MatrixReport::default()
        };
        for commit in 1..=reference.commits {
            for side in [CrashSide::Before, CrashSide::After] {
                let point = CommitPoint { commit, side };
                report.points.push(point);
                self.one_point(point, &reference, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn one_point(
        &self,
        point: CommitPoint,
        reference: &Life,
        report: &mut MatrixReport,
    ) -> Result<(), MatrixError> {
        let broken = |problem: String| MatrixError::Broken { point, problem };
        let store = (self.store)();
        let trigger = Arc::new(CrashAtCommit::new(point.commit, point.side));
        let first = self.life(&store, Some(trigger), None).await?;
        if !first.crashed {
            report.not_reached += 1;
            return Ok(());
        }
        let (durable_run, durable) = durable_steps(&store, first.ik.as_ref()).await?;
        let after = first.events.last().map(|e| e.seq);
        let second = self.life(&store, None, after).await?;
        if let Some(run) = durable_run
            && second.run != Some(run)
        {
            return Err(broken(format!(
                "run {run} did not resume after the crash: the key got a new run (the crashed one ended, failed or cancelled, instead of being recovered; a taskflow bug unless the task's own settings say so)"
            )));
        }
        let output = second
            .output
            .ok_or_else(|| MatrixError::Stuck(format!("recovery after a crash {point}")))?;
        if Some(&output) != reference.output.as_ref() {
            return Err(broken(format!(
                "the output was {output}, the uncrashed run's {}: the handler is not deterministic (read clocks, randomness and outside state only inside a step)",
                reference
                    .output
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string)
            )));
        }
        let seen: Vec<&StoredEvent> = first.events.iter().chain(&second.events).collect();
        check_events(&seen, &reference.events, &*self.normalize).map_err(broken)?;
        for call in &second.steps {
            if call.origin == StepOrigin::Executed && durable.contains(&call.key) {
                return Err(broken(format!(
                    "step `{}` ran again although its result was committed: taskflow lost a recorded step (a taskflow bug; please report it)",
                    call.key
                )));
            }
        }
        // Every step ran (or was replayed) in one of the lives, or was durable already (a run
        // that finished before the crash replays nothing after it).
        let ran: BTreeSet<&StepKey> = first
            .steps
            .iter()
            .chain(&second.steps)
            .map(|c| &c.key)
            .chain(&durable)
            .collect();
        if let Some(missing) = reference.steps.iter().find(|c| !ran.contains(&c.key)) {
            return Err(broken(format!(
                "step `{}` was never reached after the crash: the handler took another path (its control flow must depend only on the input and step results)",
                missing.key
            )));
        }
        let executed_first: BTreeSet<&StepKey> = first
            .steps
            .iter()
            .filter(|c| c.origin == StepOrigin::Executed)
            .map(|c| &c.key)
            .collect();
        for call in &second.steps {
            if call.origin == StepOrigin::Executed && executed_first.contains(&call.key) {
                *report.re_executed.entry(call.key.to_string()).or_default() += 1;
            }
        }
        Ok(())
    }

    /// One life on `store`: starts (or re-attaches to) the run, follows its events after
    /// `after`, and waits for the end or for `trigger`'s crash.
    async fn life(
        &self,
        store: &TempStore,
        trigger: Option<Arc<CrashAtCommit>>,
        after: Option<Seq>,
    ) -> Result<Life, MatrixError> {
        let log = StepLog::new();
        let mut builder = (self.configure)(store.builder())
            .register(self.task)
            .step_log(log.clone());
        if let Some(t) = &trigger {
            builder = builder.crash_at_commit(t.clone());
        }
        let flow = builder.build().await?;
        let crash = async {
            match &trigger {
                Some(t) => t.wait().await,
                None => std::future::pending().await,
            }
        };
        let seen = Mutex::new(Life::default());
        let lived = tokio::time::timeout(LIFE_LIMIT, async {
            tokio::select! {
                lived = self.live(&flow, after, &seen) => lived,
                () = crash => Ok(()),
            }
        })
        .await;
        let crashed = trigger.as_ref().is_some_and(|t| t.fired());
        let mut life = seen.into_inner().unwrap_or_else(PoisonError::into_inner);
        life.crashed = crashed;
        life.commits = flow.metrics().wal_commits;
        life.steps = log.calls();
        if crashed {
            store.crash(&flow).await;
        } else {
            let shut = flow.shutdown().await;
            match lived {
                Err(_) => return Err(MatrixError::Stuck("a life of the task".into())),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(())) => {}
            }
            shut.map_err(|e| MatrixError::Events(e.to_string()))?;
        }
        Ok(life)
    }

    async fn live(
        &self,
        flow: &TaskFlow,
        after: Option<Seq>,
        seen: &Mutex<Life>,
    ) -> Result<(), MatrixError> {
        let lock = || seen.lock().unwrap_or_else(PoisonError::into_inner);
        let handle = flow
            .start_json(T::NAME, self.input.clone(), StartOptions::new())
            .await?;
        let ik = handle.idempotency_key;
        lock().ik = Some(ik.clone());
        lock().run = Some(handle.task_id);
        let from = after.map_or(SubscribeFrom::Start, SubscribeFrom::After);
        let mut events = flow.subscribe(&ik, from).await?;
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| MatrixError::Events(e.to_string()))?;
            lock().events.push(event);
        }
        let output = flow.wait_json(&ik).await?;
        lock().output = Some(output);
        Ok(())
    }
}

/// `ik`'s durable run in `store` and its durable step keys (read by a store of its own, no
/// engine).
async fn durable_steps(
    store: &TempStore,
    ik: Option<&IdempotencyKey>,
) -> Result<(Option<TaskId>, BTreeSet<StepKey>), MatrixError> {
    let Some(ik) = ik else {
        return Ok((None, BTreeSet::new()));
    };
    let failed = |e: crate::error::StoreError| MatrixError::Events(e.to_string());
    let reader: DynStore = match store {
        TempStore::Redb(dir) | TempStore::RedbJournal(dir) => {
            let path = dir.path().to_owned();
            let redb = tokio::task::spawn_blocking(move || RedbStore::open(path))
                .await
                .map_err(|e| MatrixError::Events(e.to_string()))??;
            Arc::new(redb)
        }
        #[cfg(feature = "postgres")]
        TempStore::Postgres(schema) => {
            Arc::new(crate::store::PgStore::connect(schema.config()).await?)
        }
    };
    let read = async {
        let (run, _) = reader.current_run(ik).await?;
        match run {
            Some(run) => Ok((Some(run.id), reader.steps(run.id).await?)),
            None => Ok((None, Vec::new())),
        }
    }
    .await;
    reader.close().await.map_err(failed)?;
    let (run, steps) = read.map_err(failed)?;
    Ok((run, steps.into_iter().map(|(key, _)| key).collect()))
}

/// What subscribers of both lives saw, against the uncrashed run's events: gapless ids, each
/// once, and the same progress events in the same order.
fn check_events(
    seen: &[&StoredEvent],
    reference: &[StoredEvent],
    normalize: &(dyn Fn(&mut StoredEvent) + Send + Sync),
) -> Result<(), String> {
    for pair in seen.windows(2) {
        if pair[1].seq.get() != pair[0].seq.get() + 1 {
            return Err(format!(
                "a subscriber saw event {} then {}: a gap or a duplicate (a taskflow bug; please report it)",
                pair[0].seq, pair[1].seq
            ));
        }
    }
    let progress = |events: Vec<&StoredEvent>| -> Vec<(String, serde_json::Value)> {
        events
            .into_iter()
            .filter(|e| !e.is_lifecycle())
            .map(|e| {
                let mut e = e.clone();
                normalize(&mut e);
                (e.name, e.data)
            })
            .collect()
    };
    let got = progress(seen.to_vec());
    let want = progress(reference.iter().collect());
    if got != want {
        let at = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        let describe = |e: Option<&(String, serde_json::Value)>| {
            e.map_or_else(|| "nothing".to_owned(), |(n, d)| format!("`{n}` {d}"))
        };
        return Err(format!(
            "progress event {} was {}, the uncrashed run's {}: the handler emits differently when it runs again (it must emit only from the input and step results)",
            at + 1,
            describe(got.get(at)),
            describe(want.get(at))
        ));
    }
    Ok(())
}
