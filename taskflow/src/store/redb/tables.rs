//! Encoding of records and the application of one write batch inside a write transaction.

use redb::{ReadableTable, Table, WriteTransaction};

use super::journal::{JournaledGroup, JournaledWrite};
use super::schema::{
    EPOCHS, EVENTS, JOURNAL_APPLIED, KEYS, META, OWNER_RUNS, STATE_RUNS, STEPS, StoredEventRef,
    StoredEventValue, TASKS, owner_key,
};
use crate::error::StoreError;
use crate::ids::{Epoch, Seq, TaskId};
use crate::status::{StoredEvent, TaskState};
use crate::store::{Committed, Scan, StepRecord, TaskRecord, Write, WriteBatch};

/// Decodes the record of run `id`; an error names the run.
pub(super) fn decode_task(id: u64, bytes: &[u8]) -> Result<TaskRecord, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("the record of run t{id} does not decode: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))
}

pub(super) fn get_task(
    tasks: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<TaskRecord>, StoreError> {
    match tasks.get(id).map_err(super::storage)? {
        Some(v) => decode_task(id, v.value()).map(Some),
        None => Ok(None),
    }
}

/// An event's stored value.
pub(super) fn encode_event(
    task: TaskId,
    name: &str,
    data: &serde_json::Value,
) -> Result<Vec<u8>, StoreError> {
    encode(&StoredEventRef {
        task: task.0,
        name,
        data,
    })
}

pub(super) fn decode_event(seq: u64, bytes: &[u8]) -> Result<StoredEvent, StoreError> {
    let v: StoredEventValue<'_> = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
    Ok(StoredEvent {
        seq: Seq(seq),
        name: v.name.into_owned(),
        data: v.data,
    })
}

pub(super) fn matches(scan: &Scan, r: &TaskRecord) -> bool {
    scan.owner.as_ref().is_none_or(|o| *o == r.owner)
        && (scan.states.is_empty() || scan.states.contains(&r.status))
        && scan.task.as_ref().is_none_or(|t| *t == r.name)
        && scan.updated_before.is_none_or(|t| r.updated_at < t)
        && scan
            .key_prefix
            .as_ref()
            .is_none_or(|p| r.ik.as_str().starts_with(p.as_str()))
}

/// The tables of one write transaction, each opened on first use (a commit that writes only
/// steps touches only the step and epoch tables).
pub(super) struct Tables<'txn> {
    txn: &'txn WriteTransaction,
    meta: Option<Table<'txn, &'static str, u64>>,
    tasks: Option<Table<'txn, u64, &'static [u8]>>,
    epochs: Option<Table<'txn, u64, u64>>,
    keys: Option<Table<'txn, &'static str, (u64, u64)>>,
    events: Option<Table<'txn, (&'static str, u64), &'static [u8]>>,
    steps: Option<Table<'txn, (u64, &'static str), &'static [u8]>>,
    owner_runs: Option<Table<'txn, (&'static str, u64), ()>>,
    state_runs: Option<Table<'txn, (&'static str, u64, u64), ()>>,
}

macro_rules! lazy_table {
    ($name:ident, $def:ident, $k:ty, $v:ty) => {
        fn $name(&mut self) -> Result<&mut Table<'txn, $k, $v>, redb::Error> {
            if self.$name.is_none() {
                self.$name = Some(self.txn.open_table($def)?);
            }
            Ok(self.$name.as_mut().expect("opened just above"))
        }
    };
}

impl<'txn> Tables<'txn> {
    pub(super) fn new(txn: &'txn WriteTransaction) -> Self {
        Self {
            txn,
            meta: None,
            tasks: None,
            epochs: None,
            keys: None,
            events: None,
            steps: None,
            owner_runs: None,
            state_runs: None,
        }
    }

