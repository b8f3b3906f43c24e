//! Listing runs: each scan walks the narrowest index that serves it, newest first, and stops
//! as soon as it has `limit` matches, so a page costs its own size, not the store's.
//!
//! The indexes: the owner index (`owner`, id) for one owner's runs; the key table for a key
//! prefix (one current run per key); the state index (`state`, updated, id) for a retention
//! cut-off or for live states only (few runs are live at once); otherwise the runs table by
//! id, filtered as it goes (terminal runs are most runs, so a page of them is found fast).

use redb::ReadTransaction;

use super::schema::{self, KEYS, TASKS};
use super::storage;
use super::tables::{decode_task, matches};
use crate::error::StoreError;
use crate::status::TaskState;
use crate::store::{Scan, TaskRecord};

/// The runs `scan` selects, newest first, at most `scan.limit`.
pub(super) fn scan(txn: &ReadTransaction, scan: &Scan) -> Result<Vec<TaskRecord>, StoreError> {
    let tasks = txn.open_table(TASKS).map_err(storage)?;
    let keys = txn.open_table(KEYS).map_err(storage)?;
    let below = scan.before.map_or(u64::MAX, |b| b.0);
    let limit = scan.limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    // Takes the run if it matches; true once the page is full.
    let mut take = |record: TaskRecord| -> Result<bool, StoreError> {
        let current = !scan.current_only
            || keys
                .get(record.ik.as_str())
                .map_err(storage)?
                .is_some_and(|v| v.value().0 == record.id.0);
        if current && matches(scan, &record) {
            out.push(record);
        }
        Ok(out.len() >= limit)
    };
    let by_id = |ids: Vec<u64>, take: &mut dyn FnMut(TaskRecord) -> Result<bool, StoreError>| {
        for id in ids {
            let Some(v) = tasks.get(id).map_err(storage)? else {
                continue;
            };
            if take(decode_task(id, v.value())?)? {
                break;
            }
        }
        Ok::<_, StoreError>(())
    };
    if let Some(owner) = &scan.owner {
        let owners = txn.open_table(schema::OWNER_RUNS).map_err(storage)?;
        let key = schema::owner_key(owner.as_ref());
        for entry in owners
            .range((key.as_str(), 0)..(key.as_str(), below))
            .map_err(storage)?
            .rev()
        {
            let id = entry.map_err(storage)?.0.value().1;
            let Some(v) = tasks.get(id).map_err(storage)? else {
                continue;
            };
            if take(decode_task(id, v.value())?)? {
                break;
            }
        }
    } else if let Some(prefix) = &scan.key_prefix {
        let mut ids = Vec::new();
        for entry in keys.range(prefix.as_str()..).map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            if !k.value().starts_with(prefix.as_str()) {
                break;
            }
            let id = v.value().0;
            if id < below {
                ids.push(id);
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        by_id(ids, &mut take)?;
    } else if !scan.states.is_empty()
        && (scan.updated_before.is_some() || scan.states.iter().all(|s| !s.is_terminal()))
    {
        let states = txn.open_table(schema::STATE_RUNS).map_err(storage)?;
        let until = scan.updated_before.map_or(u64::MAX, |t| t.as_millis());
        let mut ids = Vec::new();
        for state in &scan.states {
            let s = state.as_str();
            for entry in states.range((s, 0, 0)..(s, until, 0)).map_err(storage)? {
                let id = entry.map_err(storage)?.0.value().2;
                if id < below {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        by_id(ids, &mut take)?;
    } else {
        for entry in tasks.range(..below).map_err(storage)?.rev() {
            let (id, v) = entry.map_err(storage)?;
            if take(decode_task(id.value(), v.value())?)? {
                break;
            }
        }
    }
    Ok(out)
}

/// How many runs are in each state, read from the state index.
pub(super) fn count_by_state(txn: &ReadTransaction) -> Result<Vec<(TaskState, u64)>, StoreError> {
    let states = txn.open_table(schema::STATE_RUNS).map_err(storage)?;
    let mut out = Vec::new();
    for state in TaskState::ALL {
        let s = state.as_str();
        let n = states
            .range((s, 0, 0)..=(s, u64::MAX, u64::MAX))
            .map_err(storage)?
            .count();
        out.push((state, n as u64));
    }
    Ok(out)
}
