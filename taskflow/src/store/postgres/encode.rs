//! Between taskflow's types and the SQL of the PostgreSQL store: a group of write batches as
//! the arguments of `apply_group`, its answer as [`Committed`] values, a row as a
//! [`TaskRecord`].

use serde_json::{Map, Value, json};
use tokio_postgres::Row;

use crate::error::StoreError;
use crate::ids::Seq;
use crate::status::StoredEvent;
use crate::store::{Committed, TaskPatch, TaskRecord, Write, WriteBatch};

/// The columns [`record`] reads, in its order.
pub(super) const RUN_COLUMNS: &str = "id, name, ik, owner, status, input::text, output::text, \
     error::text, attempt, failed_attempts, max_attempts, execute_mode, on_behalf_of, \
     created_at, updated_at, heartbeat_at, next_attempt_at, suspended_reason::text, first_seq, \
     epoch, disconnect_grace_ms, version, waiting::text, parent";

/// The two arguments of `apply_group`: the batches (`g`, taskflow's own values) and the JSON
/// texts of user data they point at by 1-based index (`d`).
#[derive(Debug, Default)]
pub(super) struct GroupArgs {
    pub(super) g: String,
    pub(super) d: Vec<String>,
}

impl GroupArgs {
    pub(super) fn new<'a>(
        batches: impl IntoIterator<Item = &'a WriteBatch>,
    ) -> Result<Self, StoreError> {
        let mut args = Self::default();
        let mut group = Vec::new();
        for batch in batches {
            let fence = batch.fence.map_or(
                Value::Null,
                |f| json!({"task": f.task.0, "epoch": f.epoch.0}),
            );
            let mut writes = Vec::with_capacity(batch.writes.len());
            for write in &batch.writes {
                writes.push(args.write(write)?);
            }
            group.push(json!({"fence": fence, "writes": writes}));
        }
        args.g = Value::Array(group).to_string();
        Ok(args)
    }

    /// Stores `text` (a JSON text) in `d` and returns its index.
    fn data_text(&mut self, text: String) -> Value {
        self.d.push(text);
        Value::from(self.d.len())
    }

    fn data<T: serde::Serialize>(&mut self, value: &T) -> Result<Value, StoreError> {
        let text = serde_json::to_string(value)
            .map_err(|e| StoreError::Corrupt(format!("encode: {e}")))?;
        Ok(self.data_text(text))
    }

    fn optional<T: serde::Serialize>(&mut self, value: Option<&T>) -> Result<Value, StoreError> {
        value.map_or(Ok(Value::Null), |v| self.data(v))
    }

    fn write(&mut self, write: &Write) -> Result<Value, StoreError> {
        Ok(match write {
            Write::CreateRun { record, replaces } => json!({
                "op": "create",
                "record": self.record(record)?,
                "replaces": replaces.map(|r| r.0),
            }),
            Write::Update { task, patch } => {
                json!({"op": "update", "task": task.0, "patch": self.patch(patch)?})
            }
            Write::Event {
                ik,
                task,
                name,
                data,
            } => {
                json!({"op": "event", "ik": ik, "task": task.0, "name": name, "data": self.data(data)?})
            }
            Write::Step { task, key, json } => {
                let text = String::from_utf8(json.clone())
                    .map_err(|e| StoreError::Corrupt(format!("step record is not UTF-8: {e}")))?;
                json!({"op": "step", "task": task.0, "key": key, "record": self.data_text(text)})
            }
            Write::Signal {
                task,
                name,
                payload,
                once,
            } => {
                json!({"op": "signal", "task": task.0, "name": name, "payload": self.data(payload)?, "once": once})
            }
            Write::DeleteRun { task, if_unchanged } => json!({
                "op": "delete",
                "task": task.0,
                "if_unchanged": if_unchanged.map(|(state, at)| json!([state, at])),
            }),
        })
    }

    fn record(&mut self, r: &TaskRecord) -> Result<Value, StoreError> {
        Ok(json!({
            "ik": r.ik,
            "name": r.name,
            "owner": r.owner,
            "status": r.status,
            "input": self.data(&r.input)?,
            "output": self.optional(r.output.as_ref())?,
            "error": self.optional(r.error.as_ref())?,
            "attempt": r.attempt,
            "failed_attempts": r.failed_attempts,
            "max_attempts": r.max_attempts,
            "execute_mode": r.execute_mode,
            "on_behalf_of": r.on_behalf_of,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "heartbeat_at": r.heartbeat_at,
            "next_attempt_at": r.next_attempt_at,
            "suspended_reason": self.optional(r.suspended_reason.as_ref())?,
            "disconnect_grace_ms": r.disconnect_grace_ms,
            "version": r.version,
            "parent": r.parent,
        }))
    }

    /// Only the fields the patch sets; a present `null` clears a nullable field.
    fn patch(&mut self, p: &TaskPatch) -> Result<Value, StoreError> {
        let mut m = Map::new();
        m.insert("now".into(), json!(p.now));
        m.insert("bump_epoch".into(), json!(p.bump_epoch));
        m.insert("heartbeat".into(), json!(p.heartbeat));
        m.insert("claim".into(), json!(p.claim.is_some()));
        if let Some(c) = p.claim {
            m.insert("max_running".into(), json!(c.max_running));
            m.insert("max_running_per_user".into(), json!(c.max_running_per_user));
        }
        if let Some(s) = p.status {
            m.insert("status".into(), json!(s));
        }
        if let Some(a) = p.attempt {
            m.insert("attempt".into(), json!(a));
        }
        if let Some(f) = p.failed_attempts {
            m.insert("failed_attempts".into(), json!(f));
        }
        if let Some(o) = &p.output {
            m.insert("output".into(), self.data(o)?);
        }
        if let Some(e) = &p.error {
            m.insert("error".into(), self.data(e)?);
        }
        if let Some(n) = p.next_attempt_at {
            m.insert("next_attempt_at".into(), json!(n));
        }
        if let Some(r) = &p.suspended_reason {
            m.insert("suspended_reason".into(), self.optional(r.as_ref())?);
        }
        if let Some(w) = &p.waiting {
            m.insert("waiting".into(), self.optional(w.as_ref())?);
        }
        if let Some(d) = p.park_for {
            // `Duration::MAX`: parked until something else wakes it (a signal).
            let ms = if d == std::time::Duration::MAX {
                json!("infinity")
            } else {
                json!(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            };
            m.insert("park_ms".into(), ms);
        }
        Ok(Value::Object(m))
    }
}

