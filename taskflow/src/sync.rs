//! Locking that survives a panic elsewhere: the data behind these mutexes stays consistent
//! at every unlock, so a poisoned lock is used as it is rather than spreading the panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, ignoring poisoning.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
