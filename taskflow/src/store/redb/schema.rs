//! Table layout of the redb file and its schema version.

use redb::TableDefinition;

/// Bump when the layout changes; a file with a newer version is refused.
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// `schema_version`, `next_task_id`.
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
