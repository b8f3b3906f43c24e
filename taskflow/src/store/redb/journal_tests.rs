//! The redb store with the event journal, through the `Store` trait: fences, seqs, reads of
//! the unfolded tail and the replay after a crash, with the fold held back so that events
//! exist only in the journal.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::RedbStore;
use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::ids::{Epoch, IdempotencyKey, Seq, TaskId};
use crate::store::{Committed, Fence, Store, TaskPatch, TaskRecord, Write, WriteBatch};
use crate::task::ExecuteMode;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn open(dir: &Path) -> RedbStore {
    RedbStore::open_with_event_journal(dir).expect("open with the journal")
}

fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey::parse(&format!("{name:_<43}")).expect("a 43-character key")
}

async fn create(store: &RedbStore, ik: &IdempotencyKey) -> (TaskId, Epoch) {
    let record = TaskRecord::new_run(
        "t",
        ik.clone(),
        None,
        serde_json::Value::Null,
        3,
        ExecuteMode::AtLeastOnce,
        false,
        Timestamp::from_millis(1),
    );
    let replaces = store.current_run(ik).await.expect("read").0.map(|r| r.id);
    let done = store
        .enqueue(WriteBatch::new(vec![Write::CreateRun {
            record: Box::new(record),
            replaces,
        }]))
        .await
        .expect("create");
    match done.as_slice() {
        [Committed::Run { id, epoch, .. }] => (*id, *epoch),
        other => panic!("created {other:?}"),
    }
}

fn emit(
    store: &RedbStore,
    ik: &IdempotencyKey,
    task: TaskId,
    epoch: Epoch,
    n: u64,
) -> crate::store::PendingCommit {
    store.enqueue(WriteBatch::fenced(
        Fence { task, epoch },
        vec![Write::Event {
            ik: ik.clone(),
            task,
            name: "tick".into(),
            data: serde_json::json!({ "n": n }),
        }],
    ))
}

/// An event numbered `n` carrying `pad`, fenced by `epoch`.
fn padded(ik: &IdempotencyKey, task: TaskId, epoch: Epoch, n: u64, pad: &str) -> WriteBatch {
    WriteBatch::fenced(
        Fence { task, epoch },
        vec![Write::Event {
            ik: ik.clone(),
            task,
            name: "big".into(),
            data: serde_json::json!({ "n": n, "pad": pad }),
        }],
    )
}

fn seqs(committed: &[Committed]) -> Vec<u64> {
    committed
        .iter()
        .map(|c| match c {
            Committed::Event(e) => e.seq.0,
            other => panic!("not an event: {other:?}"),
        })
        .collect()
}

async fn read(store: &RedbStore, ik: &IdempotencyKey, after: u64, limit: usize) -> Vec<(u64, u64)> {
    store
        .events(ik, Seq(after), limit)
        .await
        .expect("events")
        .into_iter()
        .map(|e| (e.seq.0, e.data["n"].as_u64().expect("n")))
        .collect()
}

#[test]
fn acknowledged_events_only_in_the_journal_survive_a_crash_and_read_the_same_before_and_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let store = open(dir.path());
        let ik = key("a");
        let (task, epoch) = create(&store, &ik).await;
        store.shared.hold_fold.store(true, Ordering::SeqCst);
        let pending: Vec<_> = (1..=20)
            .map(|n| emit(&store, &ik, task, epoch, n))
            .collect();
        let mut acknowledged = Vec::new();
        for p in pending {
            acknowledged.extend(seqs(&p.await.expect("emit")));
        }
        assert_eq!(acknowledged, (1..=20).collect::<Vec<_>>());
        // Served from memory: the database holds none of them yet.
        let before = read(&store, &ik, 0, 100).await;
        assert_eq!(before, (1..=20).map(|n| (n, n)).collect::<Vec<_>>());
        assert_eq!(read(&store, &ik, 5, 3).await, vec![(6, 6), (7, 7), (8, 8)]);
        assert_eq!(store.current_run(&ik).await.expect("run").1, Seq(20));
        store.crash();
        drop(store);

        let store = open(dir.path());
        assert_eq!(read(&store, &ik, 0, 100).await, before);
        assert_eq!(store.current_run(&ik).await.expect("run").1, Seq(20));
        // The next event follows them, and a plain open (no journal) keeps all of them.
        assert_eq!(
            seqs(&emit(&store, &ik, task, epoch, 21).await.expect("emit")),
            vec![21]
        );
        store.crash();
        drop(store);
        let plain = RedbStore::open(dir.path()).expect("open without the journal");
        assert_eq!(read(&plain, &ik, 0, 100).await.len(), 21);
        assert!(
            !dir.path().join("taskflow.journal").exists(),
            "applied, then removed"
        );
        plain.close().await.expect("close");
    });
}

