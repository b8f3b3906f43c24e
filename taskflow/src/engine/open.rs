//! Opening a flow: the store, the engine's state, recovery and the background collector.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::admission::Admission;
use super::builder::{Config, StoreChoice};
use super::hub::Hub;
use super::registry::Registry;
use super::{Inner, TaskFlow, recovery, retention};
use crate::clock::{Clock, MonotonicClock};
use crate::error::{BuildError, StoreError};
use crate::metrics::Metrics;
use crate::store::DynStore;
use crate::store::redb::RedbStore;

impl TaskFlow {
    pub(super) async fn open(
        choice: StoreChoice,
        registry: Registry,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Result<Self, BuildError> {
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::default());
        let store: DynStore = match choice {
            StoreChoice::DataDir(dir) => {
                let path = database_path(&dir)?;
                let (hub, metrics) = (hub.clone(), metrics.clone());
                tokio::task::spawn_blocking(move || RedbStore::open(&path, hub, metrics))
                    .await
                    .map_err(|e| BuildError::Storage(StoreError::io(e)))?
                    .map(Arc::new)?
            }
            #[cfg(feature = "test-util")]
            StoreChoice::Backend(dir, backend) => {
                let path = database_path(&dir)?;
                Arc::new(RedbStore::open_with_backend(
                    &path,
                    backend,
                    hub.clone(),
                    metrics.clone(),
                )?)
            }
        };
        let inner = Arc::new(Inner {
            store,
            hub,
            registry,
            admission: Mutex::new(Admission::new(config.limits)),
            config,
            metrics,
            clock: MonotonicClock::new(clock),
            runs: super::runs::Runs::default(),
            key_locks: super::key_lock::KeyLocks::default(),
            shutdown: watch::channel(false).0,
            background: Mutex::new(Vec::new()),
            #[cfg(feature = "axum")]
            extensions: super::extensions::Extensions::default(),
        });
        recovery::recover(&inner).await?;
        retention::spawn_collector(&inner);
        Ok(Self { inner })
    }
}

/// `dir/taskflow.redb`, creating `dir` if needed.
fn database_path(dir: &Path) -> Result<PathBuf, BuildError> {
    std::fs::create_dir_all(dir).map_err(|source| BuildError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(dir.join("taskflow.redb"))
}