/// Decodes `apply_group`'s answer: one outcome per batch of `batches`, in order.
pub(super) fn outcomes(
    answer: &str,
    batches: &[&WriteBatch],
) -> Result<Vec<Result<Vec<Committed>, StoreError>>, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("apply_group answered {what}"));
    let answer: Vec<Value> = serde_json::from_str(answer).map_err(|e| bad(&e.to_string()))?;
    if answer.len() != batches.len() {
        return Err(bad("a different number of outcomes than batches"));
    }
    let mut out = Vec::with_capacity(batches.len());
    for (outcome, batch) in answer.into_iter().zip(batches) {
        if let Some(err) = outcome.get("err") {
            out.push(Err(match err.as_str() {
                Some("fenced") => StoreError::Fenced,
                Some("key_taken") => StoreError::KeyTaken,
                Some("leased") => StoreError::ClaimedElsewhere,
                Some("busy") => StoreError::AtCapacity,
                _ => return Err(bad(&format!("the refusal `{err}`"))),
            }));
            continue;
        }
        let Some(Value::Array(done)) = outcome.get("ok") else {
            return Err(bad("an outcome without `ok`"));
        };
        if done.len() != batch.writes.len() {
            return Err(bad("a different number of results than writes"));
        }
        let mut committed = Vec::with_capacity(done.len());
        for (d, write) in done.iter().zip(&batch.writes) {
            committed
                .push(committed_one(d, write).ok_or_else(|| bad(&format!("`{d}` for a write")))?);
        }
        out.push(Ok(committed));
    }
    Ok(out)
}