#[test]
fn a_stale_fence_refuses_journaled_events_and_seqs_stay_gapless_across_other_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let store = open(dir.path());
        let ik = key("b");
        let (task, epoch) = create(&store, &ik).await;
        let first = emit(&store, &ik, task, epoch, 1);
        let bump = store.enqueue(WriteBatch::new(vec![Write::Update {
            task,
            patch: TaskPatch {
                bump_epoch: true,
                ..TaskPatch::at(Timestamp::from_millis(2))
            },
        }]));
        let stale = emit(&store, &ik, task, epoch, 2);
        assert_eq!(seqs(&first.await.expect("before the bump")), vec![1]);
        let bumped = match bump.await.expect("bump").as_slice() {
            [Committed::Epoch(e)] => *e,
            other => panic!("{other:?}"),
        };
        assert!(matches!(stale.await, Err(StoreError::Fenced)));
        // Alone, so the journal (not a database commit behind the bump) decides it.
        assert!(matches!(
            emit(&store, &ik, task, epoch, 2).await,
            Err(StoreError::Fenced)
        ));
        assert_eq!(
            seqs(&emit(&store, &ik, task, bumped, 3).await.expect("after")),
            vec![2]
        );
        // A new run of the key continues the key's seqs.
        let (second, epoch2) = create(&store, &ik).await;
        assert_eq!(
            seqs(&emit(&store, &ik, second, epoch2, 4).await.expect("emit")),
            vec![3]
        );
        assert_eq!(read(&store, &ik, 0, 10).await, vec![(1, 1), (2, 3), (3, 4)]);
        store.close().await.expect("close");
    });
}

async fn emit_held(dir: &Path, ik: &IdempotencyKey, n: u64) {
    let store = open(dir);
    let (task, epoch) = create(&store, ik).await;
    store.shared.hold_fold.store(true, Ordering::SeqCst);
    for n in 1..=n {
        emit(&store, ik, task, epoch, n).await.expect("emit");
    }
    store.crash();
}

#[test]
fn a_torn_record_after_the_last_whole_one_is_not_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let ik = key("c");
        emit_held(dir.path(), &ik, 3).await;
        // The start of a fourth record (a copy of the third's first bytes, renumbered), cut
        // short: never acknowledged.
        let path = dir.path().join("taskflow.journal");
        let mut bytes = std::fs::read(&path).expect("journal");
        let records = super::journal::read_records(&bytes);
        assert_eq!(records.len(), 3);
        let end: usize = records.iter().map(|g| g.encode().len()).sum();
        let mut fourth = records[2].clone();
        fourth.jseq = 4;
        let fourth = fourth.encode();
        // (Its last bytes, the count of writes, are zeros like the file after it: the cut
        // must take more than those to tear it.)
        let cut = fourth.len() - 8;
        bytes[end..end + cut].copy_from_slice(&fourth[..cut]);
        std::fs::write(&path, &bytes).expect("write");
        let store = open(dir.path());
        assert_eq!(read(&store, &ik, 0, 10).await, vec![(1, 1), (2, 2), (3, 3)]);
        store.close().await.expect("close");
    });
}

