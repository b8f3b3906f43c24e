//! Per-flow state of the layers above the engine, keyed by type (as `http::Extensions`), so
//! the engine holds the bridge's bookkeeping without naming the bridge.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::lock;

/// One value per type, created on first use.
#[derive(Debug, Default)]
pub(super) struct Extensions {
    values: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Extensions {
    /// The flow's `T`, created with `T::default()` the first time it is asked for.
    pub(super) fn get_or_default<T: Any + Default + Send + Sync>(&self) -> Arc<T> {
        let mut values = lock(&self.values);
        let value = values
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()))
            .clone();
        drop(values);
        value
            .downcast::<T>()
            .expect("an extension is stored under its own TypeId")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_value_per_type() {
        let ext = Extensions::default();
        ext.get_or_default::<AtomicUsize>()
            .fetch_add(2, Ordering::Relaxed);
        assert_eq!(
            ext.get_or_default::<AtomicUsize>().load(Ordering::Relaxed),
            2
        );
        assert_eq!(*ext.get_or_default::<String>(), "");
    }
}
