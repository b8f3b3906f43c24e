//! Draining the flow at shutdown, and the crash hook tests use to simulate `kill -9`.

use std::time::Duration;

use super::{Inner, lock};
use crate::error::StoreError;

impl Inner {
    pub(super) async fn shutdown(&self) -> Result<(), StoreError> {
        self.shutdown.send_replace(true);
        self.hub.close();
        for handle in lock(&self.background).drain(..) {
            handle.abort();
        }
        self.runs.signal_stop_all();
        let deadline = self.config.stop_grace + Duration::from_secs(1);
        if tokio::time::timeout(deadline, self.runs.all_finished())
            .await
            .is_err()
        {
            tracing::warn!("handlers did not stop within the grace period; dropping them");
            self.runs.abort_all(false);
        }
        self.store.close().await
    }

    /// Aborts everything, writes nothing more and releases the store.
    #[cfg(feature = "test-util")]
    pub(super) fn crash(&self) {
        self.shutdown.send_replace(true);
        self.hub.close();
        self.store.crash();
        for handle in lock(&self.background).drain(..) {
            handle.abort();
        }
        self.runs.abort_all(true);
    }
}

#[cfg(feature = "test-util")]
impl super::TaskFlow {
    /// See `testing::SimulateCrash`.
    pub(crate) fn simulate_crash(&self) {
        self.inner.crash();
    }
}
