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
            /// Commit latency and group size, by bucket.
            pub(crate) commits: CommitHistograms,
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
    /// Events the store reported durable (on PostgreSQL also other processes' events of runs followed here).
    events_committed: Counter "events_committed_total",
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

/// Upper bounds of the commit latency buckets, in microseconds (an fdatasync is tens of
/// microseconds on a fast disk, a network round trip to PostgreSQL about a millisecond).
pub const COMMIT_MICROS_BOUNDS: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// Upper bounds of the group size buckets, in write batches per commit.
pub const GROUP_SIZE_BOUNDS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// A histogram with fixed bucket bounds: counts per bucket (not cumulative; the last one is
/// everything above the last bound), the sum and the count of observations.
#[derive(Debug)]
pub(crate) struct Histogram<const B: usize> {
    bounds: &'static [u64; B],
    buckets: [AtomicU64; B],
    above: AtomicU64,
    sum: AtomicU64,
}

impl<const B: usize> Histogram<B> {
    fn new(bounds: &'static [u64; B]) -> Self {
        Self {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            above: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, value: u64) {
        let slot = self.bounds.iter().position(|b| value <= *b);
        match slot {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.above.fetch_add(1, Ordering::Relaxed),
        };
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot<B> {
        HistogramSnapshot {
            bounds: *self.bounds,
            counts: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            above: self.above.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// The commit histograms of a store.
#[derive(Debug)]
pub(crate) struct CommitHistograms {
    pub(crate) micros: Histogram<12>,
    pub(crate) group: Histogram<11>,
}

impl Default for CommitHistograms {
    fn default() -> Self {
        Self {
            micros: Histogram::new(&COMMIT_MICROS_BOUNDS),
            group: Histogram::new(&GROUP_SIZE_BOUNDS),
        }
    }
}

impl Metrics {
    /// The commit latency and group size histograms now.
    pub(crate) fn histograms(&self) -> Histograms {
        Histograms {
            commit_micros: self.commits.micros.snapshot(),
            group_size: self.commits.group.snapshot(),
        }
    }
}

/// A point-in-time copy of one histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistogramSnapshot<const B: usize> {
    /// Each bucket's upper bound (inclusive).
    pub bounds: [u64; B],
    /// Observations per bucket (each at most its bound and above the previous one).
    pub counts: [u64; B],
    /// Observations above the last bound.
    pub above: u64,
    /// The sum of every observation.
    pub sum: u64,
}

impl<const B: usize> HistogramSnapshot<B> {
    /// Observations in all.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.above
    }

    /// Observations at most each bound, cumulatively (Prometheus `_bucket{le=...}`).
    #[must_use]
    pub fn cumulative(&self) -> [u64; B] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.counts[i];
            total
        })
    }
}

/// The store's commit histograms, from [`TaskFlow::histograms`](crate::TaskFlow::histograms)
/// and as Prometheus `_bucket` series on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Histograms {
    /// Time per durable commit, in microseconds ([`COMMIT_MICROS_BOUNDS`]).
    pub commit_micros: HistogramSnapshot<12>,
    /// Write batches per commit ([`GROUP_SIZE_BOUNDS`]).
    pub group_size: HistogramSnapshot<11>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_value_in_the_first_bucket_that_holds_it() {
        static BOUNDS: [u64; 3] = [1, 10, 100];
        let h = Histogram::new(&BOUNDS);
        for v in [0, 1, 2, 10, 11, 100, 101, 5000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, [2, 2, 2]);
        assert_eq!(s.above, 2);
        assert_eq!(s.cumulative(), [2, 4, 6]);
        assert_eq!(s.count(), 8);
        assert_eq!(s.sum, 5225);
    }
}
