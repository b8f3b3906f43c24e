//! `GET /metrics`: the counters as Prometheus text.

use std::fmt::Write as _;

use crate::engine::TaskFlow;

/// The flow's counters and gauges in the Prometheus text format.
pub(crate) fn prometheus_text(flow: &TaskFlow) -> String {
    let m = flow.metrics();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP taskflow_{name} {help}");
        let _ = writeln!(out, "# TYPE taskflow_{name} {kind}");
        let _ = writeln!(out, "taskflow_{name} {value}");
    };
    metric(
        "tasks_started_total",
        "counter",
        "Runs created.",
        m.tasks_started,
    );
    metric(
        "tasks_completed_total",
        "counter",
        "Runs that completed.",
        m.tasks_completed,
    );
    metric(
        "tasks_failed_total",
        "counter",
        "Runs that failed.",
        m.tasks_failed,
    );
    metric(
        "tasks_cancelled_total",
        "counter",
        "Runs cancelled.",
        m.tasks_cancelled,
    );
    metric(
        "tasks_recovered_total",
        "counter",
        "Interrupted runs recovered at start-up.",
        m.tasks_recovered,
    );
    metric(
        "steps_executed_total",
        "counter",
        "Step bodies that ran.",
        m.steps_executed,
    );
    metric(
        "steps_replayed_total",
        "counter",
        "Steps answered from the log.",
        m.steps_replayed,
    );
    metric(
        "wal_commits_total",
        "counter",
        "Durable WAL transactions.",
        m.wal_commits,
    );
    metric(
        "wal_batches_total",
        "counter",
        "Write batches committed (group size = batches / commits).",
        m.wal_batches,
    );
    metric(
        "wal_commit_microseconds_total",
        "counter",
        "Time spent in WAL commits, in microseconds.",
        m.wal_commit_micros,
    );
    metric(
        "wal_max_group",
        "gauge",
        "Largest group committed at once.",
        m.wal_max_group,
    );
    metric(
        "store_failed",
        "gauge",
        "1 once the store is fail-stopped after a failed commit.",
        m.store_failed,
    );
    metric(
        "runs_collected_total",
        "counter",
        "Runs removed by retention.",
        m.runs_collected,
    );
    metric(
        "active_streams",
        "gauge",
        "Open SSE streams.",
        flow.inner.streams.open_streams() as u64,
    );
    out
}
