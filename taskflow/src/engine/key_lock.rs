//! Per-key locks: one submission or control decision at a time for one idempotency key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use super::lock;
use crate::ids::IdempotencyKey;

/// Keys with locks held or waited for; idle entries are pruned once the map grows.
#[derive(Debug, Default)]
pub(super) struct KeyLocks {
    locks: Mutex<HashMap<IdempotencyKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// Entries kept before idle ones are pruned.
const PRUNE_ABOVE: usize = 1024;

impl KeyLocks {
    /// Waits for the lock of `ik`; held until the guard drops.
    pub(super) async fn lock(&self, ik: &IdempotencyKey) -> OwnedMutexGuard<()> {
        let mutex = {
            let mut locks = lock(&self.locks);
            if locks.len() > PRUNE_ABOVE {
                locks.retain(|_, m| Arc::strong_count(m) > 1);
            }
            locks.entry(ik.clone()).or_default().clone()
        };
        mutex.lock_owned().await
    }
}
