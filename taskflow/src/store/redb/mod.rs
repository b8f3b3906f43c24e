//! The embedded store: one redb file, one committer thread with group commit.

mod committer;
#[cfg(feature = "test-util")]
mod contents;
mod file;
mod fold;
mod journal;
#[cfg(test)]
mod journal_tests;
mod scan;
mod schema;
mod sequencer;
mod tables;
mod tail;

use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

use self::committer::{Committer, Request};
#[cfg(feature = "test-util")]
pub use self::contents::StoreContents;
use self::file::{create_atomically, database_path};
use self::journal::Journal;
use self::schema::{EVENTS, JOURNAL_APPLIED, KEYS, META, SCHEMA_VERSION, STEPS, TASKS};
use self::tail::Tail;
use super::state::StoreState;
use super::{
    PendingCommit, Scan, StepRecord, Store, StoreFuture, StoreHooks, TaskRecord, WriteBatch,
};
use crate::error::{BuildError, StoreError};
use crate::ids::{IdempotencyKey, Seq, StepKey, TaskId};
use crate::status::StoredEvent;

/// State shared by the store handle and its committer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) db: RwLock<Option<Database>>,
    pub(crate) state: StoreState,
    /// Journaled events the database does not hold yet (empty without the journal).
    pub(crate) tail: Tail,
    /// Unit tests: the fold leaves journaled events alone (only the journal holds them).
    #[cfg(test)]
    pub(crate) hold_fold: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn new(db: Database) -> Self {
        Self {
            db: RwLock::new(Some(db)),
            state: StoreState::default(),
            tail: Tail::default(),
            #[cfg(test)]
            hold_fold: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// The embedded store: one redb file (`taskflow.redb` in a data dir), written by one
/// committer thread that group-commits whatever is queued in one transaction and one fsync.
/// [`TaskFlowBuilder::data_dir`](crate::TaskFlowBuilder::data_dir) opens one; open it yourself
/// to hand it to [`TaskFlowBuilder::store`](crate::TaskFlowBuilder::store).
#[derive(Debug)]
pub struct RedbStore {
    path: PathBuf,
    shared: Arc<Shared>,
    sender: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl RedbStore {
    /// Opens (or creates) `dir/taskflow.redb`, creating `dir` if needed. Blocking: call it
    /// from `spawn_blocking` inside an async runtime.
    ///
    /// # Errors
    /// [`BuildError`]: the dir cannot be created, the file is in use by another process, its
    /// schema is newer than this taskflow, or it cannot be read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, BuildError> {
        let (path, db) = Self::open_file(dir.as_ref())?;
        init_schema(&db)?;
        // A journal left by a store opened with it holds acknowledged events: keep them.
        let journal = journal_path(&path);
        if journal.exists() {
            replay_journal(
                &db,
                &Journal::records(&journal).map_err(journal_error(&journal))?,
            )?;
            std::fs::remove_file(&journal).map_err(journal_error(&journal))?;
        }
        Self::start(&path, db)
    }

    /// Opens (or creates) `dir/taskflow.redb` with the event journal `dir/taskflow.journal`
    /// in front of it: a group of queued emits, steps and heartbeats is
    /// acknowledged after one append and one fdatasync of the journal, and moved into the
    /// database by a second thread afterwards, so an emit's latency is one small sync instead
    /// of a database commit (every other write still commits the database durably, after the
    /// writes before it; reads of runs and steps wait for the fold to pass what was journaled
    /// before them, reads of events never wait).
    /// The journal's records the database does not hold yet are applied at open, so nothing
    /// acknowledged is lost to a crash; a store opened later without the journal applies
    /// them too. Blocking, as [`open`](Self::open).
    ///
    /// # Errors
    /// As [`open`](Self::open), and when the journal cannot be read or does not continue the
    /// database (a journal from another data dir).
    pub fn open_with_event_journal(dir: impl AsRef<Path>) -> Result<Self, BuildError> {
        let (path, db) = Self::open_file(dir.as_ref())?;
        init_schema(&db)?;
        let journal = journal_path(&path);
        let opened = Journal::open(&journal).map_err(journal_error(&journal))?;
        Self::start_journaled(&path, db, opened)
    }

    /// Starts the sequencer and the fold on `db` and the journal `opened` found, once the
    /// database holds every record in it.
    fn start_journaled(
        path: &Path,
        db: Database,
        (journal, records): (Journal, Vec<journal::JournaledGroup>),
    ) -> Result<Self, BuildError> {
        let next_jseq = replay_journal(&db, &records)? + 1;
        let shared = Arc::new(Shared::new(db));
        let (sender, receiver) = mpsc::channel();
        let (fold_sender, fold_receiver) = mpsc::channel();
        let spawn_error = |e| BuildError::Storage(StoreError::io(e));
        let fold = fold::Fold::new(shared.clone(), fold_receiver, next_jseq - 1);
        let fold_thread = std::thread::Builder::new()
            .name("taskflow-fold".into())
            .spawn(move || fold.run())
            .map_err(spawn_error)?;
        let sequencer = sequencer::Sequencer::new(
            shared.clone(),
            receiver,
            journal,
            next_jseq,
            fold_sender,
            fold_thread,
        );
        let thread = std::thread::Builder::new()
            .name("taskflow-sequencer".into())
            .spawn(move || sequencer.run())
            .map_err(spawn_error)?;
        Ok(Self {
            path: path.to_owned(),
            shared,
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn open_file(dir: &Path) -> Result<(PathBuf, Database), BuildError> {
        let path = database_path(dir)?;
        if !path.exists() {
            create_atomically(&path)?;
        }
        let db = redb::Builder::new()
            .create(&path)
            .map_err(|e| open_error(&path, e))?;
        Ok((path, db))
    }

    /// Opens the database on a test backend (feature `test-util`): a file a power cut could
    /// leave, read back without an engine. `dir` names the store in messages. Blocking, as
    /// [`open`](Self::open).
    ///
    /// # Errors
    /// As [`open`](Self::open): the image is not a database, or its schema is newer.
    #[cfg(feature = "test-util")]
    pub fn open_on(
        dir: impl AsRef<Path>,
        backend: impl crate::testing::TestBackend,
    ) -> Result<Self, BuildError> {
        Self::open_with_backend(dir.as_ref(), crate::testing::BoxedBackend::new(backend))
    }

    /// Opens the database and the event journal on test backends (feature `test-util`):
    /// the two files a power cut could leave, the journal's records applied at open as
    /// [`open_with_event_journal`](Self::open_with_event_journal) does, the journal's halves
    /// [`TEST_JOURNAL_HALF`](crate::testing::TEST_JOURNAL_HALF) each. Blocking, as
    /// [`open`](Self::open).
    ///
    /// # Errors
    /// As [`open_with_event_journal`](Self::open_with_event_journal).
    #[cfg(feature = "test-util")]
    pub fn open_on_with_journal(
        dir: impl AsRef<Path>,
        backend: impl crate::testing::TestBackend,
        journal: impl crate::testing::TestBackend,
    ) -> Result<Self, BuildError> {
        Self::open_with_backends(
            dir.as_ref(),
            crate::testing::BoxedBackend::new(backend),
            crate::testing::BoxedBackend::new(journal),
        )
    }

    /// Opens a database and its event journal on custom backends (the power-cut matrix).
    #[cfg(feature = "test-util")]
    pub(crate) fn open_with_backends(
        dir: &Path,
        backend: impl redb::StorageBackend,
        journal: crate::testing::BoxedBackend,
    ) -> Result<Self, BuildError> {
        let (path, db) = Self::database_on(dir, backend)?;
        let journal_path = journal_path(&path);
        let opened = Journal::on(
            &journal_path,
            Box::new(journal),
            crate::testing::TEST_JOURNAL_HALF,
        )
        .map_err(journal_error(&journal_path))?;
        Self::start_journaled(&path, db, opened)
    }

    /// Arms a crash at an exact commit (the crash matrix).
    #[cfg(feature = "test-util")]
    pub(crate) fn arm_crash_at(&self, trigger: Arc<crate::testing::CrashAtCommit>) {
        self.shared.state.arm_crash_at(trigger);
    }

    /// Opens a database on a custom backend (tests: fault injection, fsync counting).
    #[cfg(feature = "test-util")]
    pub(crate) fn open_with_backend(
        dir: &Path,
        backend: impl redb::StorageBackend,
    ) -> Result<Self, BuildError> {
        let (path, db) = Self::database_on(dir, backend)?;
        Self::start(&path, db)
    }

    /// The database on `backend`, its schema ready; `dir` names it in messages.
    #[cfg(feature = "test-util")]
    fn database_on(
        dir: &Path,
        backend: impl redb::StorageBackend,
    ) -> Result<(PathBuf, Database), BuildError> {
        let path = database_path(dir)?;
        let db = redb::Builder::new()
            .create_with_backend(backend)
            .map_err(|e| open_error(&path, e))?;
        init_schema(&db)?;
        Ok((path, db))
    }

    fn start(path: &Path, db: Database) -> Result<Self, BuildError> {
        let shared = Arc::new(Shared::new(db));
        let (sender, receiver) = mpsc::channel();
        let committer = Committer::new(shared.clone(), receiver);
        let thread = std::thread::Builder::new()
            .name("taskflow-committer".into())
            .spawn(move || committer.run())
            .map_err(|e| BuildError::Storage(StoreError::io(e)))?;
        Ok(Self {
            path: path.to_owned(),
            shared,
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        let guard = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender.send(request).map_err(|_| StoreError::Closed)
    }

    /// Runs `f` on a read transaction on the blocking pool, once the database holds every
    /// step and heartbeat journaled before the call.
    fn read<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.read_after(self.shared.tail.writes_journaled(), f)
    }

    /// Runs `f` on a read transaction on the blocking pool, once the database holds journal
    /// record `jseq` (0: at once).
    fn read_after<T, F>(&self, jseq: u64, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = self.shared.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                shared.tail.wait_folded(jseq);
                let guard = shared.db.read().unwrap_or_else(PoisonError::into_inner);
                let db = guard.as_ref().ok_or(StoreError::Closed)?;
                let txn = db.begin_read().map_err(StoreError::io)?;
                f(&txn)
            })
            .await
            .map_err(StoreError::io)?
        })
    }

    fn stop_committer(&self, request: Option<Request>) {
        if let Some(request) = request {
            // A closed channel means the committer is already gone; nothing to do then.
            let _ = self.send(request);
        }
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // A panicking committer already failed every waiter; there is nothing left to do.
            let _ = thread.join();
        }
    }

    fn release_database(&self) {
        let db = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(db);
    }
}

/// `taskflow.journal` beside the database file.
fn journal_path(database: &Path) -> PathBuf {
    database.with_file_name("taskflow.journal")
}

fn journal_error(path: &Path) -> impl Fn(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Applies, in one durable commit, the journal records the database does not hold yet, and
/// returns the last record's jseq the database holds then.
fn replay_journal(db: &Database, records: &[journal::JournaledGroup]) -> Result<u64, BuildError> {
    let io = |e: redb::Error| BuildError::Storage(StoreError::io(e));
    let applied = {
        let txn = db.begin_read().map_err(|e| io(e.into()))?;
        let meta = txn.open_table(META).map_err(|e| io(e.into()))?;
        meta.get(JOURNAL_APPLIED)
            .map_err(|e| io(e.into()))?
            .map_or(0, |v| v.value())
    };
    let missing: Vec<_> = records
        .iter()
        .filter(|r| r.jseq > applied)
        .cloned()
        .collect();
    let Some(first) = missing.first() else {
        return Ok(applied);
    };
    if first.jseq != applied + 1 {
        return Err(BuildError::Storage(StoreError::Corrupt(format!(
            "the event journal starts at record {} but the database holds records up to {applied}: taskflow.journal does not belong to this taskflow.redb (restore both files of one data dir)",
            first.jseq
        ))));
    }
    let txn = db.begin_write().map_err(|e| io(e.into()))?;
    tables::Tables::new(&txn).fold(&missing).map_err(io)?;
    txn.commit().map_err(|e| io(e.into()))?;
    let last = missing.last().map_or(applied, |r| r.jseq);
    tracing::info!(
        records = missing.len(),
        events = missing.iter().map(|r| r.events.len()).sum::<usize>(),
        "applied the event journal's records the database did not hold yet"
    );
    Ok(last)
}

fn open_error(path: &Path, e: DatabaseError) -> BuildError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => BuildError::DataDirInUse {
            path: path.display().to_string(),
        },
        other => BuildError::Storage(StoreError::io(other)),
    }
}

