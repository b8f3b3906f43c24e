//! Deploying changed task code: a run interrupted under version 1 of a task is never replayed
//! into version 2. On redb the new process sets it aside by the builder's policy (suspended by
//! default, or failed with `incompatible_version`), says so in `check_in_flight` and a metric,
//! and the old code finishes it after a resume. On PostgreSQL a process claims only runs of
//! the versions it has, so an old process finishes the old runs during a rolling deploy.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use taskflow::prelude::*;
use taskflow::testing::{SimulateCrash, TempDataDir};
use taskflow::{INCOMPATIBLE_VERSION, IncompatibleRuns, TaskState};

/// How often something ran, counted per run tag: the tests run at once, and one test's runs
/// must not move another's counts.
struct Counts(Mutex<BTreeMap<String, u32>>);

impl Counts {
    const fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }

    fn bump(&self, tag: &str) {
        *self.0.lock().unwrap().entry(tag.to_owned()).or_default() += 1;
    }

    fn get(&self, tag: &str) -> u32 {
        self.0.lock().unwrap().get(tag).copied().unwrap_or(0)
    }
}

/// Version 1's first step, per tag.
static V1_STEPS: Counts = Counts::new();
/// Bodies of the other versions, per tag.
static V2_BODIES: Counts = Counts::new();
/// Tags of runs whose handler waits after its first step (so a crash interrupts it).
static HELD: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn hold(tag: &str, on: bool) {
    let mut held = HELD.lock().unwrap();
    let held = held.get_or_insert_with(HashSet::new);
    if on {
        held.insert(tag.to_owned());
    } else {
        held.remove(tag);
    }
}

fn is_held(tag: &str) -> bool {
    HELD.lock()
        .unwrap()
        .as_ref()
        .is_some_and(|h| h.contains(tag))
}

/// Version 1: a step, then waits while its tag is held, so a crash interrupts it.
#[task(name = "deploy", version = 1)]
pub async fn deploy_v1(ctx: TaskContext<NoEvents>, tag: String) -> Result<u32, TaskError> {
    let n = ctx
        .step("prepare", || async {
            V1_STEPS.bump(&tag);
            Ok::<_, TaskError>(1u32)
        })
        .await?;
    while is_held(&tag) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(n)
}

/// Version 2 of the same task: another body, which must never see version 1's runs.
#[task(name = "deploy", version = 2)]
pub async fn deploy_v2(ctx: TaskContext<NoEvents>, tag: String) -> Result<u32, TaskError> {
    V2_BODIES.bump(&tag);
    ctx.step("prepare_v2", || async { Ok::<_, TaskError>(2u32) })
        .await
}

