//! Opening a flow: the store, the engine's state, recovery and the background collector.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::admission::Admission;
use super::app_state::AppState;
use super::builder::{Config, StoreChoice};
use super::hub::Hub;
use super::registry::Registry;
use super::{Inner, TaskFlow, recovery, retention};
use crate::clock::{Clock, MonotonicClock};
use crate::error::{BuildError, StoreError};
use crate::ids::TaskId;
use crate::metrics::Metrics;
use crate::store::{DynStore, RedbStore, StoreHooks};

impl TaskFlow {
    pub(super) async fn open(
        choice: StoreChoice,
        registry: Registry,
        state: AppState,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Result<Self, BuildError> {
        let metrics = Arc::new(Metrics::default());
        let (hub, changed_elsewhere) = Hub::new();
        let hub = Arc::new(hub);
        let store: DynStore = match choice {
            StoreChoice::DataDir(dir) => {
                let journal = config.event_journal;
                let store = tokio::task::spawn_blocking(move || {
                    if journal {
                        RedbStore::open_with_event_journal(dir)
                    } else {
                        RedbStore::open(dir)
                    }
                })
                .await
                .map_err(|e| BuildError::Storage(StoreError::io(e)))??;
                #[cfg(feature = "test-util")]
                if let Some(trigger) = &config.crash_at {
                    store.arm_crash_at(trigger.clone());
                }
                Arc::new(store)
            }
            #[cfg(feature = "postgres")]
            StoreChoice::Postgres(pg) => {
                let store = crate::store::PgStore::connect(pg).await?;
                #[cfg(feature = "test-util")]
                if let Some(trigger) = &config.crash_at {
                    store.arm_crash_at(trigger.clone());
                }
                Arc::new(store)
            }
            StoreChoice::Custom(store) => store,
            #[cfg(feature = "test-util")]
            StoreChoice::Backend(dir, backend, None) => {
                Arc::new(RedbStore::open_with_backend(&dir, backend)?)
            }
            #[cfg(feature = "test-util")]
            StoreChoice::Backend(dir, backend, Some(journal)) => {
                Arc::new(RedbStore::open_with_backends(&dir, backend, journal)?)
            }
        };
        hub.set_shared(store.lease().is_some());
        store.attach(StoreHooks::new(hub.clone(), metrics.clone()));
        let inner = Arc::new(Inner {
            store,
            hub,
            registry,
            state,
            admission: Mutex::new(Admission::new(config.limits)),
            config,
            metrics,
            clock: MonotonicClock::new(clock),
            runs: super::runs::Runs::default(),
            timers: super::timers::Timers::default(),
            key_locks: super::key_lock::KeyLocks::default(),
            shutdown: watch::channel(false).0,
            background: Mutex::new(Vec::new()),
            #[cfg(feature = "axum")]
            extensions: super::extensions::Extensions::default(),
            #[cfg(feature = "axum")]
            recovered_watched: Mutex::new(Vec::new()),
        });
        spawn_remote_stops(&inner, changed_elsewhere);
        super::timers::spawn(&inner);
        let flow = Self { inner };
        for found in flow.check_in_flight().await? {
            tracing::warn!(
                task_id = %found.task_id,
                task = %found.task,
                status = ?found.status,
                "in flight and not resumable by this code: {}",
                found.problem
            );
        }
        let inner = flow.inner;
        recovery::recover(&inner).await?;
        recovery::spawn_claimer(&inner);
        retention::spawn_collector(&inner);
        Ok(Self { inner })
    }
}

/// Stops the driver here of every run another process changed (stopped, cancelled or
/// claimed after this process missed its lease): its handler sees `cancelled()` at once, not
/// at its next write.
fn spawn_remote_stops(inner: &Arc<Inner>, mut changed: mpsc::UnboundedReceiver<TaskId>) {
    let weak = Arc::downgrade(inner);
    let task = tokio::spawn(async move {
        while let Some(id) = changed.recv().await {
            let Some(inner) = weak.upgrade() else { return };
            tracing::debug!(task_id = %id, "another process changed the run; stopping its driver here");
            inner.signal_stop(id);
        }
    });
    super::lock(&inner.background).push(task.abort_handle());
}
