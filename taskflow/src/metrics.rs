//! Counters and gauges, readable in-process with [`TaskFlow::metrics`](crate::TaskFlow::metrics)
//! and as Prometheus text. Each metric is declared once, below, with its kind and help text.

use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "axum")]
/// Whether a metric only grows or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

#[cfg(feature = "axum")]
impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

#[cfg(feature = "axum")]
/// One metric as exported: its Prometheus name (without the `taskflow_` prefix), kind, help
/// text and value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exported {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) help: &'static str,
    pub(crate) value: u64,
}

macro_rules! metrics {
    ($(#[doc = $help:literal] $name:ident: $kind:ident $export:literal),* $(,)?) => {
        /// Live counters shared by the engine and the store.
        #[derive(Debug, Default)]
        pub(crate) struct Metrics {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// A point-in-time copy of the counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct MetricsSnapshot {
            $(#[doc = $help] pub $name: u64,)*
        }

        impl Metrics {
            pub(crate) fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }

        #[cfg(feature = "axum")]
        impl MetricsSnapshot {
            /// Every metric with its export name, kind and help (the doc line).
            pub(crate) fn exported(&self) -> Vec<Exported> {
                vec![$(Exported {
                    name: $export,
                    kind: Kind::$kind,
                    help: $help.trim_ascii(),
                    value: self.$name,
                },)*]
            }
        }
    };
}

metrics! {
    /// Runs created.
    tasks_started: Counter "tasks_started_total",
    /// Runs that completed.
    tasks_completed: Counter "tasks_completed_total",
    /// Runs that failed.
    tasks_failed: Counter "tasks_failed_total",
    /// Runs cancelled.
    tasks_cancelled: Counter "tasks_cancelled_total",
    /// Interrupted runs recovered at start-up.
    tasks_recovered: Counter "tasks_recovered_total",
    /// In-flight runs left alone because their task is no longer registered.
    tasks_unregistered: Counter "tasks_unregistered_total",
    /// In-flight runs set aside because another version of their task created them.
    runs_incompatible: Counter "runs_incompatible_total",
    /// In-flight runs set aside because their log holds a step their task no longer has.
    runs_missing_step: Counter "runs_missing_step_total",
    /// Times a run parked in a durable wait (no slot, no task held).
    runs_parked: Counter "runs_parked_total",
    /// Parked runs woken when their wait was due.
    runs_woken: Counter "runs_woken_total",
    /// Step bodies that ran.
    steps_executed: Counter "steps_executed_total",
    /// Steps answered from the log.
    steps_replayed: Counter "steps_replayed_total",
    /// Durable WAL transactions.
    wal_commits: Counter "wal_commits_total",
    /// Write batches committed (group size = batches / commits).
    wal_batches: Counter "wal_batches_total",
    /// Time spent in WAL commits, in microseconds.
    wal_commit_micros: Counter "wal_commit_microseconds_total",
    /// Largest group committed at once.
    wal_max_group: Gauge "wal_max_group",
    /// 1 once the store is fail-stopped after a failed commit.
    store_failed: Gauge "store_failed",
    /// Runs removed by retention.
    runs_collected: Counter "runs_collected_total",
}

impl Metrics {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
