//! The redb store: group commit, durability before release, fail-stop, exclusivity, schema.

use std::sync::atomic::Ordering;
use std::time::Duration;

use taskflow::testing::{InstrumentedBackend, SimulateCrash, TempDataDir};
use taskflow::{BuildError, StartError, StoreError, TaskState};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_64_tasks_x_100_steps_share_fsyncs() {
    let dir = TempDataDir::new();
    let (backend, probe_io) = InstrumentedBackend::create(dir.path()).unwrap();
    let flow = fast(dir.builder())
        .storage_backend(dir.path(), backend)
        .max_concurrent(64)
        .build()
        .await
        .unwrap();
    // What one lone durable commit costs in fsyncs, measured on this backend.
    let lone = flow.start(scripted, Script::new("gc-lone")).await.unwrap();
    flow.wait(&lone).await.unwrap();
    let s0 = probe_io.syncs();
    let (w0, b0) = (probe_io.writes(), probe_io.written_bytes());
    let c0 = flow.metrics().wal_commits;
    let single = flow
        .start(scripted, Script::new("gc-single"))
        .await
        .unwrap();
    flow.wait(&single).await.unwrap();
    let (writes, bytes) = (probe_io.writes() - w0, probe_io.written_bytes() - b0);
    assert!(
        writes > 0 && bytes >= 4096,
        "a committed run rewrote at least one 4 KiB B-tree page: {writes} writes, {bytes} bytes"
    );
    let syncs_per_commit =
        (probe_io.syncs() - s0) as f64 / (flow.metrics().wal_commits - c0) as f64;

    let before = flow.metrics();
    let syncs_before = probe_io.syncs();
    let mut runs = Vec::new();
    for t in 0..64 {
        let mut s = Script::new(&format!("gc-{t}"));
        s.steps = 100;
        runs.push(flow.start(scripted, s).await.unwrap());
    }
    for run in &runs {
        flow.wait(run).await.unwrap();
    }
    let after = flow.metrics();
    let writes = after.wal_batches - before.wal_batches;
    let commits = after.wal_commits - before.wal_commits;
    let syncs = probe_io.syncs() - syncs_before;
    println!(
        "64x100: {writes} write batches in {commits} commits ({:.1} per commit), {syncs} fsyncs, {syncs_per_commit} fsyncs per commit, max group {}",
        writes as f64 / commits as f64,
        after.wal_max_group
    );
    assert!(
        writes >= 64 * 100 * 2,
        "every step and every event was written"
    );
    assert!(
        commits * 4 <= writes,
        "{commits} commits for {writes} writes"
    );
    assert!(
        (syncs as f64) <= syncs_per_commit * writes as f64 / 4.0,
        "{syncs} fsyncs for {writes} writes"
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_writer_is_released_before_its_fsync_returns_and_a_lone_writer_waits_for_nobody() {
    let dir = TempDataDir::new();
    let (backend, probe_io) = InstrumentedBackend::create(dir.path()).unwrap();
    let flow = fast(dir.builder())
        .storage_backend(dir.path(), backend)
        .build()
        .await
        .unwrap();
    assert_eq!(flow.metrics().wal_commits, 0);
    probe_io.hold_syncs();
    let starter = {
        let flow = flow.clone();
        tokio::spawn(async move { flow.start(scripted, Script::new("gate-1")).await })
    };
    // The lone write reaches fsync with nobody else around: no linger timer held it back.
    let held = {
        let probe_io = probe_io.clone();
        tokio::task::spawn_blocking(move || probe_io.wait_for_held_sync(Duration::from_secs(10)))
            .await
            .unwrap()
    };
    assert!(held, "the lone writer's commit never reached fsync");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !starter.is_finished(),
        "start() returned before its fsync completed"
    );
    assert_eq!(flow.metrics().wal_commits, 0);
    probe_io.release_syncs();
    let run = starter.await.unwrap().unwrap();
    flow.wait(&run).await.unwrap();
    assert_eq!(
        flow.metrics().wal_max_group,
        1,
        "the lone writer was committed alone"
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_at_commit_fail_stops_and_loses_nothing_acknowledged() {
    let dir = TempDataDir::new();
    let (backend, probe_io) = InstrumentedBackend::create(dir.path()).unwrap();
    let flow = fast(dir.builder())
        .storage_backend(dir.path(), backend)
        .build()
        .await
        .unwrap();
    let mut done = Script::new("io-done");
    done.steps = 3;
    let finished = flow.start(scripted, done).await.unwrap();
    let finished_out = flow.wait(&finished).await.unwrap();

    let mut s = Script::new("io-running");
    s.steps = 1000;
    s.step_sleep_ms = 1;
    let running = flow.start(scripted, s.clone()).await.unwrap();
    let p = probe("io-running");
    p.wait_progress(5).await;
    probe_io.fail_from_now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !flow.is_storage_failed() {
        assert!(tokio::time::Instant::now() < deadline, "store never failed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(flow.metrics().store_failed, 1);
    match flow.start(scripted, Script::new("io-refused")).await {
        Err(StartError::Storage(StoreError::FailStopped)) => {}
        other => panic!("{other:?}"),
    }
    // Every step the handler saw acknowledged.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let acknowledged: Vec<(u32, u64)> = p
        .returned
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.0, r.1))
        .collect();
    assert!(!acknowledged.is_empty());
    flow.crash();

    let flow = fast(dir.builder()).build().await.unwrap();
    assert_eq!(flow.wait(&finished).await.unwrap(), finished_out);
    assert_eq!(
        flow.status(&running.idempotency_key).await.unwrap().status,
        TaskState::Running,
        "recovered"
    );
    let out = flow.wait(&running).await.unwrap();
    for (i, v) in acknowledged {
        assert_eq!(
            out.values[i as usize], v,
            "acknowledged step {i} was lost or changed"
        );
        assert_eq!(p.executions_of(i), 1, "acknowledged step {i} ran again");
    }
    assert_eq!(p.reran_after_commit.load(Ordering::SeqCst), 0);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_in_use_is_refused_with_a_clear_error() {
    let dir = TempDataDir::new();
    let flow = dir.builder().build().await.unwrap();
    let err = dir.builder().build().await.unwrap_err();
    assert!(matches!(err, BuildError::DataDirInUse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("already in use") && message.contains("postgres"),
        "{message}"
    );
    flow.shutdown().await.unwrap();
    // Released on shutdown.
    dir.builder()
        .build()
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_version_is_refused() {
    let dir = TempDataDir::new();
    dir.builder()
        .build()
        .await
        .unwrap()
        .shutdown()
        .await
        .unwrap();
    {
        let db = redb::Database::open(dir.path().join("taskflow.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("schema_version", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    match dir.builder().build().await {
        Err(BuildError::SchemaTooNew {
            found: 99,
            supported: 2,
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_gets_its_indexes_built_and_lists_as_before() {
    let dir = TempDataDir::new();
    let flow = fast(dir.builder()).build().await.unwrap();
    let mut keys = Vec::new();
    for k in 0..3 {
        let mut s = Script::new(&format!("v1-file-{k}"));
        s.steps = 1;
        let run = flow.start(scripted, s).await.unwrap();
        flow.wait(&run).await.unwrap();
        keys.push(run.idempotency_key);
    }
    flow.shutdown().await.unwrap();
    // Make it the layout of version 1: no index tables.
    {
        let db = redb::Database::open(dir.path().join("taskflow.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(
            txn.delete_table(redb::TableDefinition::<(&str, u64), ()>::new("owner_runs"))
                .unwrap()
        );
        assert!(
            txn.delete_table(redb::TableDefinition::<(&str, u64, u64), ()>::new(
                "state_runs"
            ))
            .unwrap()
        );
        txn.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .insert("schema_version", 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let flow = fast(dir.builder()).build().await.unwrap();
    let listed: Vec<_> = flow
        .list(taskflow::ListFilter::all())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.idempotency_key)
        .collect();
    keys.reverse();
    assert_eq!(listed, keys, "newest first, from the rebuilt owner index");
    let done = flow
        .list(taskflow::ListFilter::all().state(TaskState::Completed))
        .await
        .unwrap();
    assert_eq!(done.len(), 3);
    flow.shutdown().await.unwrap();
    use redb::ReadableDatabase;
    let db = redb::Database::open(dir.path().join("taskflow.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn
        .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
        .unwrap();
    assert_eq!(meta.get("schema_version").unwrap().unwrap().value(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_running_tasks_recoverable_and_is_idempotent() {
    let dir = TempDataDir::new();
    let flow = fast(dir.builder()).build().await.unwrap();
    let mut s = Script::new("shutdown-recover");
    s.steps = 2;
    s.hold = true;
    let run = flow.start(scripted, s).await.unwrap();
    probe("shutdown-recover").wait_progress(2).await;
    flow.shutdown().await.unwrap();
    flow.shutdown().await.unwrap();
    assert!(matches!(
        flow.start(scripted, Script::new("after-shutdown")).await,
        Err(StartError::ShuttingDown)
    ));
    let flow = fast(dir.builder()).build().await.unwrap();
    let status = flow.status(&run.idempotency_key).await.unwrap();
    assert_eq!(
        status.failed_attempts, 0,
        "shutdown did not use up an attempt"
    );
    probe("shutdown-recover").release();
    let out = flow.wait(&run).await.unwrap();
    assert_eq!(out.values, vec![1, 1001]);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_by_the_caller_is_used_and_its_data_persists() {
    let dir = TempDataDir::new();
    let path = dir.path().to_owned();
    let store = tokio::task::spawn_blocking(move || taskflow::store::RedbStore::open(path))
        .await
        .unwrap()
        .unwrap();
    let flow = fast(dir.builder()).store(store).build().await.unwrap();
    let run = flow
        .start(scripted, Script::new("own-store"))
        .await
        .unwrap();
    flow.wait(&run).await.unwrap();
    // The engine attached its hooks: the store's commits reach the metrics.
    assert!(flow.metrics().wal_commits > 0);
    flow.shutdown().await.unwrap();
    // The same file, opened the usual way, holds the run.
    let again = fast(dir.builder()).build().await.unwrap();
    let status = again.status(&run.idempotency_key).await.unwrap();
    assert_eq!(status.status, TaskState::Completed);
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_fsync_is_fatal_even_when_the_disk_works_again() {
    let dir = TempDataDir::new();
    let (backend, probe_io) = InstrumentedBackend::create(dir.path()).unwrap();
    let flow = fast(dir.builder())
        .storage_backend(dir.path(), backend)
        .build()
        .await
        .unwrap();
    let mut s = Script::new("fsync-once");
    s.steps = 1000;
    s.step_sleep_ms = 1;
    let run = flow.start(scripted, s).await.unwrap();
    let p = probe("fsync-once");
    p.wait_progress(3).await;
    // One fsync fails; every later one would succeed. After a failed fsync the page cache
    // may hold data the disk lost, so nothing may be retried and acknowledged.
    probe_io.fail_next_sync();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !flow.is_storage_failed() {
        assert!(tokio::time::Instant::now() < deadline, "store never failed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acknowledged = p.returned.lock().unwrap().len();
    let syncs = probe_io.syncs();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        probe_io.syncs(),
        syncs,
        "a commit was retried after the failed fsync"
    );
    assert_eq!(
        p.returned.lock().unwrap().len(),
        acknowledged,
        "a step was acknowledged after the failed fsync"
    );
    match flow
        .start(scripted, Script::new("fsync-once-refused"))
        .await
    {
        Err(StartError::Storage(StoreError::FailStopped)) => {}
        other => panic!("{other:?}"),
    }
    let status = flow.status(&run.idempotency_key).await;
    assert!(status.is_ok(), "reads still work: {status:?}");
    flow.crash();
    // A restart recovers the run from what was durable, and finishes it.
    let flow = fast(dir.builder()).build().await.unwrap();
    let out = flow.wait(&run).await.unwrap();
    assert_eq!(out.values.len(), 1000);
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_file_whose_creation_was_cut_short_does_not_block_the_next_start() {
    let dir = TempDataDir::new();
    // What a power cut during creation leaves now: a partial file under the temporary name
    // (here: a page of zeros, as after a cut before the first write reached the disk).
    let leftover = dir.path().join("taskflow.redb.creating-4242-7");
    std::fs::write(&leftover, vec![0u8; 4096]).unwrap();
    let flow = fast(dir.builder()).build().await.unwrap();
    let run = flow
        .start(scripted, Script::new("create-cut"))
        .await
        .unwrap();
    flow.wait(&run).await.unwrap();
    flow.shutdown().await.unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["taskflow.redb"],
        "the leftover is gone, nothing else is left"
    );
    // The created file holds what was acknowledged.
    let flow = fast(dir.builder()).build().await.unwrap();
    assert_eq!(
        flow.status(&run.idempotency_key).await.unwrap().status,
        TaskState::Completed
    );
    flow.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_file_is_refused_with_an_error_and_kept() {
    let dir = TempDataDir::new();
    // A file under the final name may hold acknowledged data: never deleted, never a panic.
    let path = dir.path().join("taskflow.redb");
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let err = fast(dir.builder()).build().await.unwrap_err();
    assert!(matches!(err, BuildError::Storage(_)), "{err:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0u8; 4096],
        "the file was changed"
    );
}
