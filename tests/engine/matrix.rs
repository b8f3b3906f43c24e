//! `taskflow::testing` as a user's test would use it: `run` a task once, and the
//! `CrashMatrix` crashing it at both sides of every commit. A task that branches on something
//! outside its steps is caught, and the failure names the point and what differed. The
//! matrices run on the store `TASKFLOW_TEST_STORE` names, so `both_stores` proves them on
//! redb and on PostgreSQL.

use std::sync::atomic::{AtomicU32, Ordering};

use taskflow::WaitError;
use taskflow::prelude::*;
use taskflow::testing::{CrashMatrix, CrashSide, MatrixError, TempStore};

#[path = "../../examples/demo/tasks.rs"]
#[allow(dead_code)]
mod demo_tasks;

#[events]
#[derive(Debug, Clone)]
pub enum Checkout {
    Reserved { items: u32 },
    Charged { cents: u64 },
}

/// Reserves, charges and ships: three steps, two progress events.
#[task(name = "matrix_checkout")]
pub async fn checkout(ctx: TaskContext<Checkout>, cents: u64) -> Result<String, TaskError> {
    let items = ctx
        .step("reserve", || async { Ok::<_, TaskError>(3u32) })
        .await?;
    ctx.emit(Checkout::Reserved { items }).await?;
    let charged = ctx
        .step("charge", || async move { Ok::<_, TaskError>(cents) })
        .await?;
    ctx.emit(Checkout::Charged { cents: charged }).await?;
    let label = ctx
        .step("ship", || async move {
            Ok::<_, TaskError>(format!("{items} items, {charged} cents"))
        })
        .await?;
    Ok(label)
}

static FLIPS: AtomicU32 = AtomicU32::new(0);

/// Broken on purpose: what it emits depends on a counter outside any step, so a replay after a
/// crash emits something else than the first run did.
#[task(name = "matrix_flaky")]
pub async fn flaky(ctx: TaskContext<Checkout>, _input: ()) -> Result<u32, TaskError> {
    let n = ctx
        .step("first", || async { Ok::<_, TaskError>(1u32) })
        .await?;
    let items = FLIPS.fetch_add(1, Ordering::SeqCst);
    ctx.emit(Checkout::Reserved { items }).await?;
    ctx.step("second", || async { Ok::<_, TaskError>(2u32) })
        .await?;
    Ok(n)
}

static PATHS: AtomicU32 = AtomicU32::new(0);

