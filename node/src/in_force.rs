//! What a reload replaces while the node runs (issuer keys, the peers' keys).

use std::sync::Arc;

/// Something in force that a reload replaces whole (calls in flight keep what they
/// started with).
pub struct InForce<T>(Arc<std::sync::RwLock<Arc<T>>>);

impl<T> Clone for InForce<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> InForce<T> {
    pub fn new(value: T) -> Self {
        Self(Arc::new(std::sync::RwLock::new(Arc::new(value))))
    }

    pub fn get(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}