/// A run of version 1, interrupted by a crash after its first step.
async fn interrupted_v1(dir: &TempDataDir, tag: &str) -> taskflow::IdempotencyKey {
    hold(tag, true);
    let flow = dir.builder().register(deploy_v1).build().await.unwrap();
    let run = flow.start(deploy_v1, tag.to_owned()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while flow.metrics().steps_executed == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first step never committed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    flow.crash();
    run.idempotency_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_version_1_is_suspended_by_version_2_and_finished_by_version_1() {
    let dir = TempDataDir::new();
    let ik = interrupted_v1(&dir, "suspend-policy").await;
    let bodies = V2_BODIES.get("suspend-policy");
    let flow = dir.builder().register(deploy_v2).build().await.unwrap();
    let status = flow.status(&ik).await.unwrap();
    assert_eq!(status.status, TaskState::Suspended);
    assert_eq!(
        status.suspended_reason.as_deref(),
        Some(INCOMPATIBLE_VERSION)
    );
    assert_eq!(
        V2_BODIES.get("suspend-policy"),
        bodies,
        "version 2 never ran it"
    );
    assert_eq!(flow.metrics().runs_incompatible, 1);
    let found = flow.check_in_flight().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].idempotency_key, ik);
    assert!(
        found[0].problem.contains("created by version 1")
            && found[0].problem.contains("this process has version 2")
            && found[0].problem.contains("deploy version 1 of `deploy`"),
        "{}",
        found[0].problem
    );
    // A resume under version 2 sets it aside again, still without running it.
    flow.resume(&ik).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while flow.metrics().runs_incompatible < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the resume was not set aside"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(V2_BODIES.get("suspend-policy"), bodies);
    flow.shutdown().await.unwrap();

    // The old code comes back and finishes it, replaying its committed step.
    let steps = V1_STEPS.get("suspend-policy");
    hold("suspend-policy", false);
    let flow = dir.builder().register(deploy_v1).build().await.unwrap();
    assert!(flow.check_in_flight().await.unwrap().is_empty());
    flow.resume(&ik).await.unwrap();
    assert_eq!(flow.wait_json(&ik).await.unwrap(), serde_json::json!(1));
    assert_eq!(
        V1_STEPS.get("suspend-policy"),
        steps,
        "its step was replayed"
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fail_policy_fails_a_run_of_another_version_with_incompatible_version() {
    let dir = TempDataDir::new();
    let ik = interrupted_v1(&dir, "fail-policy").await;
    let flow = dir
        .builder()
        .register(deploy_v2)
        .incompatible_runs(IncompatibleRuns::Fail)
        .build()
        .await
        .unwrap();
    let status = flow.status(&ik).await.unwrap();
    assert_eq!(status.status, TaskState::Failed);
    let error = status.error.unwrap();
    assert_eq!(error.code, INCOMPATIBLE_VERSION);
    assert!(error.message.contains("version 1"), "{}", error.message);
    assert!(
        flow.check_in_flight().await.unwrap().is_empty(),
        "failed is not in flight"
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_process_claims_only_runs_of_the_versions_it_has() {
    let schema = taskflow::testing::TempSchema::new();
    let fast =
        |b: taskflow::TaskFlowBuilder| b.heartbeat_interval(taskflow::testing::TEST_HEARTBEAT);
    let old = fast(schema.builder())
        .register(deploy_v1)
        .build()
        .await
        .unwrap();
    hold("postgres", true);
    let run = old.start(deploy_v1, "postgres".to_owned()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while old.metrics().steps_executed == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first step never committed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    old.crash();
    let bodies = V2_BODIES.get("postgres");
    let new = fast(schema.builder())
        .register(deploy_v2)
        .build()
        .await
        .unwrap();
    // Well past the stale threshold: the new process could claim it, and does not.
    tokio::time::sleep(taskflow::testing::TEST_STALE_THRESHOLD * 3).await;
    assert_eq!(V2_BODIES.get("postgres"), bodies);
    assert_eq!(
        new.status(&run.idempotency_key).await.unwrap().status,
        TaskState::Running
    );
    let found = new.check_in_flight().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    // A process of the old version takes it and finishes it, replaying its step.
    hold("postgres", false);
    let steps = V1_STEPS.get("postgres");
    let again = fast(schema.builder())
        .register(deploy_v1)
        .build()
        .await
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(20), again.wait(&run))
        .await
        .expect("the old version finished it")
        .unwrap();
    assert_eq!(output, 1);
    assert_eq!(V1_STEPS.get("postgres"), steps, "replayed, not re-run");
    assert_eq!(V2_BODIES.get("postgres"), bodies);
    again.shutdown().await.unwrap();
    new.shutdown().await.unwrap();
}

/// Version 1 again, with its step renamed and the version left as it was: the mistake the
/// recorded step names catch.
#[task(name = "deploy", version = 1)]
pub async fn deploy_renamed(ctx: TaskContext<NoEvents>, tag: String) -> Result<u32, TaskError> {
    V2_BODIES.bump(&tag);
    ctx.step("get_ready", || async { Ok::<_, TaskError>(3u32) })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_step_was_renamed_is_set_aside_not_replayed() {
    let dir = TempDataDir::new();
    let ik = interrupted_v1(&dir, "renamed").await;
    let bodies = V2_BODIES.get("renamed");
    let flow = dir
        .builder()
        .register(deploy_renamed)
        .build()
        .await
        .unwrap();
    let status = flow.status(&ik).await.unwrap();
    assert_eq!(status.status, TaskState::Suspended);
    assert_eq!(
        status.suspended_reason.as_deref(),
        Some(INCOMPATIBLE_VERSION)
    );
    assert_eq!(V2_BODIES.get("renamed"), bodies, "never ran");
    assert_eq!(flow.metrics().runs_missing_step, 1);
    assert_eq!(flow.metrics().runs_incompatible, 0);
    let found = flow.check_in_flight().await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let problem = &found[0].problem;
    assert!(
        problem.contains(&found[0].task_id.to_string())
            && problem.contains("task `deploy`")
            && problem.contains("step `prepare#0`")
            && problem.contains("no step `prepare`")
            && problem.contains("#[task(version = N)]"),
        "{problem}"
    );
    // Resumed under the renamed code it is set aside again, still without running.
    flow.resume(&ik).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while flow.metrics().runs_missing_step < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the resume ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(V2_BODIES.get("renamed"), bodies);
    flow.shutdown().await.unwrap();

    // The fail policy fails it with the same words and code `incompatible_version`.
    let flow = dir
        .builder()
        .register(deploy_renamed)
        .incompatible_runs(IncompatibleRuns::Fail)
        .build()
        .await
        .unwrap();
    flow.resume(&ik).await.unwrap();
    let status = flow.wait_json(&ik).await.unwrap_err();
    let status_now = flow.status(&ik).await.unwrap();
    assert_eq!(status_now.status, TaskState::Failed, "{status}");
    let error = status_now.error.unwrap();
    assert_eq!(error.code, INCOMPATIBLE_VERSION);
    assert!(
        error.message.contains("no step `prepare`"),
        "{}",
        error.message
    );
    assert_eq!(V2_BODIES.get("renamed"), bodies);
    flow.shutdown().await.unwrap();
}

#[test]
fn the_task_macro_records_the_step_names_it_can_see() {
    use taskflow::Task;
    #[task]
    async fn literal(ctx: TaskContext<NoEvents>, n: u32) -> Result<u32, TaskError> {
        let a = ctx
            .step("fetch", || async move { Ok::<_, TaskError>(n) })
            .await?;
        let (b, c) = tokio::join!(
            ctx.step("left", || async { Ok::<_, TaskError>(1u32) }),
            ctx.step_with_origin("right", || async { Ok::<_, TaskError>(2u32) }),
        );
        let _ = ctx.is_cancelled();
        Ok(a + b? + c?.0)
    }
    #[task]
    async fn computed(ctx: TaskContext<NoEvents>, n: u32) -> Result<u32, TaskError> {
        let name = if n > 1 { "big" } else { "small" };
        ctx.step(name, || async move { Ok::<_, TaskError>(n) })
            .await
    }
    async fn helper(ctx: &TaskContext<NoEvents>) -> Result<u32, TaskError> {
        ctx.step("hidden", || async { Ok::<_, TaskError>(1u32) })
            .await
    }
    #[task]
    async fn handed_on(ctx: TaskContext<NoEvents>, _n: u32) -> Result<u32, TaskError> {
        helper(&ctx).await
    }
    #[task]
    async fn cloned(ctx: TaskContext<NoEvents>, _n: u32) -> Result<u32, TaskError> {
        let other = ctx.clone();
        other
            .step("seen", || async { Ok::<_, TaskError>(1u32) })
            .await
    }
    #[task]
    async fn none(_ctx: TaskContext<NoEvents>, n: u32) -> Result<u32, TaskError> {
        Ok(n)
    }
    assert_eq!(
        literal.options().known_steps,
        Some(&["fetch", "left", "right"][..])
    );
    assert_eq!(computed.options().known_steps, None, "a computed name");
    assert_eq!(
        handed_on.options().known_steps,
        None,
        "ctx passed to a helper"
    );
    assert_eq!(cloned.options().known_steps, None, "ctx cloned away");
    assert_eq!(none.options().known_steps, Some(&[][..]));
}
