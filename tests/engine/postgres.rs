//! What only the PostgreSQL store has: opening errors that name the server, migrations one
//! process at a time, a refused newer schema, and user data stored byte for byte.

use taskflow::prelude::*;
use taskflow::testing::TempSchema;
use taskflow::{BuildError, SubscribeFrom};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_named_without_its_password() {
    // Nothing listens on port 1.
    let e = taskflow::TaskFlow::builder()
        .postgres("postgres://app:hunter2@127.0.0.1:1/orders")
        .build()
        .await
        .map(|_| ())
        .unwrap_err();
    let message = e.to_string();
    println!("{message}");
    assert!(
        message.contains("127.0.0.1:1, database `orders`, user `app`"),
        "{message}"
    );
    assert!(message.contains("cannot connect"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_privilege_is_named() {
    let schema = TempSchema::new();
    let role = format!("{}_noprivs", schema.name());
    // A login role that may not create schemas in the database.
    run_sql(&format!("CREATE ROLE \"{role}\" LOGIN")).await;
    let url = format!("postgres://{role}@127.0.0.1:5432/test");
    let e = taskflow::TaskFlow::builder()
        .postgres(taskflow::store::PgConfig::new(url).schema(format!("{}_x", schema.name())))
        .build()
        .await
        .map(|_| ())
        .unwrap_err();
    run_sql(&format!("DROP ROLE \"{role}\"")).await;
    let message = e.to_string();
    println!("{message}");
    assert!(message.contains("permission denied"), "{message}");
    assert!(message.contains(&format!("user `{role}`")), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_at_once_migrate_one_at_a_time() {
    let schema = TempSchema::new();
    let builds = (0..6).map(|_| fast(schema.builder()).build());
    let flows: Vec<_> = futures_util::future::join_all(builds).await;
    for flow in flows {
        flow.expect("every concurrent opener succeeds")
            .shutdown()
            .await
            .unwrap();
    }
    let version = query_one(&format!(
        "SELECT value FROM \"{}\".meta WHERE key = 'schema_version'",
        schema.name()
    ))
    .await;
    assert_eq!(version, "4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let schema = TempSchema::new();
    fast(schema.builder())
        .build()
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    run_sql(&format!(
        "UPDATE \"{}\".meta SET value = 99 WHERE key = 'schema_version'",
        schema.name()
    ))
    .await;
    let e = fast(schema.builder())
        .build()
        .await
        .map(|_| ())
        .unwrap_err();
    match e {
        BuildError::SchemaTooNew {
            found: 99,
            supported: 4,
        } => {}
        other => panic!("expected SchemaTooNew, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_is_migrated_and_its_runs_are_version_1() {
    let schema = TempSchema::new();
    let flow = fast(schema.builder()).build().await.unwrap();
    let mut before = Script::new("pg-migrate-v1");
    before.steps = 1;
    let old = flow.start(scripted, before).await.unwrap();
    flow.wait(&old).await.unwrap();
    flow.shutdown().await.unwrap();
    // What a database of schema version 1 looks like: no version column, no waits, no
    // parent runs.
    run_sql(&format!(
        "ALTER TABLE \"{0}\".runs DROP COLUMN version; \
         ALTER TABLE \"{0}\".runs DROP COLUMN waiting; \
         ALTER TABLE \"{0}\".runs DROP COLUMN parent; \
         DROP INDEX \"{0}\".runs_leased; \
         UPDATE \"{0}\".meta SET value = 1 WHERE key = 'schema_version'",
        schema.name()
    ))
    .await;
    let flow = fast(schema.builder()).build().await.unwrap();
    let mut after = Script::new("pg-migrate-v2");
    after.steps = 1;
    let new = flow.start(scripted, after).await.unwrap();
    flow.wait(&new).await.unwrap();
    assert!(flow.status(&old.idempotency_key).await.is_ok());
    flow.shutdown().await.unwrap();
    let versions = query_one(&format!(
        "SELECT string_agg(version::text, ',' ORDER BY id) FROM \"{}\".runs",
        schema.name()
    ))
    .await;
    assert_eq!(versions, "1,1");
    let waits = query_one(&format!(
        "SELECT count(*)::text FROM \"{}\".runs WHERE waiting IS NULL",
        schema.name()
    ))
    .await;
    assert_eq!(waits, "2", "the waiting column is back, empty");
    let parents = query_one(&format!(
        "SELECT count(*)::text FROM \"{}\".runs WHERE parent IS NULL",
        schema.name()
    ))
    .await;
    assert_eq!(parents, "2", "the parent column is back, empty");
    let version = query_one(&format!(
        "SELECT value FROM \"{}\".meta WHERE key = 'schema_version'",
        schema.name()
    ))
    .await;
    assert_eq!(version, "4");
}

#[events]
#[derive(Debug, Clone, PartialEq)]
enum Echoed {
    Said { text: String },
}

/// Records its input as a step, emits it and returns it.
#[task(name = "pg-echo")]
async fn echo(ctx: TaskContext<Echoed>, text: String) -> Result<String, TaskError> {
    let text = ctx
        .step("echo", || async move { Ok::<_, TaskError>(text) })
        .await?;
    ctx.emit(Echoed::Said { text: text.clone() }).await?;
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_data_with_nul_characters_is_stored_exactly() {
    let schema = TempSchema::new();
    let flow = schema.builder().register(echo).build().await.unwrap();
    let text = "a\u{0}b \"quoted\" \\ \u{1F600}".to_owned();
    let run = flow.start(echo, text.clone()).await.unwrap();
    assert_eq!(flow.wait(&run).await.unwrap(), text);
    let events = all_events(&flow, &run.idempotency_key, SubscribeFrom::Start).await;
    assert_eq!(events[0].data, serde_json::json!({"text": text}));
    assert_eq!(events.len(), 2, "said, completed: {events:?}");
    flow.shutdown().await.unwrap();
}

async fn run_sql(sql: &str) {
    let _ = query_one(&format!("{sql}; SELECT 'done'")).await;
}

/// Runs `sql` on a connection of its own and returns the first column of its last row.
async fn query_one(sql: &str) -> String {
    let url = std::env::var(taskflow::testing::TEST_DATABASE_URL)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let mut last = String::new();
    for message in client.simple_query(sql).await.unwrap() {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            last = row.get(0).unwrap_or_default().to_owned();
        }
    }
    drop(client);
    let _ = driver.await;
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_misses_nothing_while_its_listener_is_cut_and_reconnects() {
    use std::sync::Arc;
    let schema = TempSchema::new();
    let store = Arc::new(
        taskflow::store::PgStore::connect(schema.config())
            .await
            .unwrap(),
    );
    let follower = fast(taskflow::TaskFlow::builder().store(store.clone()))
        .heartbeat_interval(taskflow::testing::TEST_HEARTBEAT)
        .build()
        .await
        .unwrap();
    let runner = fast(schema.builder()).build().await.unwrap();
    let mut s = Script::new("pg-deaf");
    s.steps = 40;
    s.step_sleep_ms = 25;
    let run = runner.start(scripted, s).await.unwrap();
    let mut sub = follower
        .subscribe(&run.idempotency_key, SubscribeFrom::Start)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(sub.next().await.unwrap().unwrap());
    }
    let listener = format!("taskflow listener {}", store.lease_owner());
    let cut = query_one(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{listener}'"
    ))
    .await;
    assert_eq!(cut, "1", "the follower's listener connection was cut");
    while let Some(event) = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
        .await
        .expect("the follower stalled")
    {
        seen.push(event.unwrap());
    }
    assert_gapless(&seen, 1);
    assert_eq!(seen.len(), 41, "40 ticks and completed: {seen:?}");
    assert_eq!(seen.last().unwrap().name, "completed");
    let back = query_one(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{listener}'"
    ))
    .await;
    assert_eq!(back, "1", "the listener reconnected");
    follower.shutdown().await.unwrap();
    runner.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_hands_its_runs_over_without_waiting_for_the_stale_threshold() {
    let schema = TempSchema::new();
    // A stale threshold far longer than the test may take.
    let config = || {
        schema
            .config()
            .stale_threshold(std::time::Duration::from_secs(60))
    };
    let leaving = fast(taskflow::TaskFlow::builder().postgres(config()))
        .heartbeat_interval(taskflow::testing::TEST_HEARTBEAT)
        .build()
        .await
        .unwrap();
    let staying = fast(taskflow::TaskFlow::builder().postgres(config()))
        .heartbeat_interval(taskflow::testing::TEST_HEARTBEAT)
        .build()
        .await
        .unwrap();
    let mut s = Script::new("pg-handover");
    s.steps = 30;
    s.step_sleep_ms = 30;
    let run = leaving.start(scripted, s.clone()).await.unwrap();
    probe("pg-handover").wait_progress(2).await;
    let stopped = std::time::Instant::now();
    leaving.shutdown().await.unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), staying.wait(&run))
        .await
        .expect("the other process took the run over long before the 60 s threshold")
        .unwrap();
    assert_eq!(out.values.len(), 30);
    println!(
        "a run handed over on shutdown finished {:?} later",
        stopped.elapsed()
    );
    assert_eq!(
        probe("pg-handover")
            .reran_after_commit
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    staying.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_run_that_does_not_decode_is_named_and_not_kept() {
    let schema = TempSchema::new();
    let flow = fast(schema.builder()).build().await.unwrap();
    let mut s = Script::new("pg-undecodable");
    s.steps = 1;
    s.hold = true;
    let run = flow.start(scripted, s).await.unwrap();
    probe("pg-undecodable").wait_progress(1).await;
    taskflow::testing::SimulateCrash::crash(&flow);
    // A value this taskflow cannot read, as a newer or damaged writer could leave.
    run_sql(&format!(
        "UPDATE \"{}\".runs SET execute_mode = 'bogus', lease_expires_at = now()",
        schema.name()
    ))
    .await;
    let e = fast(schema.builder())
        .build()
        .await
        .map(|_| ())
        .unwrap_err();
    let message = e.to_string();
    assert!(
        message.contains(&format!("run {}", run.task_id)),
        "{message}"
    );
    let kept = query_one(&format!(
        "SELECT count(*) FROM \"{}\".runs WHERE lease_expires_at > now()",
        schema.name()
    ))
    .await;
    assert_eq!(kept, "0", "the failed claim gave the run back");
    probe("pg-undecodable").release();
}