    lazy_table!(meta, META, &'static str, u64);
    lazy_table!(tasks, TASKS, u64, &'static [u8]);
    lazy_table!(epochs, EPOCHS, u64, u64);
    lazy_table!(keys, KEYS, &'static str, (u64, u64));
    lazy_table!(events, EVENTS, (&'static str, u64), &'static [u8]);
    lazy_table!(steps, STEPS, (u64, &'static str), &'static [u8]);
    lazy_table!(owner_runs, OWNER_RUNS, (&'static str, u64), ());
    lazy_table!(state_runs, STATE_RUNS, (&'static str, u64, u64), ());

    /// Moves a run's index entries from what it was (`old`) to what it is (`new`); `None`
    /// for a run being created or removed.
    fn reindex(
        &mut self,
        old: Option<&TaskRecord>,
        new: Option<&TaskRecord>,
    ) -> Result<(), redb::Error> {
        if let Some(old) = old {
            let key = (old.status.as_str(), old.updated_at.as_millis(), old.id.0);
            self.state_runs()?.remove(key)?;
            if new.is_none() {
                self.owner_runs()?
                    .remove((owner_key(old.owner.as_ref()).as_str(), old.id.0))?;
            }
        }
        if let Some(new) = new {
            let key = (new.status.as_str(), new.updated_at.as_millis(), new.id.0);
            self.state_runs()?.insert(key, ())?;
            if old.is_none() {
                self.owner_runs()?
                    .insert((owner_key(new.owner.as_ref()).as_str(), new.id.0), ())?;
            }
        }
        Ok(())
    }

    fn epoch(&mut self, task: TaskId) -> Result<Option<u64>, redb::Error> {
        Ok(self.epochs()?.get(task.0)?.map(|v| v.value()))
    }

    /// Applies one batch. The outer `Err` is a storage failure (the whole group is lost); the
    /// inner one is this batch's refusal (fenced, or a write to a run that does not exist),
    /// decided before anything of the batch is written.
    /// Applies `batch` inside the transaction. An event's payload moves from the batch into
    /// its [`Committed::Event`] (the batch is spent once applied: only its keys are read
    /// after, to fan the events out), so the committer copies no payload.
    pub(super) fn apply(
        &mut self,
        batch: &mut WriteBatch,
    ) -> Result<Result<Vec<Committed>, StoreError>, redb::Error> {
        if let Some(fence) = batch.fence
            && self.epoch(fence.task)? != Some(fence.epoch.0)
        {
            return Ok(Err(StoreError::Fenced));
        }
        for write in &batch.writes {
            if let Write::CreateRun { record, replaces } = write {
                let current = self
                    .keys()?
                    .get(record.ik.as_str())?
                    .map_or(0, |v| v.value().0);
                if current != replaces.map_or(0, |r| r.0) {
                    return Ok(Err(StoreError::KeyTaken));
                }
            }
            if let Write::Update { task, .. }
            | Write::Step { task, .. }
            | Write::Signal { task, .. } = write
                && batch.fence.is_none_or(|f| f.task != *task)
                && self.epoch(*task)?.is_none()
            {
                return Ok(Err(StoreError::Fenced));
            }
        }
        let mut out = Vec::with_capacity(batch.writes.len());
        for write in &mut batch.writes {
            let done = match write {
                Write::CreateRun { record, .. } => self.create_run(record)?,
                Write::Update { task, patch } => {
                    let Some(mut record) = self.task(*task)? else {
                        return Err(corrupt("run vanished inside its transaction"));
                    };
                    let before = record.clone();
                    record.apply(patch);
                    self.reindex(Some(&before), Some(&record))?;
                    if patch.bump_epoch {
                        self.epochs()?.insert(task.0, record.epoch.0)?;
                    }
                    self.put_task(&record)?;
                    Committed::Epoch(record.epoch)
                }
                Write::Event {
                    ik,
                    task,
                    name,
                    data,
                } => {
                    let (current, last) =
                        self.keys()?.get(ik.as_str())?.map_or((0, 0), |v| v.value());
                    let seq = last + 1;
                    self.events()?.insert(
                        (ik.as_str(), seq),
                        encode_event(*task, name, data).map_err(to_redb)?.as_slice(),
                    )?;
                    self.keys()?.insert(ik.as_str(), (current, seq))?;
                    Committed::Event(StoredEvent {
                        seq: Seq(seq),
                        name: name.clone(),
                        data: std::mem::take(data),
                    })
                }
                Write::Step { task, key, json } => {
                    self.steps()?
                        .insert((task.0, key.as_str()), json.as_slice())?;
                    Committed::Done
                }
                Write::Signal {
                    task,
                    name,
                    payload,
                    once,
                } => 'signal: {
                    let once_key = once.as_deref().map(crate::store::signal_once_key);
                    if let Some(once_key) = &once_key
                        && self.steps()?.get((task.0, once_key.as_str()))?.is_some()
                    {
                        break 'signal Committed::Kept;
                    }
                    let prefix = format!("$signal:{name}#");
                    // `$` follows `#`: every key of this signal's name sorts in between.
                    let end = format!("$signal:{name}$");
                    let n = self
                        .steps()?
                        .range((task.0, prefix.as_str())..(task.0, end.as_str()))?
                        .count();
                    let key = crate::store::signal_key(name, u32::try_from(n).unwrap_or(u32::MAX));
                    let bad =
                        |e: serde_json::Error| to_redb(StoreError::Corrupt(format!("signal: {e}")));
                    let value = serde_json::to_vec(payload).map_err(bad)?;
                    let json = StepRecord::encode(&key, &value, "signal").map_err(bad)?;
                    self.steps()?
                        .insert((task.0, key.as_str()), json.as_slice())?;
                    if let Some(once_key) = &once_key {
                        let value = serde_json::to_vec(key.as_str()).map_err(bad)?;
                        let json = StepRecord::encode(once_key, &value, "signal").map_err(bad)?;
                        self.steps()?
                            .insert((task.0, once_key.as_str()), json.as_slice())?;
                    }
                    Committed::Done
                }
                Write::DeleteRun { task, if_unchanged } => {
                    if self.delete_run(*task, *if_unchanged)? {
                        Committed::Done
                    } else {
                        Committed::Kept
                    }
                }
            };
            out.push(done);
        }
        Ok(Ok(out))
    }

    /// Writes the events and the other writes of journal records, in order, and records the
    /// last one as applied.
    /// Each event must follow its key's last seq (the journal decided them against this
    /// very state); anything else means the journal and the file do not belong together.
    pub(super) fn fold(&mut self, groups: &[JournaledGroup]) -> Result<(), redb::Error> {
        for event in groups.iter().flat_map(|g| &g.events) {
            let ik = event.ik.as_str();
            let (current, last) = self.keys()?.get(ik)?.map_or((0, 0), |v| v.value());
            if event.seq != last + 1 {
                return Err(corrupt(&format!(
                    "the journal's event {} of key {ik:?} does not follow the database's last seq {last}: taskflow.journal does not belong to this taskflow.redb",
                    event.seq
                )));
            }
            self.events()?.insert((ik, event.seq), &*event.value)?;
            self.keys()?.insert(ik, (current, event.seq))?;
        }
        for write in groups.iter().flat_map(|g| &g.writes) {
            let (task, write) = match write {
                JournaledWrite::Step { task, key, json } => (
                    *task,
                    Write::Step {
                        task: TaskId(*task),
                        key: crate::ids::StepKey::from_stored(key.clone()),
                        json: json.clone(),
                    },
                ),
                JournaledWrite::Heartbeat { task, now } => {
                    let mut patch =
                        crate::store::TaskPatch::at(crate::clock::Timestamp::from_millis(*now));
                    patch.heartbeat = true;
                    (
                        *task,
                        Write::Update {
                            task: TaskId(*task),
                            patch,
                        },
                    )
                }
            };
            if self.apply(&mut WriteBatch::new(vec![write]))?.is_err() {
                return Err(corrupt(&format!(
                    "the journal writes to run t{task}, which the database does not hold: \
                     taskflow.journal does not belong to this taskflow.redb"
                )));
            }
        }
        if let Some(last) = groups.last() {
            self.meta()?.insert(JOURNAL_APPLIED, last.jseq)?;
        }
        Ok(())
    }

    fn task(&mut self, id: TaskId) -> Result<Option<TaskRecord>, redb::Error> {
        get_task(self.tasks()?, id.0).map_err(to_redb)
    }

    fn put_task(&mut self, record: &TaskRecord) -> Result<(), redb::Error> {
        let bytes = encode(record).map_err(to_redb)?;
        self.tasks()?.insert(record.id.0, bytes.as_slice())?;
        Ok(())
    }

    fn create_run(&mut self, record: &TaskRecord) -> Result<Committed, redb::Error> {
        let id = self.meta()?.get("next_task_id")?.map_or(1, |v| v.value());
        self.meta()?.insert("next_task_id", id + 1)?;
        let ik = record.ik.as_str();
        let (_, last) = self.keys()?.get(ik)?.map_or((0, 0), |v| v.value());
        let mut record = record.clone();
        let epoch = Epoch(1);
        let first_seq = Seq(last + 1);
        record.id_for_store(TaskId(id), epoch, first_seq);
        self.put_task(&record)?;
        self.reindex(None, Some(&record))?;
        self.epochs()?.insert(id, epoch.0)?;
        self.keys()?.insert(ik, (id, last))?;
        Ok(Committed::Run {
            id: TaskId(id),
            epoch,
            first_seq,
        })
    }

    /// Removes the run if it exists and, with `if_unchanged`, is still in that state and at
    /// that update; `false` when it kept it.
    fn delete_run(
        &mut self,
        task: TaskId,
        if_unchanged: Option<(TaskState, crate::clock::Timestamp)>,
    ) -> Result<bool, redb::Error> {
        let Some(record) = self.task(task)? else {
            return Ok(false);
        };
        if if_unchanged.is_some_and(|seen| seen != (record.status, record.updated_at)) {
            return Ok(false);
        }
        self.tasks()?.remove(task.0)?;
        self.reindex(Some(&record), None)?;
        self.epochs()?.remove(task.0)?;
        self.steps()?
            .retain_in((task.0, "")..(task.0 + 1, ""), |_, _| false)?;
        let ik = record.ik.as_str();
        let mut doomed = Vec::new();
        for entry in self
            .events()?
            .range((ik, record.first_seq.0)..=(ik, u64::MAX))?
        {
            let (key, value) = entry?;
            let stored: StoredEventValue<'_> =
                serde_json::from_slice(value.value()).map_err(|e| corrupt(&e.to_string()))?;
            if stored.task != task.0 {
                break;
            }
            doomed.push(key.value().1);
        }
        for seq in doomed {
            self.events()?.remove((ik, seq))?;
        }
        let entry = self.keys()?.get(ik)?.map(|v| v.value());
        if let Some((current, last)) = entry
            && current == task.0
        {
            // Keep the key's last seq so that a later run never reuses a sequence number.
            self.keys()?.insert(ik, (0, last))?;
        }
        Ok(true)
    }
}

fn corrupt(msg: &str) -> redb::Error {
    redb::Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        msg.to_owned(),
    ))
}

fn to_redb(e: StoreError) -> redb::Error {
    corrupt(&e.to_string())
}