#[test]
fn events_journaled_after_a_group_too_big_for_a_record_survive_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Bigger than a quarter of a half: committed to the database under its jseq, which the
    // journal then skips.
    let big = "x".repeat(usize::try_from(super::journal::HALF / 4).expect("fits") + 1);
    rt().block_on(async {
        let store = open(dir.path());
        let ik = key("d");
        let (task, epoch) = create(&store, &ik).await;
        emit(&store, &ik, task, epoch, 1).await.expect("emit");
        let batch = padded(&ik, task, epoch, 2, &big);
        assert_eq!(seqs(&store.enqueue(batch).await.expect("big")), vec![2]);
        // Only the journal holds these.
        store.shared.hold_fold.store(true, Ordering::SeqCst);
        for n in 3..=5 {
            emit(&store, &ik, task, epoch, n).await.expect("emit");
        }
        store.crash();
        drop(store);
        let store = open(dir.path());
        let read: Vec<u64> = read(&store, &ik, 0, 10).await.iter().map(|e| e.1).collect();
        assert_eq!(read, vec![1, 2, 3, 4, 5]);
        store.close().await.expect("close");
    });
}

#[test]
fn a_journal_that_does_not_continue_the_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let other = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let ik = key("d");
        // `other`'s journal holds records 4 to 6 (1 to 3 were applied at its second open).
        emit_held(other.path(), &ik, 3).await;
        let store = open(other.path());
        store.close().await.expect("close");
        emit_held(other.path(), &ik, 3).await;
        // `dir`'s database holds no record: 4 to 6 cannot follow it.
        emit_held(dir.path(), &ik, 0).await;
        let path = dir.path().join("taskflow.journal");
        std::fs::copy(other.path().join("taskflow.journal"), &path).expect("copy");
        let refused = RedbStore::open_with_event_journal(dir.path()).expect_err("foreign journal");
        assert!(refused.to_string().contains("does not belong"), "{refused}");
    });
}

fn step(task: TaskId, epoch: Epoch, name: &str) -> WriteBatch {
    let key = crate::ids::StepKey::new(name, 0);
    let json = crate::store::StepRecord::encode(&key, b"42", "here").expect("encode");
    WriteBatch::fenced(Fence { task, epoch }, vec![Write::Step { task, key, json }])
}

fn heartbeat(task: TaskId, epoch: Epoch, now: u64) -> WriteBatch {
    let mut patch = TaskPatch::at(Timestamp::from_millis(now));
    patch.heartbeat = true;
    WriteBatch::fenced(Fence { task, epoch }, vec![Write::Update { task, patch }])
}

async fn step_keys(store: &RedbStore, task: TaskId) -> Vec<String> {
    store
        .steps(task)
        .await
        .expect("steps")
        .into_iter()
        .map(|(k, _)| k.as_str().to_owned())
        .collect()
}

#[test]
fn steps_and_heartbeats_only_in_the_journal_survive_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let store = open(dir.path());
        let ik = key("e");
        let (task, epoch) = create(&store, &ik).await;
        store.shared.hold_fold.store(true, Ordering::SeqCst);
        let done = store
            .enqueue(step(task, epoch, "fetch"))
            .await
            .expect("step");
        assert_eq!(done, vec![Committed::Done]);
        let beat = store
            .enqueue(heartbeat(task, epoch, 5_000))
            .await
            .expect("heartbeat");
        assert_eq!(beat, vec![Committed::Epoch(epoch)]);
        assert!(matches!(
            store.enqueue(step(task, Epoch(epoch.0 + 1), "late")).await,
            Err(StoreError::Fenced)
        ));
        store.crash();
        drop(store);

        let store = open(dir.path());
        assert_eq!(step_keys(&store, task).await, vec!["fetch#0"]);
        let record = store.task(task).await.expect("read").expect("the run");
        assert_eq!(record.heartbeat_at, Timestamp::from_millis(5_000));
        store.close().await.expect("close");
    });
}