fn init_schema(db: &Database) -> Result<(), BuildError> {
    let io = |e: redb::Error| BuildError::Storage(StoreError::io(e));
    let txn = db.begin_write().map_err(|e| io(e.into()))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| io(e.into()))?;
        let found = meta
            .get("schema_version")
            .map_err(|e| io(e.into()))?
            .map(|v| v.value());
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(BuildError::SchemaTooNew {
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(SCHEMA_VERSION) => {}
            // Version 1 had no index tables: build them from the runs, once.
            Some(_) => {
                build_indexes(&txn).map_err(io)?;
                meta.insert("schema_version", SCHEMA_VERSION)
                    .map_err(|e| io(e.into()))?;
            }
            None => {
                meta.insert("schema_version", SCHEMA_VERSION)
                    .map_err(|e| io(e.into()))?;
            }
        }
        txn.open_table(schema::OWNER_RUNS)
            .map_err(|e| io(e.into()))?;
        txn.open_table(schema::STATE_RUNS)
            .map_err(|e| io(e.into()))?;
        txn.open_table(TASKS).map_err(|e| io(e.into()))?;
        txn.open_table(schema::EPOCHS).map_err(|e| io(e.into()))?;
        txn.open_table(KEYS).map_err(|e| io(e.into()))?;
        txn.open_table(EVENTS).map_err(|e| io(e.into()))?;
        txn.open_table(STEPS).map_err(|e| io(e.into()))?;
    }
    txn.commit().map_err(|e| io(e.into()))
}

