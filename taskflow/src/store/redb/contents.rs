//! Everything a redb store holds, read in one transaction (feature `test-util`): what a crash
//! test checks an image against, without an engine and without one read per record.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use redb::{ReadableDatabase, ReadableTable};

use super::schema::{EVENTS, KEYS, STEPS, TASKS};
use super::tables::{decode_event, get_task};
use super::{RedbStore, storage};
use crate::error::StoreError;
use crate::ids::{IdempotencyKey, TaskId};
use crate::status::StoredEvent;
use crate::store::{StepRecord, TaskRecord};

/// What a [`RedbStore`] holds: each key's current run, each run's step records, each key's
/// events. A record that does not decode is an error naming it.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct StoreContents {
    /// The current run of each key (a key whose run was removed has none).
    pub runs: BTreeMap<IdempotencyKey, TaskRecord>,
    /// Each run's step records, by run id, in key order.
    pub steps: BTreeMap<TaskId, Vec<StepRecord>>,
    /// Each key's events, in seq order.
    pub events: BTreeMap<IdempotencyKey, Vec<StoredEvent>>,
}

impl RedbStore {
    /// Reads [`StoreContents`] in one read transaction. Blocking.
    ///
    /// # Errors
    /// The store is closed or failed, a read failed, or a record does not decode.
    pub fn contents(&self) -> Result<StoreContents, StoreError> {
        let guard = self
            .shared
            .db
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let db = guard.as_ref().ok_or(StoreError::Closed)?;
        let txn = db.begin_read().map_err(storage)?;
        let (keys, tasks) = (
            txn.open_table(KEYS).map_err(storage)?,
            txn.open_table(TASKS).map_err(storage)?,
        );
        let mut out = StoreContents::default();
        for entry in keys.iter().map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            let (current, _) = value.value();
            if current == 0 {
                continue;
            }
            let record = get_task(&tasks, current)?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "key {} names run t{current}, which has no record",
                    key.value()
                ))
            })?;
            out.runs
                .insert(IdempotencyKey::from_trusted(key.value().to_owned()), record);
        }
        for entry in txn
            .open_table(STEPS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (key, value) = entry.map_err(storage)?;
            let (task, step) = key.value();
            let record: StepRecord = serde_json::from_slice(value.value()).map_err(|e| {
                StoreError::Corrupt(format!("step {step} of run t{task} does not decode: {e}"))
            })?;
            out.steps.entry(TaskId(task)).or_default().push(record);
        }
        for entry in txn
            .open_table(EVENTS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (key, value) = entry.map_err(storage)?;
            let (ik, seq) = key.value();
            let event = decode_event(seq, value.value())?;
            out.events
                .entry(IdempotencyKey::from_trusted(ik.to_owned()))
                .or_default()
                .push(event);
        }
        Ok(out)
    }
}