#[test]
fn a_read_of_steps_or_runs_sees_every_journaled_write_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let store = open(dir.path());
        let ik = key("f");
        let (task, epoch) = create(&store, &ik).await;
        for n in 0..20u64 {
            let name = format!("s{n}");
            store.enqueue(step(task, epoch, &name)).await.expect("step");
            store
                .enqueue(heartbeat(task, epoch, 10_000 + n))
                .await
                .expect("heartbeat");
            // Read at once: the fold has most likely not run yet.
            assert_eq!(step_keys(&store, task).await.len(), n as usize + 1);
            let record = store.task(task).await.expect("read").expect("the run");
            assert_eq!(record.heartbeat_at, Timestamp::from_millis(10_000 + n));
        }
        store.close().await.expect("close");
    });
}

#[test]
fn appends_move_between_the_halves_and_a_crash_after_the_moves_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 4 KiB events: about 500 fill a half of the unit tests' journal, so 1,200 move appends
    // twice.
    let big = "x".repeat(4 * 1024);
    let n = 1_200u64;
    rt().block_on(async {
        let store = open(dir.path());
        let ik = key("g");
        let (task, epoch) = create(&store, &ik).await;
        for k in 1..=n {
            let hold = k > n - 50;
            store.shared.hold_fold.store(hold, Ordering::SeqCst);
            let batch = padded(&ik, task, epoch, k, &big);
            assert_eq!(seqs(&store.enqueue(batch).await.expect("emit")), vec![k]);
        }
        let bytes = std::fs::read(dir.path().join("taskflow.journal")).expect("journal");
        let half = usize::try_from(super::journal::HALF).expect("fits");
        assert!(
            !super::journal::read_records(&bytes[half..]).is_empty(),
            "the second half was used"
        );
        store.crash();
        drop(store);
        let store = open(dir.path());
        let events = store.events(&ik, Seq::ZERO, 2_000).await.expect("events");
        assert_eq!(events.len(), n as usize);
        for (k, e) in events.iter().enumerate() {
            assert_eq!(e.seq.0, k as u64 + 1);
            assert_eq!(e.data["n"], serde_json::json!(k as u64 + 1));
        }
        store.close().await.expect("close");
    });
}

#[test]
fn appends_go_back_to_a_half_only_once_the_database_holds_it_durably() {
    let dir = tempfile::tempdir().expect("temp dir");
    let big = "x".repeat(4 * 1024);
    let n = 1_200u64;
    rt().block_on(async {
        let store = open(dir.path());
        let ik = key("j");
        let (task, epoch) = create(&store, &ik).await;
        // The fold commits nothing it is not made to: when appends come back to the first
        // half, only the wait for a durable fold keeps its records.
        store.shared.hold_fold.store(true, Ordering::SeqCst);
        for k in 1..=n {
            let batch = padded(&ik, task, epoch, k, &big);
            assert_eq!(seqs(&store.enqueue(batch).await.expect("emit")), vec![k]);
        }
        store.crash();
        drop(store);
        let store = open(dir.path());
        let events = store.events(&ik, Seq::ZERO, 2_000).await.expect("events");
        let numbers: Vec<u64> = events
            .iter()
            .map(|e| e.data["n"].as_u64().expect("n"))
            .collect();
        assert_eq!(numbers, (1..=n).collect::<Vec<_>>());
        store.close().await.expect("close");
    });
}

#[test]
fn a_read_waiting_for_a_fold_that_never_comes_ends_when_the_store_crashes() {
    let dir = tempfile::tempdir().expect("temp dir");
    rt().block_on(async {
        let store = std::sync::Arc::new(open(dir.path()));
        let ik = key("h");
        let (task, epoch) = create(&store, &ik).await;
        store.shared.hold_fold.store(true, Ordering::SeqCst);
        store
            .enqueue(step(task, epoch, "held"))
            .await
            .expect("step");
        let reader = store.clone();
        let mut read = tokio::spawn(async move { reader.steps(task).await.map(|s| s.len()) });
        tokio::task::yield_now().await;
        assert!(!read.is_finished(), "the read waits for the held fold");
        store.crash();
        let Ok(ended) = tokio::time::timeout(std::time::Duration::from_secs(10), &mut read).await
        else {
            // Let the blocked read go, or the runtime would wait for it forever.
            store.shared.tail.stop();
            panic!("the read did not end once the fold was gone");
        };
        let ended = ended.expect("no panic");
        assert!(matches!(ended, Err(_) | Ok(0)), "{ended:?}");
    });
}

