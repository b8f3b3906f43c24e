//! A `#[task]` handle on a real flow: name, options, input/output types, events.

use serde::{Deserialize, Serialize};
use taskflow::prelude::*;
use taskflow::testing::TempDataDir;
use taskflow::{ExecuteMode, Task};

use crate::roundtrip::Progress;

#[derive(Debug, Serialize, Deserialize)]
struct Input {
    n: u32,
}

/// Counts to n.
#[task(name = "count-to-n", events = Progress, max_attempts = 5, recovery_max_age = "90s", execute_mode = at_most_once)]
async fn count_to_n(ctx: TaskContext<Progress>, input: Input) -> Result<u32, TaskError> {
    let mut sum = 0;
    for i in 0..input.n {
        sum += ctx
            .step("add", || async move { Ok::<_, TaskError>(i) })
            .await?;
        ctx.emit(Progress::Tick {
            value: i + 1,
            total: input.n,
        })
        .await?;
    }
    Ok(sum)
}

#[task]
async fn default_name(_ctx: TaskContext<NoEvents>, _input: ()) -> Result<(), std::io::Error> {
    Ok(())
}

#[test]
fn keys_become_options() {
    assert_eq!(count_to_n::NAME, "count-to-n");
    let o = count_to_n.options();
    assert_eq!(o.max_attempts.get(), 5);
    assert_eq!(o.recovery_max_age, std::time::Duration::from_secs(90));
    assert_eq!(o.execute_mode, ExecuteMode::AtMostOnce);
    assert!(o.auto_recover);
    assert_eq!(o.known_steps, Some(&["add"][..]));
    assert_eq!(default_name::NAME, "default-name");
    assert_eq!(
        default_name.options(),
        taskflow::TaskOptions::default().known_steps(&[])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handle_runs_with_typed_input_output_and_events() {
    let dir = TempDataDir::new();
    let flow = dir
        .builder()
        .register(count_to_n)
        .register(default_name)
        .build()
        .await
        .unwrap();
    let run = flow.start(count_to_n, Input { n: 4 }).await.unwrap();
    let mut sub = flow
        .subscribe_typed(&run, SubscribeFrom::Start)
        .await
        .unwrap();
    let mut ticks = Vec::new();
    while let Some(e) = sub.next().await {
        if let taskflow::TaskEvent::Progress { event, .. } = e.unwrap() {
            ticks.push(event);
        }
    }
    assert_eq!(ticks.len(), 4);
    assert_eq!(ticks[3], Progress::Tick { value: 4, total: 4 });
    let sum: u32 = flow.wait(&run).await.unwrap();
    assert_eq!(sum, 6);
    let unit = flow.start(default_name, ()).await.unwrap();
    flow.wait(&unit).await.unwrap();
    flow.shutdown().await.unwrap();
}
