//! Counters and gauges, readable in-process with [`TaskFlow::metrics`](crate::TaskFlow::metrics).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! metrics {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters shared by the engine and the store.
        #[derive(Debug, Default)]
        pub(crate) struct Metrics {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// A point-in-time copy of the counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct MetricsSnapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Metrics {
            pub(crate) fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

metrics! {
    /// Runs created.
    tasks_started,
    /// Runs that completed.
    tasks_completed,
    /// Runs that failed.
    tasks_failed,
    /// Runs cancelled.
    tasks_cancelled,
    /// Interrupted runs resumed at start-up.
    tasks_recovered,
    /// In-flight runs left alone because their task is no longer registered.
    tasks_unregistered,
    /// Step bodies that ran.
    steps_executed,
    /// Steps answered from the log.
    steps_replayed,
    /// Durable WAL transactions.
    wal_commits,
    /// Write batches committed (a commit carries one or more).
    wal_batches,
    /// Sum of commit durations, in microseconds.
    wal_commit_micros,
    /// Largest group committed at once.
    wal_max_group,
    /// 1 once the store is fail-stopped.
    store_failed,
    /// Runs removed by retention.
    runs_collected,
}

impl Metrics {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