/// Fills the index tables from every run (opening a version-1 file).
fn build_indexes(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let tasks = txn.open_table(TASKS)?;
    let mut owners = txn.open_table(schema::OWNER_RUNS)?;
    let mut states = txn.open_table(schema::STATE_RUNS)?;
    let mut n = 0usize;
    for entry in tasks.iter()? {
        let (key, value) = entry?;
        let record = tables::decode_task(key.value(), value.value()).map_err(|e| {
            redb::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            ))
        })?;
        owners.insert(
            (
                schema::owner_key(record.owner.as_ref()).as_str(),
                record.id.0,
            ),
            (),
        )?;
        states.insert(
            (
                record.status.as_str(),
                record.updated_at.as_millis(),
                record.id.0,
            ),
            (),
        )?;
        n += 1;
    }
    tracing::info!(runs = n, "indexed the runs of a version-1 data file");
    Ok(())
}

/// Whether a scan filters beyond its index (then the index yields more candidates than the
/// limit).
fn storage(e: impl Into<redb::Error>) -> StoreError {
    StoreError::io(e.into())
}

impl Store for RedbStore {
    fn attach(&self, hooks: StoreHooks) {
        self.shared.state.attach(hooks);
    }

    fn enqueue(&self, batch: WriteBatch) -> PendingCommit {
        self.shared
            .state
            .enqueue(batch, |pending| self.send(Request::Write(pending)))
    }

