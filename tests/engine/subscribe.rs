//! Subscriptions: replay after a position, then live, with no gap or duplicate.

use taskflow::testing::TempStore;
use taskflow::{Seq, SubscribeFrom};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_k_yields_exactly_the_rest_while_the_task_emits() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("sub-after");
    s.steps = 300;
    let run = flow.start(scripted, s).await.unwrap();
    let p = probe("sub-after");
    p.wait_progress(20).await;
    // Two subscribers join mid-run, at different positions, while events keep coming.
    let ik = run.idempotency_key.clone();
    let (late, early) = tokio::join!(
        all_events(&flow, &ik, SubscribeFrom::After(Seq::new(7))),
        all_events(&flow, &ik, SubscribeFrom::Start),
    );
    assert_eq!(late.first().unwrap().seq.get(), 8);
    assert_gapless(&late, 8);
    assert_gapless(&early, 1);
    assert_eq!(early.len(), 301);
    assert_eq!(
        &early[7..],
        &late[..],
        "both subscribers see the same sequence"
    );
    assert_eq!(early.last().unwrap().name, "completed");
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_past_the_end_means_from_the_start() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("sub-past-end");
    s.steps = 2;
    let run = flow.start(scripted, s).await.unwrap();
    flow.wait(&run).await.unwrap();
    let events = all_events(
        &flow,
        &run.idempotency_key,
        SubscribeFrom::After(Seq::new(99)),
    )
    .await;
    assert_eq!(events.len(), 3);
    assert_gapless(&events, 1);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_still_gets_all_10000_events() {
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("sub-lagging");
    s.steps = 1;
    s.events_per_step = 10_000;
    // Subscribe right after the start, then read nothing until all 10,000 events are
    // committed and the run has finished (10,000 commits: seconds to tens of seconds, by disk).
    let run = flow.start(scripted, s).await.unwrap();
    let mut sub = flow
        .subscribe(&run.idempotency_key, SubscribeFrom::Start)
        .await
        .unwrap();
    flow.wait(&run).await.unwrap();
    let mut seqs = Vec::new();
    while let Some(e) = sub.next().await {
        seqs.push(e.unwrap().seq.get());
    }
    assert_eq!(seqs.len(), 10_001, "10,000 ticks and `completed`");
    assert!(
        seqs.iter().copied().eq(1..=10_001),
        "gapless, in order, once each"
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_subscription_decodes_progress_and_the_output() {
    use taskflow::TaskEvent;
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("sub-typed");
    s.steps = 2;
    let run = flow.start(scripted, s).await.unwrap();
    let mut sub = flow
        .subscribe_typed(&run, SubscribeFrom::Start)
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(e) = sub.next().await {
        got.push(e.unwrap());
    }
    assert_eq!(got.len(), 3);
    assert!(matches!(
        &got[0],
        TaskEvent::Progress {
            event: Tick::Tick { i: 0, .. },
            ..
        }
    ));
    assert!(matches!(
        &got[1],
        TaskEvent::Progress {
            event: Tick::Tick { i: 1, .. },
            ..
        }
    ));
    match &got[2] {
        TaskEvent::Completed { seq, output } => {
            assert_eq!(seq.get(), 3);
            assert_eq!(output.values, vec![1, 1001]);
        }
        other => panic!("{other:?}"),
    }
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_streams_and_a_dropped_next_loses_nothing() {
    use futures_util::StreamExt;
    let dir = TempStore::new();
    let flow = fast_builder(&dir).build().await.unwrap();
    let mut s = Script::new("sub-stream");
    s.steps = 40;
    let run = flow.start(scripted, s).await.unwrap();
    let ik = run.idempotency_key.clone();
    // Read live with a next() that is often abandoned mid-read (as a select! with a timer
    // does): every event still arrives once, in order.
    let mut sub = flow.subscribe(&ik, SubscribeFrom::Start).await.unwrap();
    let mut live = Vec::new();
    loop {
        match tokio::time::timeout(std::time::Duration::from_micros(50), sub.next()).await {
            Ok(Some(e)) => live.push(e.unwrap()),
            Ok(None) => break,
            Err(_) => {} // the pending read is kept inside the subscription
        }
    }
    assert_gapless(&live, 1);
    assert_eq!(live.len(), 41);
    // The same events through the Stream impls, raw and typed.
    let raw: Vec<_> = flow
        .subscribe(&ik, SubscribeFrom::Start)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(raw, live);
    let typed: Vec<_> = flow
        .subscribe_typed(&run, SubscribeFrom::Start)
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(typed.len(), 41);
    assert!(matches!(
        typed.last(),
        Some(Ok(taskflow::TaskEvent::Completed { .. }))
    ));
    flow.shutdown().await.unwrap();
}
