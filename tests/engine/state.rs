//! The app's state reaches tasks per flow: two flows in one process never share it.

use taskflow::prelude::*;
use taskflow::testing::TempStore;
use taskflow::{TaskError, WaitError};

/// What a test app would hand its tasks: a "pool" with a name.
struct Pool {
    name: String,
}

#[task(name = "state-reader")]
async fn state_reader(ctx: TaskContext<NoEvents>, tag: String) -> Result<String, TaskError> {
    let pool = ctx.state::<Pool>()?;
    Ok(format!("{tag}@{}", pool.name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_flows_in_one_process_each_see_their_own_state() {
    let (a_dir, b_dir) = (TempStore::new(), TempStore::new());
    let build = |dir: &TempStore, name: &str| {
        dir.builder()
            .register(state_reader)
            .state(Pool { name: name.into() })
            .build()
    };
    let (a, b) = tokio::join!(build(&a_dir, "a-pool"), build(&b_dir, "b-pool"));
    let (a, b) = (a.unwrap(), b.unwrap());
    let (ra, rb) = tokio::join!(
        a.start(state_reader, "x".into()),
        b.start(state_reader, "x".into())
    );
    assert_eq!(a.wait(&ra.unwrap()).await.unwrap(), "x@a-pool");
    assert_eq!(b.wait(&rb.unwrap()).await.unwrap(), "x@b-pool");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_state_fails_the_run_once_saying_what_to_add() {
    let dir = TempStore::new();
    let flow = dir.builder().register(state_reader).build().await.unwrap();
    let run = flow.start(state_reader, "y".into()).await.unwrap();
    match flow.wait(&run).await {
        Err(WaitError::Failed(e)) => {
            assert_eq!(e.code, "missing_state");
            assert!(
                e.message.contains("TaskFlowBuilder::state"),
                "{}",
                e.message
            );
        }
        other => panic!("{other:?}"),
    }
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert_eq!(status.failed_attempts, 1, "a missing state is permanent");
    flow.shutdown().await.unwrap();
}