/// Broken on purpose: which step it takes depends on a counter outside any step; the output is
/// the same either way.
#[task(name = "matrix_forked")]
pub async fn forked(ctx: TaskContext<NoEvents>, _input: ()) -> Result<u32, TaskError> {
    if PATHS.fetch_add(1, Ordering::SeqCst) == 0 {
        ctx.step("left", || async { Ok::<_, TaskError>(7u32) })
            .await
    } else {
        ctx.step("right", || async { Ok::<_, TaskError>(7u32) })
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_names_the_step_a_branching_task_no_longer_reaches() {
    let error = CrashMatrix::new(forked, ())
        .store(TempStore::new)
        .run()
        .await
        .unwrap_err();
    println!("{error}");
    assert!(
        error
            .to_string()
            .contains("step `left#0` was never reached after the crash"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_the_output_the_events_and_each_steps_origin() {
    let report = taskflow::testing::run(checkout, 1250).await.unwrap();
    assert_eq!(report.output, "3 items, 1250 cents");
    let names: Vec<&str> = report.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["reserved", "charged", "completed"]);
    let steps: Vec<String> = report.steps.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(steps, ["reserve#0", "charge#0", "ship#0"]);
    assert!(
        report
            .steps
            .iter()
            .all(|s| s.origin == StepOrigin::Executed)
    );
    assert!(report.commits >= 4, "{} commits", report.commits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_crashes_a_sound_task_at_every_commit_and_recovers_it() {
    let report = CrashMatrix::new(checkout, 1250)
        .store(TempStore::new)
        .run()
        .await
        .unwrap();
    println!("{report}");
    assert!(report.commits >= 4, "{report}");
    assert_eq!(report.points.len() as u64, 2 * report.commits);
    assert!(
        report.points.len() - report.not_reached >= 6,
        "most points were reached: {report}"
    );
    // A crash before a step's commit runs its body again: the report says which (which ones
    // depends on how the commits were grouped in that run).
    assert!(!report.re_executed.is_empty(), "{report}");
    for step in report.re_executed.keys() {
        assert!(
            ["reserve#0", "charge#0", "ship#0"].contains(&step.as_str()),
            "{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_matrix_catches_a_task_that_branches_outside_its_steps() {
    let error = CrashMatrix::new(flaky, ())
        .store(TempStore::new)
        .run()
        .await
        .unwrap_err();
    println!("{error}");
    match &error {
        MatrixError::Broken { point, problem } => {
            assert!(point.commit >= 1);
            assert!(matches!(point.side, CrashSide::Before | CrashSide::After));
            assert!(problem.contains("`reserved`"), "{problem}");
            assert!(
                problem.contains("emits differently when it runs again"),
                "{problem}"
            );
        }
        other => panic!("expected a broken point, got {other}"),
    }
    assert!(error.to_string().starts_with("after a crash "), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_two_tasks_pass_the_matrix() {
    let count = demo_tasks::CountInput {
        run_key: "matrix".into(),
        n: 3,
        sleep_ms: 10,
    };
    let report = CrashMatrix::new(demo_tasks::count_to_n, count)
        .store(TempStore::new)
        .run()
        .await
        .unwrap();
    println!("count-to-n: {report}");
    let pipeline = demo_tasks::PipelineInput {
        run_key: "matrix".into(),
        stage_ms: 10,
    };
    // `from_cache` says whether a stage was replayed from the log, which a crash changes on
    // purpose: it is left out of the comparison.
    let report = CrashMatrix::new(demo_tasks::pipeline_with_steps, pipeline)
        .store(TempStore::new)
        .normalize_events(|e| {
            if let Some(data) = e.data.as_object_mut() {
                data.remove("from_cache");
            }
        })
        .run()
        .await
        .unwrap();
    println!("pipeline-with-steps: {report}");
}

static DECLINES: AtomicU32 = AtomicU32::new(0);

/// Reads the card limit from the app's state; declines above it with a code of its own.
#[task(name = "matrix_card")]
pub async fn card(ctx: TaskContext<Checkout>, cents: u64) -> Result<u64, TaskError> {
    let limit = *ctx.state::<u64>()?;
    charge_within(&ctx, cents, limit).await
}

/// A helper that takes the context, as handlers' helpers do.
async fn charge_within(
    ctx: &TaskContext<Checkout>,
    cents: u64,
    limit: u64,
) -> Result<u64, TaskError> {
    let charged = ctx
        .step("charge", || async move {
            if cents > limit {
                DECLINES.fetch_add(1, Ordering::SeqCst);
                return Err(TaskError::new("card declined").with_code("declined"));
            }
            Ok(cents)
        })
        .await?;
    ctx.emit(Checkout::Charged { cents: charged }).await?;
    Ok(charged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_is_callable_directly_with_a_test_context() {
    use taskflow::Task as _;
    use taskflow::testing::TestContext;

    let call = TestContext::<Checkout>::new()
        .call(|ctx| checkout.run(ctx, 1250))
        .await
        .unwrap();
    assert_eq!(call.result.unwrap(), "3 items, 1250 cents");
    let names: Vec<&str> = call.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["reserved", "charged", "completed"]);
    let steps: Vec<String> = call.steps.iter().map(|s| s.key.to_string()).collect();
    assert_eq!(steps, ["reserve#0", "charge#0", "ship#0"]);

    // The app's state comes from `configure`; the handler's own error comes back as it made
    // it, after one attempt (no retries in a test call).
    let declines = DECLINES.load(Ordering::SeqCst);
    let call = TestContext::<Checkout>::new()
        .configure(|b| b.state(1000u64))
        .call(|ctx| card.run(ctx, 1250))
        .await
        .unwrap();
    let error = call.result.unwrap_err();
    assert_eq!(
        (error.code(), error.message()),
        ("declined", "card declined")
    );
    assert_eq!(DECLINES.load(Ordering::SeqCst), declines + 1, "one attempt");
    assert!(call.events.iter().all(|e| e.name != "charged"));

    // A helper that takes the context, called on its own.
    let call = TestContext::<Checkout>::new()
        .call(|ctx| async move { charge_within(&ctx, 500, 1000).await })
        .await
        .unwrap();
    assert_eq!(call.result.unwrap(), 500);
    assert_eq!(call.events[0].name, "charged");

    // A closure that panics has no result to give: the call says the run failed.
    let error = TestContext::<NoEvents>::new()
        .call(|_ctx| async move {
            if DECLINES.load(Ordering::SeqCst) < u32::MAX {
                panic!("boom");
            }
            Ok::<u32, TaskError>(1)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, MatrixError::Wait(WaitError::Failed(e)) if e.code == "panicked"),
        "{error}"
    );
}