fn committed_one(d: &Value, write: &Write) -> Option<Committed> {
    let number = |key: &str| d.get(key).and_then(Value::as_u64);
    Some(match write {
        Write::CreateRun { .. } => {
            let run = d.get("run")?;
            let field = |key: &str| run.get(key).and_then(Value::as_u64);
            Committed::Run {
                id: crate::ids::TaskId(field("id")?),
                epoch: crate::ids::Epoch(field("epoch")?),
                first_seq: Seq(field("first_seq")?),
            }
        }
        Write::Update { .. } => Committed::Epoch(crate::ids::Epoch(number("epoch")?)),
        Write::Event { name, data, .. } => Committed::Event(StoredEvent {
            seq: Seq(number("event")?),
            name: name.clone(),
            data: data.clone(),
        }),
        Write::Step { .. } => (d.as_str()? == "done").then_some(Committed::Done)?,
        Write::Signal { .. } | Write::DeleteRun { .. } => match d.as_str()? {
            "done" => Committed::Done,
            "kept" => Committed::Kept,
            _ => return None,
        },
    })
}

/// A row of [`RUN_COLUMNS`] as a record.
pub(super) fn record(row: &Row) -> Result<TaskRecord, StoreError> {
    record_at(row, 0)
}

/// A record whose [`RUN_COLUMNS`] start at column `at`.
pub(super) fn record_at(row: &Row, at: usize) -> Result<TaskRecord, StoreError> {
    let id: Option<i64> = row.try_get(at).ok();
    let corrupt = |e: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!(
            "the record of run t{} does not decode: {e}",
            id.unwrap_or_default()
        ))
    };
    let text = |i: usize| -> Result<Value, StoreError> {
        let t: Option<String> = row.try_get(at + i).map_err(|e| corrupt(&e))?;
        t.map_or(Ok(Value::Null), |t| {
            serde_json::from_str(&t).map_err(|e| corrupt(&e))
        })
    };
    let get = |i: usize| -> Result<Value, StoreError> {
        let column = &row.columns()[at + i];
        let v = match *column.type_() {
            tokio_postgres::types::Type::INT8 => json!(
                row.try_get::<_, Option<i64>>(at + i)
                    .map_err(|e| corrupt(&e))?
            ),
            tokio_postgres::types::Type::INT4 => json!(
                row.try_get::<_, Option<i32>>(at + i)
                    .map_err(|e| corrupt(&e))?
            ),
            tokio_postgres::types::Type::BOOL => json!(
                row.try_get::<_, Option<bool>>(at + i)
                    .map_err(|e| corrupt(&e))?
            ),
            _ => json!(
                row.try_get::<_, Option<String>>(at + i)
                    .map_err(|e| corrupt(&e))?
            ),
        };
        Ok(v)
    };
    let value = json!({
        "id": get(0)?,
        "name": get(1)?,
        "ik": get(2)?,
        "owner": get(3)?,
        "status": get(4)?,
        "input": text(5)?,
        "output": text(6)?,
        "error": text(7)?,
        "attempt": get(8)?,
        "failed_attempts": get(9)?,
        "max_attempts": get(10)?,
        "execute_mode": get(11)?,
        "on_behalf_of": get(12)?,
        "created_at": get(13)?,
        "updated_at": get(14)?,
        "heartbeat_at": get(15)?,
        "next_attempt_at": get(16)?,
        "suspended_reason": text(17)?,
        "first_seq": get(18)?,
        "epoch": get(19)?,
        "disconnect_grace_ms": get(20)?,
        "version": get(21)?,
        "waiting": text(22)?,
        "parent": get(23)?,
    });
    serde_json::from_value(value).map_err(|e| corrupt(&e))
}

/// An event row `(seq, name, data::text)`.
pub(super) fn event(row: &Row) -> Result<StoredEvent, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("event row: {e}"));
    let seq: i64 = row.try_get(0).map_err(|e| corrupt(&e))?;
    let name: String = row.try_get(1).map_err(|e| corrupt(&e))?;
    let data: String = row.try_get(2).map_err(|e| corrupt(&e))?;
    Ok(StoredEvent {
        seq: Seq(u64::try_from(seq).map_err(|e| corrupt(&e))?),
        name,
        data: serde_json::from_str(&data).map_err(|e| corrupt(&e))?,
    })
}