    fn task(&self, id: TaskId) -> StoreFuture<'_, Option<TaskRecord>> {
        self.read(move |txn| {
            let tasks = txn.open_table(TASKS).map_err(storage)?;
            tables::get_task(&tasks, id.0)
        })
    }

    fn current_run<'a>(
        &'a self,
        ik: &'a IdempotencyKey,
    ) -> StoreFuture<'a, (Option<TaskRecord>, Seq)> {
        let ik = ik.as_str().to_owned();
        // The tail before the database (see `tail`).
        let unfolded = self.shared.tail.last_seq(&ik).unwrap_or(0);
        self.read(move |txn| {
            let keys = txn.open_table(KEYS).map_err(storage)?;
            let Some((current, last)) = keys.get(ik.as_str()).map_err(storage)?.map(|v| v.value())
            else {
                return Ok((None, Seq(unfolded)));
            };
            let last = Seq(last.max(unfolded));
            if current == 0 {
                return Ok((None, last));
            }
            let tasks = txn.open_table(TASKS).map_err(storage)?;
            Ok((tables::get_task(&tasks, current)?, last))
        })
    }

    fn events<'a>(
        &'a self,
        ik: &'a IdempotencyKey,
        after: Seq,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEvent>> {
        let ik = ik.as_str().to_owned();
        // The tail before the database (see `tail`).
        let unfolded = self.shared.tail.after(&ik, after.0, limit);
        // Events need no wait: the unfolded ones are in the tail.
        self.read_after(0, move |txn| {
            let events = txn.open_table(EVENTS).map_err(storage)?;
            let start = after.0.saturating_add(1);
            let mut out = Vec::new();
            for entry in events
                .range((ik.as_str(), start)..=(ik.as_str(), u64::MAX))
                .map_err(storage)?
                .take(limit)
            {
                let (key, value) = entry.map_err(storage)?;
                out.push(tables::decode_event(key.value().1, value.value())?);
            }
            let folded = out.last().map_or(after.0, |e| e.seq.0);
            for (seq, value) in unfolded {
                if out.len() >= limit {
                    break;
                }
                if seq > folded {
                    out.push(tables::decode_event(seq, &value)?);
                }
            }
            Ok(out)
        })
    }

    fn steps(&self, task: TaskId) -> StoreFuture<'_, Vec<(StepKey, StepRecord)>> {
        self.read(move |txn| {
            let steps = txn.open_table(STEPS).map_err(storage)?;
            let mut out = Vec::new();
            for entry in steps
                .range((task.0, "")..(task.0 + 1, ""))
                .map_err(storage)?
            {
                let (key, value) = entry.map_err(storage)?;
                let record: StepRecord = serde_json::from_slice(value.value())
                    .map_err(|e| StoreError::Corrupt(format!("step {}: {e}", key.value().1)))?;
                out.push((StepKey::from_stored(key.value().1.to_owned()), record));
            }
            Ok(out)
        })
    }

    fn steps_with_prefix<'a>(
        &'a self,
        task: TaskId,
        prefix: &'a str,
    ) -> StoreFuture<'a, Vec<(StepKey, StepRecord)>> {
        let prefix = prefix.to_owned();
        self.read(move |txn| {
            let steps = txn.open_table(STEPS).map_err(storage)?;
            let mut out = Vec::new();
            for entry in steps
                .range((task.0, prefix.as_str())..(task.0 + 1, ""))
                .map_err(storage)?
            {
                let (key, value) = entry.map_err(storage)?;
                // Keys sort by bytes: those with the prefix come first, together.
                if !key.value().1.starts_with(prefix.as_str()) {
                    break;
                }
                let record: StepRecord = serde_json::from_slice(value.value())
                    .map_err(|e| StoreError::Corrupt(format!("step {}: {e}", key.value().1)))?;
                out.push((StepKey::from_stored(key.value().1.to_owned()), record));
            }
            Ok(out)
        })
    }

    fn scan(&self, scan: Scan) -> StoreFuture<'_, Vec<TaskRecord>> {
        self.read(move |txn| scan::scan(txn, &scan))
    }

    fn count_by_state(&self) -> StoreFuture<'_, Vec<(crate::status::TaskState, u64)>> {
        self.read(scan::count_by_state)
    }

    fn compact(&self) -> StoreFuture<'_, ()> {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(Request::Compact { reply });
        Box::pin(async move {
            sent?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn is_failed(&self) -> bool {
        self.shared.state.is_failed()
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let sent = self.send(Request::Close { reply });
            if sent.is_ok() {
                // The committer answers after draining every earlier write.
                let _ = answer.await;
            }
            // The committer has exited or is about to: joining it and dropping the database
            // are short, bounded waits.
            self.stop_committer(None);
            self.release_database();
            tracing::debug!(path = %self.path.display(), "store closed");
            Ok(())
        })
    }

    fn crash(&self) {
        self.shared.state.crash();
        self.stop_committer(Some(Request::Crash));
        self.release_database();
    }
}