/// kill -9 during the database's durable commit, restart, power cut: the commit's header
/// reached the page cache, not the disk, so the restart reads it as committed while a power
/// cut can still take it away. The restart must make it durable before the journal's appends
/// overwrite the records only that commit holds.
#[cfg(feature = "test-util")]
#[test]
fn a_commit_a_kill_left_in_the_page_cache_is_made_durable_before_the_journal_is_overwritten() {
    use crate::testing::{Cut, PowerCutBackend};

    let dir = tempfile::tempdir().expect("temp dir");
    let ik = key("k");
    rt().block_on(async {
        // The files, created and closed.
        let (db, journal) = (
            PowerCutBackend::from_image(Vec::new()),
            PowerCutBackend::from_image(Vec::new()),
        );
        let store = RedbStore::open_on_with_journal(dir.path(), db.clone(), journal.clone())
            .expect("create");
        store.close().await.expect("close");
        // Three events journaled, then a direct write: the fold commits all of them durably,
        // and the process is killed just before that commit's sync.
        let db = PowerCutBackend::recording_from(db.image());
        let journal = db.another_file(journal.image());
        let store = RedbStore::open_on_with_journal(dir.path(), db.clone(), journal).expect("open");
        let (task, epoch) = create(&store, &ik).await;
        for n in 1..=3 {
            emit(&store, &ik, task, epoch, n).await.expect("emit");
        }
        create(&store, &key("other")).await;
        store.crash();
        drop(store);
        let first = db.recording_so_far();
        let kill = *first.kill_points(db.file()).last().expect("a sync");
        let killed = first.after_kill(kill);
        let (db, journal) = (killed.files[0].clone(), killed.files[1].clone());

        // The restart reads all three events, and journals a fourth.
        let store = RedbStore::open_on_with_journal(dir.path(), db.clone(), journal.clone())
            .expect("restart");
        assert_eq!(read(&store, &ik, 0, 10).await.len(), 3);
        emit(&store, &ik, task, epoch, 4).await.expect("emit");
        let acknowledged = db.syncs();
        store.crash();
        drop(store);

        // What makes it so: redb's open after a crash commits what it found, durably, before
        // the journal's first append is synced.
        let restart = db.recording_so_far();
        assert!(
            restart.kill_points(db.file())[0] < restart.kill_points(journal.file())[0],
            "the restart's first sync is the database's"
        );
        // Every cut of every crash point of the restart keeps the three, and the fourth once
        // acknowledged.
        let mut cuts = 0;
        for point in restart.crash_points() {
            for db_cut in point.cuts(6, point.synced() * 100) {
                for journal_cut in [Cut::NothingInFlight, Cut::AllInFlight] {
                    cuts += 1;
                    let at = format!(
                        "after sync {}, {db_cut:?}, journal {journal_cut:?}",
                        point.synced()
                    );
                    let store = RedbStore::open_on_with_journal(
                        dir.path(),
                        PowerCutBackend::from_image(point.image(db_cut)),
                        PowerCutBackend::from_image(point.image_of(journal.file(), journal_cut)),
                    )
                    .unwrap_or_else(|e| panic!("{at}: does not open: {e}"));
                    let n = read(&store, &ik, 0, 10).await.len();
                    let want = if point.synced() >= acknowledged { 4 } else { 3 };
                    assert!(n >= want, "{at}: {n} events, {want} acknowledged");
                    store.crash();
                }
            }
        }
        assert!(cuts > 10, "{cuts} cuts");
    });
}
