//! Table layout of the redb file and its schema version.

use redb::TableDefinition;

/// Bump when the layout changes; a file with a newer version is refused. Version 2 added the
/// index tables [`OWNER_RUNS`] and [`STATE_RUNS`] (built from the runs when a version-1 file
/// is opened).
pub(crate) const SCHEMA_VERSION: u64 = 2;

/// The [`META`] entry naming the last journal record the file holds.
pub(crate) const JOURNAL_APPLIED: &str = "journal_applied";

/// `schema_version`, `next_task_id`, [`JOURNAL_APPLIED`].
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Task id → JSON [`TaskRecord`](crate::store::TaskRecord).
pub(crate) const TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("tasks");
/// Task id → fencing epoch (kept apart so a fence check never decodes a record).
pub(crate) const EPOCHS: TableDefinition<u64, u64> = TableDefinition::new("epochs");
/// Idempotency key → (current task id or 0, last seq).
pub(crate) const KEYS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("keys");
/// (idempotency key, seq) → JSON [`StoredEventValue`].
pub(crate) const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// (task id, step key) → JSON [`StepRecord`](crate::store::StepRecord).
pub(crate) const STEPS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("steps");

/// (owner key, task id) → nothing: a listing reads one owner's runs newest first without
/// decoding anyone else's. The owner key is `u:<user id>`, or `s` for the service identity.
pub(crate) const OWNER_RUNS: TableDefinition<(&str, u64), ()> = TableDefinition::new("owner_runs");
/// (state, updated_at, task id) → nothing: recovery and retention read the runs of a state
/// (updated before a time) without decoding the others.
pub(crate) const STATE_RUNS: TableDefinition<(&str, u64, u64), ()> =
    TableDefinition::new("state_runs");

/// The key of `owner` in [`OWNER_RUNS`].
pub(crate) fn owner_key(owner: Option<&crate::identity::UserId>) -> String {
    owner.map_or_else(|| "s".to_owned(), |u| format!("u:{}", u.as_str()))
}

/// How an event is written: the same fields as [`StoredEventValue`], borrowed, so the
/// committer serialises a payload without copying it first.
#[derive(serde::Serialize)]
pub(crate) struct StoredEventRef<'a> {
    #[serde(rename = "t")]
    pub(crate) task: u64,
    #[serde(rename = "n")]
    pub(crate) name: &'a str,
    #[serde(rename = "d")]
    pub(crate) data: &'a serde_json::Value,
}

/// The stored value of an event (the key holds ik and seq).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredEventValue<'a> {
    #[serde(rename = "t")]
    pub(crate) task: u64,
    #[serde(rename = "n", borrow)]
    pub(crate) name: std::borrow::Cow<'a, str>,
    #[serde(rename = "d")]
    pub(crate) data: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_written_borrowed_reads_back_whole() {
        let data = serde_json::json!({"i": 3, "text": "a\nb", "list": [1, null]});
        let written = serde_json::to_vec(&StoredEventRef {
            task: 7,
            name: "tick",
            data: &data,
        })
        .expect("encode");
        let read: StoredEventValue<'_> = serde_json::from_slice(&written).expect("decode");
        assert_eq!(
            (read.task, read.name.as_ref(), &read.data),
            (7, "tick", &data)
        );
    }
}
