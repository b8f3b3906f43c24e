//! The console's health history: the flow's counters sampled every [`EVERY`] for the last
//! [`KEPT`] samples, so the page draws the last minutes at once, not only since it opened.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;

use crate::engine::port::WeakPort;
use crate::sync::lock;

/// Time between samples.
pub(crate) const EVERY: Duration = Duration::from_secs(2);
/// Samples kept: ten minutes.
pub(crate) const KEPT: usize = 300;

/// One sample of the counters the charts need.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Sample {
    /// Unix milliseconds, by the system clock.
    pub(crate) at_ms: u64,
    pub(crate) steps_executed: u64,
    pub(crate) events_committed: u64,
    pub(crate) wal_commits: u64,
}

/// The history, filled by one task started on first use and ended with the flow.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    ring: Arc<Mutex<VecDeque<Sample>>>,
    started: OnceLock<()>,
}

impl Samples {
    /// The samples, oldest first; starts the sampler on the first call (inside the runtime).
    pub(crate) fn history(&self, port: &WeakPort) -> Vec<Sample> {
        self.started.get_or_init(|| {
            let ring = self.ring.clone();
            let port = port.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(EVERY);
                loop {
                    tick.tick().await;
                    let Some(port) = port.upgrade() else { return };
                    if port.is_shutting_down() {
                        return;
                    }
                    let m = port.metrics();
                    let sample = Sample {
                        at_ms: now_ms(),
                        steps_executed: m.steps_executed,
                        events_committed: m.events_committed,
                        wal_commits: m.wal_commits,
                    };
                    let mut ring = lock(&ring);
                    if ring.len() == KEPT {
                        ring.pop_front();
                    }
                    ring.push_back(sample);
                }
            });
        });
        lock(&self.ring).iter().copied().collect()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
